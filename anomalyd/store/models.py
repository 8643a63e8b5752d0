"""The models tables: versions, training data, drawings, counters (layout: schema.py).

Every write is one transaction through ``StoreBase.write`` (lock file check, headroom,
error mapping, fsync): a fit is answered only after its version is durable. Series ids
never contain NUL, so a series' keys are one contiguous, version-ordered range.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import lmdb
import numpy as np

from anomalyd.detectors import Model
from anomalyd.store import schema
from anomalyd.store.base import StoreBase
from anomalyd.store.drawings import Drawing
from anomalyd.store.errors import (
    CorruptRecord,
    SeriesNotFound,
    StoreUnavailable,
    VersionNotFound,
)
from anomalyd.store.schema import (
    COUNTER,
    RETIRED,
    SERIES,
    VersionRecord,
    decode_record,
    record_encoder,
    version_key,
)

# Versions up to this many points are drawn from their training data (as cheap as a
# stored drawing); larger ones store their drawing at fit time.
DRAWN_FROM_DATA = 2000

Drawer = Callable[[Model, np.ndarray, np.ndarray], Drawing]


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


class Store(StoreBase):
    """The series store. ``drawer`` computes a large version's drawing at fit time
    (``plot.drawing_of``); without one no drawing is stored."""

    def __init__(
        self,
        path: str,
        map_size: int,
        max_readers: int = 126,
        lru_size: int = 10000,
        drawer: Drawer | None = None,
        **checks,
    ) -> None:
        super().__init__(path, map_size, max_readers, **checks)
        self._drawer = drawer
        dbs = {name: self.open_db(name) for name in schema.TABLES}
        self._meta = dbs[b"meta"]
        self._series = dbs[b"series"]
        self._retired = dbs[b"retired"]
        self._models = dbs[b"models"]
        self._points = dbs[b"points"]
        self._drawings = dbs[b"drawings"]
        self.cache = ModelCache(lru_size)
        with self.write(reserve=False) as txn:
            schema.migrate(txn, path, dbs)

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

        The caller has done the numpy work; this sorts, draws, then takes the number and
        writes, so the single LMDB writer is held briefly and versions come out unique
        and consecutive.
        """
        order = np.argsort(timestamps, kind="stable")
        timestamps, values = timestamps[order], values[order]
        n = int(values.shape[0])
        blob = (
            timestamps.astype("<i8", copy=False).tobytes()
            + values.astype("<f8", copy=False).tobytes()
        )
        drawing = None
        if self._drawer is not None and n > DRAWN_FROM_DATA:
            drawing = self._drawer(model, timestamps, values).encode()
        record = record_encoder.encode(VersionRecord(model, n, created_at))
        key = series_id.encode()
        need = len(blob) + len(record) + len(drawing or b"")
        with self.write(need_bytes=need) as txn:
            raw = txn.get(key, db=self._series)
            if raw is not None:
                counter, first, _, count = SERIES.unpack(raw)
            else:
                retired = txn.get(key, db=self._retired)
                counter = RETIRED.unpack(retired)[0] if retired is not None else 0
                if retired is not None:
                    txn.delete(key, db=self._retired)
                first = count = 0
                self._add_to_counter(txn, 1)
            version = counter + 1
            txn.put(
                key,
                SERIES.pack(version, first or version, version, count + 1),
                db=self._series,
            )
            vkey = version_key(key, version)
            txn.put(vkey, record, db=self._models)
            txn.put(vkey, blob, db=self._points)
            if drawing is not None:
                txn.put(vkey, drawing, db=self._drawings)
        return version

    def delete_series(self, series_id: str) -> int:
        """Remove every version of a series; return how many. The counter is kept in
        ``retired``. Uses the headroom: works on a store too full for fits."""
        key = series_id.encode()
        with self.write(reserve=False) as txn:
            raw = txn.get(key, db=self._series)
            if raw is None:
                raise SeriesNotFound(f"series {series_id!r} is not known")
            counter = SERIES.unpack(raw)[0]
            versions = schema.live_versions(txn, self._models, key)
            for version in versions:
                vkey = version_key(key, version)
                txn.delete(vkey, db=self._models)
                txn.delete(vkey, db=self._points)
                txn.delete(vkey, db=self._drawings)
            txn.delete(key, db=self._series)
            txn.put(key, RETIRED.pack(counter), db=self._retired)
            self._add_to_counter(txn, -1)
        return len(versions)

    def _add_to_counter(self, txn: lmdb.Transaction, delta: int) -> None:
        raw = txn.get(b"series_trained", db=self._meta)
        count = COUNTER.unpack(raw)[0] if raw is not None else 0
        txn.put(b"series_trained", COUNTER.pack(count + delta), db=self._meta)

    # -- reads ----------------------------------------------------------------

    def _live_range(self, txn: lmdb.Transaction, series_id: str) -> tuple[int, int]:
        raw = txn.get(series_id.encode(), db=self._series)
        if raw is None:
            raise SeriesNotFound(f"series {series_id!r} is not known")
        _, first, last, _ = SERIES.unpack(raw)
        return first, last

    def _resolve(
        self, txn: lmdb.Transaction, series_id: str, version: int | None
    ) -> int:
        first, last = self._live_range(txn, series_id)
        if version is None:
            return last
        if not first <= version <= last:
            raise self._no_version(series_id, version, first, last)
        return version

    @staticmethod
    def _no_version(series_id: str, version: int, first: int, last: int):
        return VersionNotFound(
            f"series {series_id!r} has no version v{version} "
            f"(its versions: v{first}..v{last})"
        )

    def _record(
        self, txn: lmdb.Transaction, series_id: str, version: int
    ) -> VersionRecord:
        """A version's record; the version is within the live range, but a restore
        may have left gaps (rolled-back numbers): a missing record is a 404."""
        raw = txn.get(version_key(series_id.encode(), version), db=self._models)
        if raw is None:
            first, last = self._live_range(txn, series_id)
            raise self._no_version(series_id, version, first, last)
        return decode_record(raw, series_id, version)

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
                # A gap left by a restore is never cached: the service was stopped.
                model = self._record(txn, series_id, version).model
                self.cache.put(key, model)
        return version, model

    def record(
        self, series_id: str, version: int | None = None
    ) -> tuple[int, VersionRecord]:
        """One version's record (default: the latest), without its training data."""
        with self.env.begin() as txn:
            version = self._resolve(txn, series_id, version)
            return version, self._record(txn, series_id, version)

    def versions(self, series_id: str) -> list[tuple[int, VersionRecord]]:
        with self.env.begin() as txn:
            self._live_range(txn, series_id)
            key = series_id.encode()
            return [
                (
                    v,
                    decode_record(
                        txn.get(version_key(key, v), db=self._models), series_id, v
                    ),
                )
                for v in schema.live_versions(txn, self._models, key)
            ]

    def training_data(
        self, series_id: str, version: int | None = None
    ) -> tuple[int, VersionRecord, np.ndarray, np.ndarray]:
        """A version's record and its training data, sorted by timestamp (copied)."""
        with self.env.begin() as txn:
            version = self._resolve(txn, series_id, version)
            vkey = version_key(series_id.encode(), version)
            record = self._record(txn, series_id, version)
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

    def drawing(self, series_id: str, version: int) -> Drawing | None:
        """The drawing stored with a version at fit time; None if it has none."""
        with self.env.begin() as txn:
            self._record(txn, series_id, self._resolve(txn, series_id, version))
            raw = txn.get(version_key(series_id.encode(), version), db=self._drawings)
            if raw is None:
                return None
            try:
                return Drawing.decode(raw)
            except ValueError as exc:
                raise CorruptRecord(
                    f"the stored drawing of series {series_id!r} version v{version} "
                    f"is corrupt ({exc}); other series are unaffected"
                ) from None

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
                if len(page) == limit:
                    return page, page[-1][0]
                _, _, last, count = SERIES.unpack(raw)
                page.append((key.decode(), last, count))
        return page, None

    def series_trained(self) -> int:
        with self.env.begin() as txn:
            raw = txn.get(b"series_trained", db=self._meta)
        return COUNTER.unpack(raw)[0] if raw is not None else 0

    def health(self) -> int:
        """``series_trained``, read after checking that the store can be read at all
        (StoreUnavailable naming what failed): one small read transaction."""
        try:
            with self.env.begin() as txn:
                self.probe(txn)
                found = schema.stored_version(txn, self._meta)
                if found != schema.SCHEMA_VERSION:
                    raise StoreUnavailable(
                        f"the store in {self.path} cannot be read: its schema_version "
                        f"record is {'missing' if found is None else found}, expected "
                        f"{schema.SCHEMA_VERSION} (the data file was replaced under "
                        "the running service?). Stop anomalyd and check the data "
                        "directory"
                    )
                raw = txn.get(b"series_trained", db=self._meta)
        except (lmdb.Error, ValueError) as exc:
            raise StoreUnavailable(
                f"the store in {self.path} cannot be read: {exc}"
            ) from None
        return COUNTER.unpack(raw)[0] if raw is not None else 0

    def size_bytes(self) -> int:
        info = self.env.info()
        return (info["last_pgno"] + 1) * self.page_size

    def verify(self) -> list[str]:
        """Walk every key of every database; return what does not decode (empty: ok)."""
        from anomalyd.store.verify import verify

        return verify(self)
