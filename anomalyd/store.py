"""The LMDB store: versions, training data, counters and the layout's schema version.

Layout (named databases in one environment):

- ``meta``:   ``schema_version`` -> ASCII int; ``series_trained`` -> u64 (little endian).
- ``series``: series id -> ``<QQ`` (last version ever assigned, first live version or 0).
  The record outlives DELETE so version numbers are never reused.
- ``models``: series id + NUL + u32 big-endian version -> msgpack ``VersionRecord``.
- ``points``: same key -> int64 timestamps then float64 values, sorted by timestamp.

Series ids never contain NUL, so a series' keys are one contiguous, version-ordered range.
Every write is one transaction committed with fsync (``sync=True``): a fit is answered
only after its version is durable.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict

import lmdb
import msgspec
import numpy as np

from anomalyd.detectors import Model

SCHEMA_VERSION = 1

_SERIES = struct.Struct("<QQ")
_COUNTER = struct.Struct("<Q")
_VERSION = struct.Struct(">I")


class StoreError(Exception):
    """Base of the store's domain errors."""


class SeriesNotFound(StoreError):
    pass


class VersionNotFound(StoreError):
    pass


class StoreFull(StoreError):
    pass


class IncompatibleStore(StoreError):
    pass


class CorruptRecord(StoreError):
    """A stored record that does not decode: that series/version is unusable."""


class VersionRecord(msgspec.Struct, frozen=True, array_like=True):
    model: Model
    points_used: int
    created_at: float  # Unix seconds, UTC


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(VersionRecord)


def _version_key(series_key: bytes, version: int) -> bytes:
    return series_key + b"\x00" + _VERSION.pack(version)


def _decode_record(raw: bytes | None, series_id: str, version: int) -> VersionRecord:
    """Decode a stored model record; msgpack into a typed Struct, never pickle."""
    try:
        if raw is None:
            raise msgspec.DecodeError("the record is missing")
        return _record_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise CorruptRecord(
            f"the stored model of series {series_id!r} version v{version} is corrupt "
            f"({exc}); other series are unaffected"
        ) from None


def points_blob(timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The ``points`` record: int64 timestamps then float64 values, sorted by timestamp
    (stable), built in one buffer: no sorted copies, no bytes copies, no join."""
    n = timestamps.shape[0]
    in_order = n < 2 or bool(np.all(timestamps[1:] >= timestamps[:-1]))
    base = timestamps.base
    if (
        in_order
        and isinstance(base, np.ndarray)
        and base.dtype == np.dtype("<i8")
        and base.shape == (2 * n,)
        and timestamps.ctypes.data == base.ctypes.data
        and values.ctypes.data == base.ctypes.data + 8 * n
    ):
        return base  # decoded in this very layout (anomalyd.ingest): no copy
    blob = np.empty(2 * n, dtype="<i8")
    if in_order:
        blob[:n] = timestamps
        blob.view("<f8")[n:] = values
    else:
        order = np.argsort(timestamps, kind="stable")
        np.take(timestamps, order, out=blob[:n])
        np.take(values, order, out=blob.view("<f8")[n:])
    return blob


class ModelCache:
    """A per-worker LRU of immutable (series id, version) -> Model."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int], Model] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> Model | None:
        with self._lock:
            model = self._items.get(key)
            if model is not None:
                self._items.move_to_end(key)
            return model

    def put(self, key: tuple[str, int], model: Model) -> None:
        with self._lock:
            self._items[key] = model
            if len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Store:
    """One LMDB environment, opened in the process that uses it (never across fork)."""

    def __init__(
        self,
        path: str,
        map_size: int,
        max_readers: int = 126,
        lru_size: int = 10000,
    ) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = path
        self.env = lmdb.open(
            path,
            map_size=map_size,
            max_readers=max_readers,
            max_dbs=4,
            sync=True,
            metasync=True,
            readahead=False,
            meminit=False,
        )
        # Slots left by workers killed with SIGKILL would otherwise leak.
        self.env.reader_check()
        self._meta = self.env.open_db(b"meta")
        self._series = self.env.open_db(b"series")
        self._models = self.env.open_db(b"models")
        self._points = self.env.open_db(b"points")
        self.cache = ModelCache(lru_size)
        self._check_schema()

    def _check_schema(self) -> None:
        with self.env.begin(write=True) as txn:
            found = txn.get(b"schema_version", db=self._meta)
            if found is None:
                txn.put(b"schema_version", str(SCHEMA_VERSION).encode(), db=self._meta)
            elif int(found) != SCHEMA_VERSION:
                raise IncompatibleStore(
                    f"{self.path} holds schema version {int(found)}; "
                    f"this anomalyd reads version {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        self.env.close()

    # -- writes ---------------------------------------------------------------

    def add_version(
        self,
        series_id: str,
        model: Model,
        timestamps: np.ndarray,
        values: np.ndarray,
        created_at: float,
    ) -> int:
        """Store a new version durably and return its number.

        The caller has done the numpy work; this only takes the number and writes, so the
        single LMDB writer is held briefly and versions come out unique and consecutive.
        """
        blob = points_blob(timestamps, values)
        record = _record_encoder.encode(
            VersionRecord(model, int(values.shape[0]), created_at)
        )
        key = series_id.encode()
        try:
            with self.env.begin(write=True) as txn:
                raw = txn.get(key, db=self._series)
                last, first = _SERIES.unpack(raw) if raw is not None else (0, 0)
                version = last + 1
                if first == 0:
                    first = version
                    self._add_to_counter(txn, 1)
                txn.put(key, _SERIES.pack(version, first), db=self._series)
                vkey = _version_key(key, version)
                txn.put(vkey, record, db=self._models)
                txn.put(vkey, blob, db=self._points)
        except lmdb.MapFullError:
            raise StoreFull(
                "the store is full (map_size reached): raise map_size and restart; "
                "existing models still answer"
            ) from None
        return version

    def delete_series(self, series_id: str) -> int:
        """Remove every version of a series; return how many. The counter stays."""
        key = series_id.encode()
        with self.env.begin(write=True) as txn:
            raw = txn.get(key, db=self._series)
            last, first = _SERIES.unpack(raw) if raw is not None else (0, 0)
            if first == 0:
                raise SeriesNotFound(f"series {series_id!r} is not known")
            for version in range(first, last + 1):
                vkey = _version_key(key, version)
                txn.delete(vkey, db=self._models)
                txn.delete(vkey, db=self._points)
            txn.put(key, _SERIES.pack(last, 0), db=self._series)
            self._add_to_counter(txn, -1)
        return last - first + 1

    def _add_to_counter(self, txn: lmdb.Transaction, delta: int) -> None:
        raw = txn.get(b"series_trained", db=self._meta)
        count = _COUNTER.unpack(raw)[0] if raw is not None else 0
        txn.put(b"series_trained", _COUNTER.pack(count + delta), db=self._meta)

    # -- reads ----------------------------------------------------------------

    def _live_range(self, txn: lmdb.Transaction, series_id: str) -> tuple[int, int]:
        raw = txn.get(series_id.encode(), db=self._series)
        if raw is None:
            raise SeriesNotFound(f"series {series_id!r} is not known")
        last, first = _SERIES.unpack(raw)
        if first == 0:
            raise SeriesNotFound(f"series {series_id!r} is not known (it was deleted)")
        return first, last

    def _resolve(
        self, txn: lmdb.Transaction, series_id: str, version: int | None
    ) -> int:
        first, last = self._live_range(txn, series_id)
        if version is None:
            return last
        if not first <= version <= last:
            raise VersionNotFound(
                f"series {series_id!r} has no version v{version} "
                f"(live versions: v{first}..v{last})"
            )
        return version

    def model(self, series_id: str, version: int | None = None) -> tuple[int, Model]:
        """The model of a version (default: the latest committed one), and its number.

        The latest version is always read from the store, so a fit acknowledged by any
        worker is seen at once; the model itself comes from the LRU when it can.
        """
        with self.env.begin() as txn:
            version = self._resolve(txn, series_id, version)
            key = (series_id, version)
            model = self.cache.get(key)
            if model is None:
                raw = txn.get(
                    _version_key(series_id.encode(), version), db=self._models
                )
                model = _decode_record(raw, series_id, version).model
                self.cache.put(key, model)
        return version, model

    def record(
        self, series_id: str, version: int | None = None
    ) -> tuple[int, VersionRecord]:
        """One version's record (default: the latest), without its training data."""
        with self.env.begin() as txn:
            version = self._resolve(txn, series_id, version)
            raw = txn.get(_version_key(series_id.encode(), version), db=self._models)
            return version, _decode_record(raw, series_id, version)

    def versions(self, series_id: str) -> list[tuple[int, VersionRecord]]:
        with self.env.begin() as txn:
            first, last = self._live_range(txn, series_id)
            key = series_id.encode()
            return [
                (
                    v,
                    _decode_record(
                        txn.get(_version_key(key, v), db=self._models), series_id, v
                    ),
                )
                for v in range(first, last + 1)
            ]

    def training_data(
        self, series_id: str, version: int | None = None
    ) -> tuple[int, VersionRecord, np.ndarray, np.ndarray]:
        """A version's record and its training data, sorted by timestamp (copied)."""
        with self.env.begin() as txn:
            version = self._resolve(txn, series_id, version)
            vkey = _version_key(series_id.encode(), version)
            record = _decode_record(txn.get(vkey, db=self._models), series_id, version)
            raw = txn.get(vkey, db=self._points)
            n = record.points_used
            if raw is None or len(raw) != 16 * n:
                raise CorruptRecord(
                    f"the stored training data of series {series_id!r} version "
                    f"v{version} is corrupt; other series are unaffected"
                )
            timestamps = np.frombuffer(raw, dtype="<i8", count=n).copy()
            values = np.frombuffer(raw, dtype="<f8", count=n, offset=8 * n).copy()
        return version, record, timestamps, values

    def list_series(
        self, limit: int, after: str | None
    ) -> tuple[list[tuple[str, int, int]], str | None]:
        """Up to ``limit`` live series after ``after`` in id order: (id, latest, count)."""
        page: list[tuple[str, int, int]] = []
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._series)
            start = after.encode() + b"\x00" if after is not None else b""
            if not cursor.set_range(start):
                return page, None
            for key, raw in cursor:
                last, first = _SERIES.unpack(raw)
                if first == 0:
                    continue
                if len(page) == limit:
                    return page, page[-1][0]
                page.append((key.decode(), last, last - first + 1))
        return page, None

    def series_trained(self) -> int:
        with self.env.begin() as txn:
            raw = txn.get(b"series_trained", db=self._meta)
        return _COUNTER.unpack(raw)[0] if raw is not None else 0

    def size_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return (info["last_pgno"] + 1) * stat["psize"]

    def verify(self) -> list[str]:
        """Walk every key of every database; return what does not decode (empty: ok).

        Checks each record's shape and the links between databases: every live version
        has a model and training data of the right size, nothing is orphaned, and
        ``series_trained`` matches the live series.
        """
        problems: list[str] = []
        live: dict[bytes, tuple[int, int]] = {}
        with self.env.begin() as txn:
            for key, raw in txn.cursor(db=self._meta):
                if key == b"schema_version" and not raw.isdigit():
                    problems.append(f"meta {key!r}: not an integer")
                elif key == b"series_trained" and len(raw) != _COUNTER.size:
                    problems.append(f"meta {key!r}: {len(raw)} bytes")
            for key, raw in txn.cursor(db=self._series):
                if len(raw) != _SERIES.size:
                    problems.append(f"series {key!r}: {len(raw)} bytes")
                    continue
                last, first = _SERIES.unpack(raw)
                if first > last:
                    problems.append(f"series {key!r}: first v{first} > last v{last}")
                live[key] = (first, last)
            points_used: dict[bytes, int] = {}
            for vkey, raw in txn.cursor(db=self._models):
                series_key, version = vkey[:-5], _VERSION.unpack(vkey[-4:])[0]
                try:
                    points_used[vkey] = _record_decoder.decode(raw).points_used
                except msgspec.DecodeError as exc:
                    points_used[vkey] = -1  # reported here; its points are not checked
                    problems.append(f"models {vkey!r}: {exc}")
                first, last = live.get(series_key, (0, 0))
                if first == 0 or not first <= version <= last:
                    problems.append(f"models {vkey!r}: not a live version")
            for vkey, raw in txn.cursor(db=self._points):
                n = points_used.pop(vkey, None)
                if n is None:
                    problems.append(f"points {vkey!r}: no model")
                elif n >= 0 and len(raw) != 16 * n:
                    problems.append(f"points {vkey!r}: {len(raw)} bytes for {n} points")
            problems.extend(f"models {k!r}: no training data" for k in points_used)
            for series_key, (first, last) in live.items():
                for version in range(first or last + 1, last + 1):
                    vkey = _version_key(series_key, version)
                    if txn.get(vkey, db=self._models) is None:
                        problems.append(f"series {series_key!r}: v{version} missing")
            trained = sum(1 for first, _ in live.values() if first)
            raw = txn.get(b"series_trained", db=self._meta)
            counted = _COUNTER.unpack(raw)[0] if raw is not None else 0
            if counted != trained:
                problems.append(f"series_trained is {counted}, {trained} series live")
        return problems
