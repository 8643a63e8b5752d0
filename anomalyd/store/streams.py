"""The streams' tables, in the models' LMDB environment (``StoreBase.open_db``).

- ``streams``:          series id -> msgpack ``StreamRecord`` (the whole state).
- ``stream_history``:   id + NUL + u64 big-endian block -> up to ``BLOCK_POINTS`` (32)
  rows packed little-endian (int64 timestamp, float64 value, float64 score, uint8
  anomaly: 25 bytes, so a full block is 800 bytes, inline in a leaf page). The point
  learned ``seq``-th (from 0) is row ``seq % 32`` of block ``seq // 32``. The blocks
  kept are ``record.history_from`` .. the last one, every one whole from its first
  row; a block whose every point is older than the last ``history`` points goes.
  Measured in steady state (300 streams, 2,600 single-point observes each, history
  2,000): 44 bytes of LMDB pages per retained point with blocks of 32, 40 with 16,
  63 with 64 (pages split half full, and fewer large values fit a page).
- ``stream_episodes``:  id + NUL + u64 big-endian episode number -> msgpack
  ``Episode``; the last ``EPISODES_KEPT`` of a stream are kept.
- ``stream_keys``:      id + NUL + Idempotency-Key -> u64 sequence, 16-byte digest of
  the request, the answer's bytes; ``stream_key_order``: id + NUL + u64 sequence ->
  key, so the key stored ``KEYS_KEPT`` keys ago is dropped when a new one comes.
- ``meta``:             ``streams`` -> u64 little-endian, the number of streams.

Series ids never contain NUL, so each stream's keys form one contiguous range.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from anomalyd.store.base import StoreBase
from anomalyd.store.errors import CorruptRecord
from anomalyd.store.stream_reads import (
    BLOCK_BYTES,
    BLOCK_POINTS,
    COUNT,
    KEY_HEAD,
    ROW,
    ROW_DTYPE,
    STREAMS_COUNT,
    StreamReads,
    _encode,
    decode_record,
    numbered,
)
from anomalyd.streams import (
    EPISODES_KEPT,
    KEYS_KEPT,
    Learned,
    StreamNotFound,
    StreamRecord,
)


class Plan(NamedTuple):
    """The writes of one observe: (table, key, value) puts, (table, key) deletes,
    and whether it creates the stream (the count goes up)."""

    puts: list[tuple]
    deletes: list[tuple]
    created: bool

    def size(self) -> int:
        """Bytes of keys and values it puts (what it may add to the store)."""
        return sum(len(key) + len(value) for _, key, value in self.puts)


class StreamTables(StreamReads):
    """Reads and writes of the streams' tables; ``history``: points kept per stream."""

    def __init__(self, store: StoreBase, history: int) -> None:
        self.store = store
        self.env = store.env
        self.history = history
        self.meta = store.open_db(b"meta")
        self.streams = store.open_db(b"streams")
        self.points_db = store.open_db(b"stream_history")
        self.episodes_db = store.open_db(b"stream_episodes")
        self.keys_db = store.open_db(b"stream_keys")
        self.order_db = store.open_db(b"stream_key_order")

    # -- the observe path -----------------------------------------------------------

    def read(self, txn, series_key: bytes, key: bytes | None) -> tuple:
        """(record bytes or None, stored keyed answer or None) in one transaction."""
        raw = txn.get(series_key, db=self.streams)
        if key is None or raw is None:
            return raw, None
        return raw, txn.get(series_key + b"\x00" + key, db=self.keys_db)

    def plan(
        self,
        txn,
        series_key: bytes,
        created: bool,
        learned: Learned,
        keyed: tuple[bytes, bytes, bytes] | None,
    ) -> Plan:
        """What one observe writes: record, history, episodes, key, count. Reads
        only (any transaction that sees the record ``learned`` started from: its
        history and keys are what that record says), so it can be worked out
        before LMDB's writer is taken. ``keyed``: (Idempotency-Key, digest,
        answer) to remember, or None."""
        record = learned.record
        puts: list[tuple] = []
        deletes: list[tuple] = []
        record.history_from = self._plan_history(
            txn, series_key, learned, puts, deletes
        )
        self._plan_episodes(series_key, learned, puts, deletes)
        if keyed is not None:
            key, digest, answer = keyed
            seq = record.keys
            puts.append((self.order_db, numbered(series_key, seq), key))
            puts.append(
                (
                    self.keys_db,
                    series_key + b"\x00" + key,
                    KEY_HEAD.pack(seq, digest) + answer,
                )
            )
            if seq >= KEYS_KEPT:
                evicted = numbered(series_key, seq - KEYS_KEPT)
                old = txn.get(evicted, db=self.order_db)
                deletes.append((self.order_db, evicted))
                if old is not None:
                    deletes.append((self.keys_db, series_key + b"\x00" + old))
            record.keys = seq + 1
        puts.append((self.streams, series_key, _encode(record)))
        return Plan(puts, deletes, created)

    def write(self, txn, plan: Plan) -> None:
        """Make a plan's writes (LMDB errors only: it decides nothing)."""
        for db, key in plan.deletes:
            txn.delete(key, db=db)
        for db, key, value in plan.puts:
            txn.put(key, value, db=db)
        if plan.created:
            self._add_to_count(txn, 1)

    def _plan_history(
        self, txn, series_key: bytes, learned: Learned, puts: list, deletes: list
    ) -> int:
        """Append the points to the history; return the new first block kept."""
        first_seq = learned.first_seq
        after = learned.record.points
        kept_from = learned.record.history_from
        keep_block = max(0, after - self.history) // BLOCK_POINTS
        last_old = (first_seq - 1) // BLOCK_POINTS if first_seq else -1
        db = self.points_db
        for block in range(kept_from, min(keep_block, last_old + 1)):
            deletes.append((db, numbered(series_key, block)))
        prefix = b""
        if keep_block > last_old:
            start_block = keep_block
        else:
            start_block = first_seq // BLOCK_POINTS
            kept_from = max(kept_from, keep_block)
            if first_seq % BLOCK_POINTS:
                prefix = txn.get(numbered(series_key, start_block), db=db)
                if prefix is None or len(prefix) != ROW.size * (
                    first_seq % BLOCK_POINTS
                ):
                    raise CorruptRecord(
                        f"the history of stream {series_key.decode()!r} is corrupt "
                        f"(block {start_block}); other streams are unaffected "
                        "(DELETE /streams/{id} removes it)"
                    )
        data = prefix + _rows(learned, max(0, start_block * BLOCK_POINTS - first_seq))
        for i in range(0, len(data), BLOCK_BYTES):
            puts.append(
                (
                    db,
                    numbered(series_key, start_block + i // BLOCK_BYTES),
                    data[i : i + BLOCK_BYTES],
                )
            )
        return kept_from if keep_block <= last_old else keep_block

    def _plan_episodes(
        self, series_key: bytes, learned: Learned, puts: list, deletes: list
    ) -> None:
        if not learned.episodes:
            return
        db = self.episodes_db
        now = learned.record.episodes
        before = now - learned.opened
        oldest_kept = now - EPISODES_KEPT + 1
        for number in range(
            max(1, before - EPISODES_KEPT + 1), min(before + 1, oldest_kept)
        ):
            deletes.append((db, numbered(series_key, number)))
        for episode in learned.episodes:
            if episode.number >= oldest_kept:
                puts.append(
                    (db, numbered(series_key, episode.number), _encode(episode))
                )

    def _add_to_count(self, txn, delta: int) -> None:
        raw = txn.get(STREAMS_COUNT, db=self.meta)
        count = COUNT.unpack(raw)[0] if raw is not None else 0
        txn.put(STREAMS_COUNT, COUNT.pack(count + delta), db=self.meta)

    # -- configuration and deletion ----------------------------------------------

    def put_record(self, txn, series_key: bytes, record: StreamRecord, created: bool):
        txn.put(series_key, _encode(record), db=self.streams)
        if created:
            self._add_to_count(txn, 1)

    def delete(self, series_id: str, also=None) -> int:
        """Forget a stream in one transaction that works on a full store; return the
        points it had learned. ``also(txn, series_id, record)``: more to write in
        that transaction (the alert it resolves)."""
        series_key = series_id.encode()
        with self.store.write(reserve=False) as txn:
            raw = txn.get(series_key, db=self.streams)
            if raw is None:
                raise StreamNotFound(f"stream {series_id!r} is not known")
            record = decode_record(raw, series_key)
            points = record.points
            if also is not None:
                also(txn, series_id, record)
            txn.delete(series_key, db=self.streams)
            prefix = series_key + b"\x00"
            for db in (self.points_db, self.episodes_db, self.keys_db, self.order_db):
                cursor = txn.cursor(db=db)
                if not cursor.set_range(prefix):
                    continue
                while cursor.key().startswith(prefix):
                    if not cursor.delete():
                        break
            self._add_to_count(txn, -1)
        return points


def _rows(learned: Learned, start: int) -> bytes:
    """The history rows of ``learned``'s points from index ``start`` on."""
    ts, xs, ss, aa = (
        learned.timestamps,
        learned.values,
        learned.scores,
        learned.anomalies,
    )
    n = len(ss) - start
    if n <= 0:
        return b""
    if n <= 16:
        pack = ROW.pack
        return b"".join(
            [pack(ts[i], xs[i], ss[i], aa[i]) for i in range(start, start + n)]
        )
    rows = np.empty(n, ROW_DTYPE)
    rows["t"] = ts[start:]
    rows["v"] = xs[start:]
    rows["s"] = ss[start:]
    rows["a"] = aa[start:]
    return rows.tobytes()
