"""Reads of the streams' tables for the routes; the layout is described in
``anomalyd.store.streams``, whose ``StreamTables`` these methods are part of."""

from __future__ import annotations

import struct

import msgspec
import numpy as np

from anomalyd.store.base import StoreBase
from anomalyd.store.errors import CorruptRecord
from anomalyd.streams import EPISODES_KEPT, Episode, StreamNotFound, StreamRecord

BLOCK_POINTS = 32
ROW = struct.Struct("<qddB")
ROW_DTYPE = np.dtype([("t", "<i8"), ("v", "<f8"), ("s", "<f8"), ("a", "u1")])
BLOCK_BYTES = BLOCK_POINTS * ROW.size
NUMBER = struct.Struct(">Q")
COUNT = struct.Struct("<Q")
KEY_HEAD = struct.Struct("<Q16s")
STREAMS_COUNT = b"streams"

_encode = msgspec.msgpack.Encoder().encode
_record = msgspec.msgpack.Decoder(StreamRecord).decode
_episode = msgspec.msgpack.Decoder(Episode).decode


def numbered(series_key: bytes, number: int) -> bytes:
    return series_key + b"\x00" + NUMBER.pack(number)


def decode_record(raw: bytes, series_key: bytes) -> StreamRecord:
    try:
        return _record(raw)
    except msgspec.DecodeError as exc:
        raise CorruptRecord(
            f"the stored record of stream {series_key.decode()!r} is corrupt ({exc}); "
            "other streams are unaffected (DELETE /streams/{id} removes it)"
        ) from None


def count_streams(store: StoreBase) -> int:
    """How many streams the store holds (a counter: no scan)."""
    meta = store.open_db(b"meta")
    with store.env.begin() as txn:
        raw = txn.get(STREAMS_COUNT, db=meta)
    return COUNT.unpack(raw)[0] if raw is not None else 0


class StreamReads:
    """The read side of ``StreamTables`` (its tables are opened there)."""

    store: StoreBase
    env: object
    history: int
    streams: object
    points_db: object
    episodes_db: object

    def record(self, series_id: str) -> StreamRecord:
        with self.env.begin() as txn:
            raw = txn.get(series_id.encode(), db=self.streams)
        if raw is None:
            raise StreamNotFound(f"stream {series_id!r} is not known")
        return decode_record(raw, series_id.encode())

    def count(self) -> int:
        return count_streams(self.store)

    def list(
        self, limit: int, after: str | None
    ) -> tuple[list[tuple[str, StreamRecord]], str | None]:
        """Up to ``limit`` streams after ``after`` in id order, and the next cursor."""
        page: list[tuple[str, StreamRecord]] = []
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self.streams)
            if not cursor.set_range(after.encode() + b"\x00" if after else b""):
                return page, None
            for key, raw in cursor:
                if len(page) == limit:
                    return page, page[-1][0]
                page.append((key.decode(), decode_record(raw, key)))
        return page, None

    def points(
        self, series_id: str, since: int | None, start: int, limit: int
    ) -> tuple[np.ndarray, int | None]:
        """Retained points with seq >= ``start`` and timestamp >= ``since``, oldest
        first, at most ``limit`` (a ``ROW_DTYPE`` array), and the seq to go on from
        (None: no more)."""
        series_key = series_id.encode()
        with self.env.begin() as txn:
            record, first = self._retained_from(txn, series_key, start, since)
            # One point past the page says whether another follows.
            end = min(record.points, first + limit + 1)
            rows = np.empty(max(0, end - first), ROW_DTYPE)
            self._copy_history(txn, series_key, first, end, rows)
        if len(rows) <= limit:
            return rows, None
        return rows[:limit], first + limit

    def _retained_from(
        self, txn, series_key: bytes, start: int, since: int | None
    ) -> tuple[StreamRecord, int]:
        """The stream's record, and the seq of its first retained point at or after
        ``start`` whose timestamp is ``since`` or later (its ``points`` if none)."""
        raw = txn.get(series_key, db=self.streams)
        if raw is None:
            raise StreamNotFound(f"stream {series_key.decode()!r} is not known")
        record = decode_record(raw, series_key)
        end = record.points
        seq = max(start, end - self.history, record.history_from * BLOCK_POINTS)
        if since is not None and seq < end:
            # Timestamps never go back: ``since`` cuts a prefix of the history.
            seq = self._first_since(txn, series_key, seq, end, since)
        return record, seq

    def _block(self, txn, series_key: bytes, block: int) -> np.ndarray:
        data = txn.get(numbered(series_key, block), db=self.points_db)
        if data is None or len(data) % ROW.size:
            raise CorruptRecord(
                f"the history of stream {series_key.decode()!r} is corrupt (block "
                f"{block}); other streams are unaffected (DELETE /streams/{{id}} "
                "removes it)"
            )
        return np.frombuffer(data, ROW_DTYPE)

    def _first_since(self, txn, series_key: bytes, seq: int, end: int, since: int):
        """The first seq at or after ``seq`` whose timestamp is >= ``since``."""
        lo, hi = seq // BLOCK_POINTS, (end - 1) // BLOCK_POINTS
        # The last block whose first timestamp is before ``since`` (or the first).
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._block(txn, series_key, mid)["t"][0] < since:
                lo = mid
            else:
                hi = mid - 1
        while lo * BLOCK_POINTS < end:
            stamps = self._block(txn, series_key, lo)["t"]
            at = max(seq - lo * BLOCK_POINTS, 0)
            i = at + int(np.searchsorted(stamps[at:], since, side="left"))
            if i < len(stamps):
                return lo * BLOCK_POINTS + i
            lo += 1
        return end

    def episodes(
        self, series_id: str, since: int | None, start: int, limit: int
    ) -> tuple[list[Episode], int | None]:
        """Kept episodes numbered >= ``start`` that start at or after ``since``,
        oldest first, at most ``limit``, and the number to go on from (None: no
        more)."""
        series_key = series_id.encode()
        with self.env.begin() as txn:
            raw = txn.get(series_key, db=self.streams)
            if raw is None:
                raise StreamNotFound(f"stream {series_id!r} is not known")
            last = decode_record(raw, series_key).episodes
            number = max(start, last - EPISODES_KEPT + 1, 1)
            if since is not None:
                # Episodes start in number order: bisect for the first at or after.
                lo, hi = number, last + 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if self._episode(txn, series_key, mid).start < since:
                        lo = mid + 1
                    else:
                        hi = mid
                number = lo
            found = [
                self._episode(txn, series_key, n)
                for n in range(number, min(last, number + limit - 1) + 1)
            ]
        following = number + limit if number + limit <= last else None
        return found, following

    def _episode(self, txn, series_key: bytes, number: int) -> Episode:
        raw = txn.get(numbered(series_key, number), db=self.episodes_db)
        try:
            if raw is None:
                raise msgspec.DecodeError("missing")
            return _episode(raw)
        except msgspec.DecodeError as exc:
            raise CorruptRecord(
                f"episode {number} of stream {series_key.decode()!r} is corrupt or "
                f"missing ({exc}); other streams are unaffected"
            ) from None

    # -- what the plot and the dashboard read ------------------------------------

    def retained(
        self, series_id: str, since: int | None, until: int | None
    ) -> tuple[StreamRecord, np.ndarray, int]:
        """The stream's record, its retained points with ``since <= timestamp <=
        until`` (either may be None), oldest first (a ``ROW_DTYPE`` array), and the
        learn order (seq) of the first of them, read in one transaction so they
        agree."""
        series_key = series_id.encode()
        with self.env.begin() as txn:
            record, first = self._retained_from(txn, series_key, 0, since)
            end = record.points
            if until is not None and first < end:
                end = self._first_since(txn, series_key, first, end, until + 1)
            rows = np.empty(end - first, ROW_DTYPE)
            self._copy_history(txn, series_key, first, end, rows)
        return record, rows, first

    def _copy_history(
        self, txn, series_key: bytes, seq: int, end: int, out: np.ndarray
    ) -> None:
        """Copy the points ``seq`` .. ``end - 1`` into ``out``, walking their blocks
        with one cursor (a million retained points are 31,250 blocks: a lookup and
        an array each took a second, this a tenth of it)."""
        if seq >= end:
            return
        block, skip = divmod(seq, BLOCK_POINTS)
        last = (end - 1) // BLOCK_POINTS
        stop = numbered(series_key, last)
        parts = []
        cursor = txn.cursor(db=self.points_db)
        # Ids never hold NUL: every key from the first block to the last is one of
        # this stream's blocks, so as many keys as numbers means none is missing.
        if cursor.set_key(numbered(series_key, block)):
            for key, value in cursor.iternext():
                if key > stop:
                    break
                parts.append(value)
        # Every block but the last is whole, so row i is at i * ROW.size.
        if len(parts) != last - block + 1 or any(
            len(part) != BLOCK_BYTES for part in parts[:-1]
        ):
            raise CorruptRecord(
                f"the history of stream {series_key.decode()!r} is corrupt or short "
                f"(blocks {block} to {last}); other streams are unaffected (DELETE "
                "/streams/{id} removes it)"
            )
        data = b"".join(parts)
        flat = out.view(np.uint8)
        begin = skip * ROW.size
        if len(data) < begin + len(flat):
            raise CorruptRecord(
                f"the history of stream {series_key.decode()!r} is short (block {last})"
            )
        flat[:] = np.frombuffer(data, np.uint8, len(flat), begin)

    def list_before(self, limit: int, before: str) -> list[tuple[str, StreamRecord]]:
        """Up to ``limit`` streams whose ids come before ``before``, in id order (the
        last ones before it)."""
        page: list[tuple[str, StreamRecord]] = []
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self.streams)
            found = (
                cursor.prev() if cursor.set_range(before.encode()) else cursor.last()
            )
            while found and len(page) < limit:
                key = cursor.key()
                page.append((key.decode(), decode_record(cursor.value(), key)))
                found = cursor.prev()
        page.reverse()
        return page
