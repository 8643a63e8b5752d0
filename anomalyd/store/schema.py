"""The on-disk layout (schema version 2) and the migration from version 1.

Named databases in one environment:

- ``meta``:     ``schema_version`` -> ASCII int; ``series_trained`` -> u64 (LE).
- ``series``:   live series only: id -> ``<QQQQ`` (counter: the last version number ever
  assigned; first and last live version; how many are live). The counter is never
  lowered. Versions first..last all exist, except after a restore rolled some back:
  then the next fit follows the counter and leaves a gap (the rolled-back numbers).
- ``retired``:  deleted series: id -> ``<Q`` counter, so a series fitted again continues
  its numbering. ``/series`` walks only ``series``, never these.
- ``models``:   series id + NUL + u32 big-endian version -> msgpack ``VersionRecord``.
- ``points``:   same key -> int64 timestamps then float64 values, sorted by timestamp.
- ``drawings``: same key -> what ``/plot`` draws (``drawings.Drawing``), for versions
  larger than a drawing; smaller ones are drawn from their training data.

Version 1 kept deleted series in ``series`` as ``<QQ`` (last, 0) and live ones as
(last, first); ``migrate`` rewrites that in one write transaction.
"""

from __future__ import annotations

import struct

import msgspec

from anomalyd.detectors import Model
from anomalyd.store.errors import CorruptRecord, IncompatibleStore

SCHEMA_VERSION = 2

SERIES = struct.Struct("<QQQQ")  # counter, first live, last live, live count
RETIRED = struct.Struct("<Q")  # counter
COUNTER = struct.Struct("<Q")
VERSION = struct.Struct(">I")
V1_SERIES = struct.Struct("<QQ")  # last, first (0: deleted)

TABLES = (b"meta", b"series", b"retired", b"models", b"points", b"drawings")


class VersionRecord(msgspec.Struct, frozen=True, array_like=True):
    model: Model
    points_used: int
    created_at: float  # Unix seconds, UTC


record_encoder = msgspec.msgpack.Encoder()
record_decoder = msgspec.msgpack.Decoder(VersionRecord)


def version_key(series_key: bytes, version: int) -> bytes:
    return series_key + b"\x00" + VERSION.pack(version)


def decode_record(raw: bytes | None, series_id: str, version: int) -> VersionRecord:
    """Decode a stored model record; msgpack into a typed Struct, never pickle."""
    try:
        if raw is None:
            raise msgspec.DecodeError("the record is missing")
        return record_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise CorruptRecord(
            f"the stored model of series {series_id!r} version v{version} is corrupt "
            f"({exc}); other series are unaffected"
        ) from None


def live_versions(txn, models_db, series_key: bytes) -> list[int]:
    """The versions of a series that have a model, ascending (a cursor on its range)."""
    prefix = series_key + b"\x00"
    found = []
    cursor = txn.cursor(db=models_db)
    if cursor.set_range(prefix):
        for vkey in cursor.iternext(keys=True, values=False):
            if not vkey.startswith(prefix) or len(vkey) != len(prefix) + 4:
                break
            found.append(VERSION.unpack(vkey[-4:])[0])
    return found


def stored_version(txn, meta_db) -> int | None:
    raw = txn.get(b"schema_version", db=meta_db)
    return None if raw is None else int(raw)


def migrate(txn, path: str, dbs: dict[bytes, object]) -> int | None:
    """Bring the store to SCHEMA_VERSION inside ``txn`` (a write transaction).

    Returns the version it migrated from, or None if there was nothing to do. Run by
    every worker at start: the first to take the writer migrates, the others find the
    new version already committed. Idempotent and all-or-nothing.
    """
    found = stored_version(txn, dbs[b"meta"])
    if found == SCHEMA_VERSION:
        return None
    if found is None:
        # A new store; a non-empty one with no version is not one anomalyd made.
        if txn.stat(dbs[b"series"])["entries"]:
            raise IncompatibleStore(f"{path} has series but no schema_version")
    elif found == 1:
        _from_v1(txn, dbs)
    else:
        raise IncompatibleStore(
            f"{path} holds schema version {found}; this anomalyd reads versions 1 "
            f"and {SCHEMA_VERSION}"
        )
    txn.put(b"schema_version", str(SCHEMA_VERSION).encode(), db=dbs[b"meta"])
    return found


def _from_v1(txn, dbs: dict[bytes, object]) -> None:
    series, retired = dbs[b"series"], dbs[b"retired"]
    # Read first: the cursor must not walk records this loop rewrites.
    records = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=series)]
    for key, raw in records:
        if len(raw) != V1_SERIES.size:
            raise IncompatibleStore(f"series {key!r}: {len(raw)} bytes in a v1 store")
        last, first = V1_SERIES.unpack(raw)
        if first == 0:
            txn.delete(key, db=series)
            txn.put(key, RETIRED.pack(last), db=retired)
        else:
            txn.put(key, SERIES.pack(last, first, last, last - first + 1), db=series)
