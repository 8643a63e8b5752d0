"""Reads of the alerts' outbox for ``GET /alerts``, ``/metrics`` and the dashboard
(the layout is described in ``anomalyd.store.outbox``)."""

from __future__ import annotations

import time
from typing import NamedTuple

from anomalyd.alerting import Alert
from anomalyd.store.outbox import (
    COUNT,
    DROPPED,
    NEXT,
    SEQ,
    Delivery,
    Event,
    Firing,
    Outbox,
    ReceiverRow,
    _delivery,
    _event,
    _firing,
    _row,
)

# Events looked at for one page at most, beyond the page itself: a page filtered by
# state may come back short (never empty while ``next`` is given) rather than walk
# the whole outbox.
SCAN = 10_000


class Listed(NamedTuple):
    seq: int
    event: Event
    # (row, how it ended there or None) for each receiver the event is for
    receivers: list[tuple[ReceiverRow, Delivery | None]]
    state: str


def state_of(seq: int, receivers: list[tuple[ReceiverRow, Delivery | None]]) -> str:
    failed = pending = False
    for row, delivery in receivers:
        if delivery is not None:
            failed = failed or not delivery.delivered
        elif seq >= row.cursor:
            pending = True
    return "failed" if failed else "pending" if pending else "delivered"


def page(
    outbox: Outbox, state: str | None, after: int | None, limit: int
) -> tuple[list[Listed], int | None]:
    """Events after sequence ``after`` in order, those in ``state`` only (None: all),
    at most ``limit``; and the sequence to go on after (None: no more)."""
    found: list[Listed] = []
    with outbox.env.begin() as txn:
        rows = [(bytes(k), _row(v)) for k, v in txn.cursor(db=outbox.receivers)]
        start = 0 if after is None else after + 1
        if state == "pending":
            start = max(start, min((row.cursor for _, row in rows), default=start))
            if not rows:
                return found, None
        cursor = txn.cursor(db=outbox.events)
        if not cursor.set_range(SEQ.pack(start)):
            return found, None
        deliveries = txn.cursor(db=outbox.deliveries)
        last = None
        for scanned, (key, value) in enumerate(cursor):
            seq = SEQ.unpack(key)[0]
            if len(found) == limit or scanned == limit + SCAN:
                return found, last
            last = seq
            ended = _ended(deliveries, key)
            mine = [(row, ended.get(rid)) for rid, row in rows if seq >= row.since]
            event_state = state_of(seq, mine)
            if state is None or event_state == state:
                found.append(Listed(seq, _event(value), mine, event_state))
    return found, None


def _ended(cursor, key: bytes) -> dict[bytes, Delivery]:
    ended = {}
    if cursor.set_range(key):
        for k, v in cursor:
            if k[:8] != key:
                break
            ended[bytes(k[8:])] = _delivery(v)
    return ended


class Figures(NamedTuple):
    by_kind: dict[str, dict[str, int]]  # kind -> sent, failed, attempts_failed, pending
    oldest_pending_age: float  # seconds; 0 when nothing is pending
    dropped: int
    firing: int
    kept: int  # events in the outbox


def figures(outbox: Outbox, kinds: tuple[str, ...]) -> Figures:
    by_kind = {
        kind: {"sent": 0, "failed": 0, "attempts_failed": 0, "pending": 0}
        for kind in kinds
    }
    oldest = None
    with outbox.env.begin() as txn:
        following = _count(txn.get(NEXT, db=outbox.meta))
        cursor = txn.cursor(db=outbox.events)
        first = SEQ.unpack(cursor.key())[0] if cursor.first() else following
        for _, value in txn.cursor(db=outbox.receivers):
            row = _row(value)
            counts = by_kind.setdefault(
                row.kind, {"sent": 0, "failed": 0, "attempts_failed": 0, "pending": 0}
            )
            counts["sent"] += row.sent
            counts["failed"] += row.failed
            counts["attempts_failed"] += row.failed_attempts
            head = max(row.cursor, first)
            if head < following:
                counts["pending"] += following - head
                oldest = head if oldest is None else min(oldest, head)
        age = 0.0
        if oldest is not None:
            raw = txn.get(SEQ.pack(oldest), db=outbox.events)
            if raw is not None:
                age = max(0.0, time.time() - _event(raw).created_at)
        dropped = _count(txn.get(DROPPED, db=outbox.meta))
        firing = txn.stat(outbox.firing)["entries"]
    return Figures(by_kind, age, dropped, firing, following - first)


def firing(outbox: Outbox, limit: int) -> tuple[list[tuple[str, Firing, Alert]], int]:
    """Up to ``limit`` firing alerts, the most recently opened first, each with the
    stream's alert as it is now (read in the same transaction), and how many fire
    in all."""
    with outbox.env.begin() as txn:
        found = [(bytes(k), _firing(v)) for k, v in txn.cursor(db=outbox.firing)]
        found.sort(key=lambda item: item[1].opened_at, reverse=True)
        shown = []
        for key, firing in found[:limit]:
            alert = outbox.alert_now(txn, key)
            if alert is not None:
                shown.append((key.decode(), firing, alert))
    return shown, len(found)


def _count(raw) -> int:
    return COUNT.unpack(raw)[0] if raw is not None else 0
