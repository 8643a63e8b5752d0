"""Observing streams: read, learn, and commit in a group, one after another per stream.

An observe reads the stream's record (and its Idempotency-Key, if any) in a read
transaction, runs the detector and works out every write (``StreamTables.plan``)
outside LMDB's writer. Its operation, run by the group commit (``anomalyd.commit``)
inside the shared write transaction, checks that the record is still the one it
learned from, and makes the planned writes. If another observe of the same
stream, from any worker, committed first (or is earlier in the same group), it learns
again on the record as committed: concurrent observes of one stream are applied one
after another, each on the state the previous one left, and none is lost or doubled.
The same check makes a repeated Idempotency-Key safe even when the first request is
still in flight: the second finds the first's key in the transaction and answers
with its answer.

Alerts (``anomalyd.alerting``) follow the points in the same way: the stream's firing
alert is part of its record, and an observe that opens or resolves one writes the
event to the outbox (``anomalyd.store.outbox``) in its own write operation, so the
event is committed with the points that caused it, or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from anomalyd import alerting, streams
from anomalyd.commit import GroupCommit
from anomalyd.store.base import StoreBase
from anomalyd.store.outbox import Outbox
from anomalyd.store.streams import (
    KEY_HEAD,
    StreamTables,
    decode_record,
)
from anomalyd.streams import KeyReused, Learned, StreamConfig, StreamRecord

# What an answer is made of: the API layer's encoder of the response body.
Answer = Callable[[Learned], bytes]
# Bytes a record may take with its labels (the headroom check of a write).
RECORD_BYTES = 4096
# Bytes an outbox event may take (its labels included), for the headroom check.
EVENT_BYTES = 4096


class Observed:
    """The answer's bytes, and what this request added (for the statistics)."""

    __slots__ = ("alerted", "answer", "opened", "points")

    def __init__(self, answer: bytes, points: int, opened: int) -> None:
        self.answer = answer
        self.points = points
        self.opened = opened
        self.alerted = False  # it wrote alert events (the deliverer is woken)


class Alerts:
    """Where alerts go: the outbox, ``resolve_after`` seconds of stream time, and
    ``wake``, called after a commit that wrote events (the deliverer, if it runs in
    this process). ``group``: the worker's group commit, shared by its observes and
    its deliverer's cursor updates (one fsync for both)."""

    def __init__(
        self,
        outbox: Outbox,
        resolve_after: int,
        wake: Callable[[], None],
        group: GroupCommit,
    ) -> None:
        self.outbox = outbox
        self.resolve_after = resolve_after
        self.wake = wake
        self.group = group


class Observer:
    def __init__(
        self,
        store: StoreBase,
        tables: StreamTables,
        defaults: StreamConfig,
        alerts: Alerts,
    ) -> None:
        self.tables = tables
        self.defaults = defaults
        self.alerts = alerts
        self.group = alerts.group
        self._store = store
        self._begin = store.env.begin

    def observe(
        self,
        series_id: str,
        timestamps: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        answer: Answer,
        key: bytes | None = None,
        digest: bytes = b"",
    ) -> Observed:
        """Learn the points (all or none) and return the answer once durable.

        ``key``/``digest``: the request's Idempotency-Key and a digest of what it
        asked; a key the stream answered before gives that answer (``KeyReused``
        when the digest differs) and learns nothing."""
        series_key = series_id.encode()
        tables = self.tables
        group = self.group
        follow = alerting.follow_learned
        resolve_after = self.alerts.resolve_after
        group.announce()
        try:
            with self._begin() as txn:
                raw, stored = tables.read(txn, series_key, key)
                if stored is None:
                    record = self._record(raw, series_key)
                    learned = streams.learn(record, timestamps, values)
                    changes = follow(record, learned, resolve_after)
                    config = learned.record.config
                    first = Observed(
                        answer(learned), len(learned.scores), learned.opened
                    )
                    keyed = _keyed(key, digest, first)
                    plan = tables.plan(txn, series_key, raw is None, learned, keyed)
        except BaseException:
            group.withdraw()
            raise
        if stored is not None:
            group.withdraw()
            return _replay(stored, digest, key)

        def check(txn) -> tuple:
            """Inside the shared write transaction: reads and decides only."""
            now, stored = tables.read(txn, series_key, key)
            if stored is not None:
                return None, _replay(stored, digest, key), (), config
            if now == raw:
                return plan, first, changes, config
            # Another observe of this stream committed first: learn after it.
            before = self._record(now, series_key)
            done = streams.learn(before, timestamps, values)
            moved = follow(before, done, resolve_after)
            observed = Observed(answer(done), len(done.scores), done.opened)
            keyed = _keyed(key, digest, observed)
            decided = tables.plan(txn, series_key, now is None, done, keyed)
            return decided, observed, moved, done.record.config

        def write(txn, checked: tuple) -> Observed:
            decided, observed, moved, config = checked
            if decided is not None:
                tables.write(txn, decided)
                if moved:
                    observed.alerted = True
                    self.alerts.outbox.record(
                        txn,
                        series_id,
                        moved,
                        config.labels,
                        config.threshold,
                        time.time(),
                    )
            return observed

        # LMDB pages are rarely full: twice the bytes put, as an upper bound.
        need = 2 * plan.size() + EVENT_BYTES * len(changes)
        done = group.run(check, write, need, announced=True)
        if done.alerted:
            self.alerts.wake()
        return done

    def _record(self, raw: bytes | None, series_key: bytes) -> StreamRecord:
        if raw is None:
            return streams.new_record(self.defaults)
        return decode_record(raw, series_key)

    def configure(self, series_id: str, **changes) -> StreamRecord:
        """Create or configure a stream (None: keep, or the default on a new one)."""
        series_key = series_id.encode()
        with self._store.write(need_bytes=RECORD_BYTES) as txn:
            raw = txn.get(series_key, db=self.tables.streams)
            record = self._record(raw, series_key)
            record = streams.configure(record, **changes)
            self.tables.put_record(txn, series_key, record, raw is None)
        return record

    def delete(self, series_id: str) -> int:
        """Forget a stream (``StreamTables.delete``); a firing alert resolves in the
        same transaction. Returns the points it had learned."""
        points = self.tables.delete(series_id, self._resolve_deleted)
        self.alerts.wake()
        return points

    def _resolve_deleted(self, txn, series_id: str, record: StreamRecord) -> None:
        if record.alert is None:
            return
        config = record.config
        self.alerts.outbox.record(
            txn,
            series_id,
            [alerting.resolved_by_deletion(record.alert)],
            config.labels,
            config.threshold,
            time.time(),
            deleted=True,
        )


def _keyed(key: bytes | None, digest: bytes, observed: Observed) -> tuple | None:
    return None if key is None else (key, digest, observed.answer)


def _replay(stored: bytes, digest: bytes, key: bytes) -> Observed:
    _, first_digest = KEY_HEAD.unpack_from(stored)
    if first_digest != digest:
        raise KeyReused(
            f"Idempotency-Key {key.decode()!r} was used for a different request to "
            "this stream (another body or route); use a new key for a new request"
        )
    return Observed(bytes(stored[KEY_HEAD.size :]), 0, 0)
