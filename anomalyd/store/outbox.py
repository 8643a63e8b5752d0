"""The alerts' outbox: events written in the transaction that causes them, and each
receiver's progress through them. LMDB tables in the models' environment
(``StoreBase.open_db``):

- ``alert_events``:     u64 big-endian sequence -> msgpack ``Event``. Sequence numbers
  are global and never reused (``meta/alert_next``); the events kept are one
  contiguous run (the oldest go first, see ``_bound``).
- ``alert_firing``:     series id -> msgpack ``Firing``: the stream's firing alert as
  receivers know it (its opening event, wall clock, labels and threshold, fixed for
  the alert's life). For Alertmanager's re-sends and the dashboard, without a scan.
- ``alert_receivers``:  receiver id (8 bytes of blake2b of kind and URL) -> msgpack
  ``ReceiverRow``: its cursor (the next sequence to deliver; receivers deliver in
  sequence order, hence in order per stream), the head event's attempts, next
  attempt and last error, and its totals.
- ``alert_deliveries``: u64 sequence + receiver id -> msgpack ``Delivery``: how an
  event ended for a receiver (delivered, or refused for good), for ``GET /alerts``.
- ``meta``: ``alert_next`` (u64 LE), ``alert_epoch`` (8 random bytes: event ids are
  epoch-sequence, and ``anomalyd restore`` draws a new epoch, so an id never names two
  events), ``alert_dropped`` (u64 LE, undelivered events dropped at the bound).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
from collections.abc import Iterable, Sequence

import msgspec

from anomalyd.alerting import OPENED, Alert, Change
from anomalyd.store.base import StoreBase
from anomalyd.store.stream_reads import decode_record

log = logging.getLogger("anomalyd")

SEQ = struct.Struct(">Q")
COUNT = struct.Struct("<Q")
NEXT, EPOCH, DROPPED = b"alert_next", b"alert_epoch", b"alert_dropped"
# A dropped-events warning at most this often (seconds), with the count since.
DROP_LOG_EVERY = 60.0


class Event(msgspec.Struct, array_like=True):
    id: str  # epoch-sequence: stable, and unique across restores
    kind: str  # alerting.OPENED or alerting.RESOLVED
    series_id: str
    alert: Alert  # as it was when the event happened
    resolved_at: int | None  # stream time of the point that resolved it
    deleted: bool  # resolved because the stream was deleted
    labels: dict[str, str]
    threshold: float
    created_at: float  # wall clock of the request that caused it
    opened_at: float  # wall clock of the request that opened the alert


class Firing(msgspec.Struct, array_like=True):
    seq: int  # its episode_opened event
    event_id: str
    opened_at: float
    labels: dict[str, str]
    threshold: float


class ReceiverRow(msgspec.Struct, array_like=True):
    kind: str  # "alertmanager" or "webhook"
    url: str
    cursor: int  # the next sequence to deliver
    attempts: int = 0  # failed attempts at the event at the cursor
    next_at: float = 0.0  # no attempt before (wall clock)
    last_error: str | None = None
    sent: int = 0  # events delivered
    failed: int = 0  # events refused for good
    failed_attempts: int = 0
    since: int = 0  # its cursor when it was configured: older events are not its


class Delivery(msgspec.Struct, array_like=True):
    delivered: bool  # False: refused for good
    attempts: int
    last_error: str | None
    at: float


_encode = msgspec.msgpack.Encoder().encode
_event = msgspec.msgpack.Decoder(Event).decode
_firing = msgspec.msgpack.Decoder(Firing).decode
_row = msgspec.msgpack.Decoder(ReceiverRow).decode
_delivery = msgspec.msgpack.Decoder(Delivery).decode


def receiver_id(kind: str, url: str) -> bytes:
    return hashlib.blake2b(f"{kind} {url}".encode(), digest_size=8).digest()


def new_epoch(txn, meta) -> None:
    """A fresh epoch for event ids (a new store, or one just restored)."""
    txn.put(EPOCH, os.urandom(8), db=meta)


class Outbox:
    """The outbox's tables. ``max_events``: events kept at most."""

    def __init__(self, store: StoreBase, max_events: int) -> None:
        self.store = store
        self.env = store.env
        self.max_events = max_events
        self.meta = store.open_db(b"meta")
        self.events = store.open_db(b"alert_events")
        self.firing = store.open_db(b"alert_firing")
        self.receivers = store.open_db(b"alert_receivers")
        self.deliveries = store.open_db(b"alert_deliveries")
        self.streams = store.open_db(b"streams")  # the alerts as they are now
        self._epoch: str | None = None
        self._dropped_unlogged = 0
        self._drop_logged_at = 0.0

    # -- at worker start -----------------------------------------------------------

    def open(self, receivers: Sequence[tuple[str, str]]) -> None:
        """Give each configured receiver a cursor (events from now on are for it)
        and forget the receivers no longer configured."""
        wanted = {receiver_id(kind, url): (kind, url) for kind, url in receivers}
        with self.store.write(reserve=False) as txn:
            following = self._counter(txn, NEXT)
            stored = {bytes(k): _row(v) for k, v in txn.cursor(db=self.receivers)}
            for rid, row in stored.items():
                if rid not in wanted:
                    txn.delete(rid, db=self.receivers)
                    log.warning(
                        "alert receiver %s %s is no longer configured: forgotten, "
                        "with the %d events it had not received",
                        row.kind,
                        redact(row.url),
                        max(0, following - row.cursor),
                    )
            for rid, (kind, url) in wanted.items():
                if rid not in stored:
                    row = ReceiverRow(kind, url, following, since=following)
                    txn.put(rid, _encode(row), db=self.receivers)

    # -- the observe path: called inside its write transaction ---------------------

    def record(
        self,
        txn,
        series_id: str,
        changes: Iterable[Change],
        labels: dict[str, str],
        threshold: float,
        now: float,
        deleted: bool = False,
    ) -> int:
        """Write the events of ``changes`` and the firing table; return how many
        events. ``labels``/``threshold``: the stream's now (an alert keeps those it
        opened with)."""
        series_key = series_id.encode()
        seq = self._counter(txn, NEXT)
        epoch = self._epoch_in(txn)
        written = 0
        for change in changes:
            event_id = f"{epoch}-{seq}"
            if change.kind == OPENED:
                firing = Firing(seq, event_id, now, labels, threshold)
                txn.put(series_key, _encode(firing), db=self.firing)
            else:
                raw = txn.get(series_key, db=self.firing)
                if raw is None:  # opened before alerts were recorded
                    firing = Firing(seq, event_id, now, labels, threshold)
                else:
                    firing = _firing(raw)
                    txn.delete(series_key, db=self.firing)
            event = Event(
                event_id,
                change.kind,
                series_id,
                change.alert,
                change.resolved_at,
                deleted,
                firing.labels,
                firing.threshold,
                now,
                firing.opened_at,
            )
            txn.put(SEQ.pack(seq), _encode(event), db=self.events)
            seq += 1
            written += 1
        if written:
            txn.put(NEXT, COUNT.pack(seq), db=self.meta)
            self._bound(txn, seq)
        return written

    @property
    def epoch(self) -> str:
        """This store's epoch of event ids, in hex (made with the first event)."""
        if self._epoch is None:
            with self.env.begin() as txn:
                raw = txn.get(EPOCH, db=self.meta)
            if raw is None:
                return "0" * 16  # no event yet
            self._epoch = bytes(raw).hex()
        return self._epoch

    def _epoch_in(self, txn) -> str:
        """The epoch as this write transaction has it (drawn with the first event).
        Not cached: the transaction may yet be aborted, and with it an epoch drawn
        in it."""
        raw = txn.get(EPOCH, db=self.meta)
        if raw is None:
            new_epoch(txn, self.meta)
            raw = txn.get(EPOCH, db=self.meta)
        return bytes(raw).hex()

    def _bound(self, txn, following: int) -> None:
        """Keep at most ``max_events``: the oldest go first; those not yet delivered
        to every receiver are counted as dropped (and logged)."""
        cursor = txn.cursor(db=self.events)
        if not cursor.first():
            return
        first = SEQ.unpack(cursor.key())[0]
        excess = following - first - self.max_events
        if excess <= 0:
            return
        delivered_below = min(
            (_row(v).cursor for _, v in txn.cursor(db=self.receivers)),
            default=following,
        )
        dropped = 0
        for seq in range(first, first + excess):
            txn.delete(SEQ.pack(seq), db=self.events)
            self._forget_deliveries(txn, seq)
            if seq >= delivered_below:
                dropped += 1
        if dropped:
            total = self._counter(txn, DROPPED) + dropped
            txn.put(DROPPED, COUNT.pack(total), db=self.meta)
            self._log_dropped(dropped)

    def _forget_deliveries(self, txn, seq: int) -> None:
        prefix = SEQ.pack(seq)
        cursor = txn.cursor(db=self.deliveries)
        if cursor.set_range(prefix):
            while cursor.key()[:8] == prefix:
                if not cursor.delete():
                    break

    def _log_dropped(self, dropped: int) -> None:
        self._dropped_unlogged += dropped
        now = time.monotonic()
        if now - self._drop_logged_at >= DROP_LOG_EVERY:
            log.warning(
                "the alerts' outbox is full (outbox_max_events %d): %d events not yet "
                "delivered to every receiver were dropped (anomalyd_alerts_dropped_total)",
                self.max_events,
                self._dropped_unlogged,
            )
            self._dropped_unlogged = 0
            self._drop_logged_at = now

    def _counter(self, txn, key: bytes) -> int:
        raw = txn.get(key, db=self.meta)
        return COUNT.unpack(raw)[0] if raw is not None else 0

    # -- the delivering process ----------------------------------------------------

    def head(
        self, rid: bytes, limit: int, after: int | None = None
    ) -> tuple[ReceiverRow | None, list]:
        """The receiver's row and up to ``limit`` events from its cursor (or after
        ``after``, what its sender delivered and has not committed yet), as
        (sequence, Event), in order (a receiver behind the kept events starts at the
        oldest kept)."""
        with self.env.begin() as txn:
            raw = txn.get(rid, db=self.receivers)
            if raw is None:
                return None, []
            row = _row(raw)
            start = row.cursor if after is None else max(row.cursor, after + 1)
            found = []
            cursor = txn.cursor(db=self.events)
            if cursor.set_range(SEQ.pack(start)):
                for key, value in cursor:
                    found.append((SEQ.unpack(key)[0], _event(value)))
                    if len(found) == limit:
                        break
        return row, found

    def following(self) -> int:
        """The sequence the next event will get (cheap: one read)."""
        with self.env.begin() as txn:
            return self._counter(txn, NEXT)

    def finish(self, txn, rid: bytes, ended: Sequence[tuple[int, Delivery]]) -> None:
        """Events (from the cursor, in order) ended for the receiver: delivered, or
        refused for good; the cursor moves past them."""
        raw = txn.get(rid, db=self.receivers)
        if raw is None:
            return  # forgotten meanwhile (a restart with other receivers)
        row = _row(raw)
        for seq, record in ended:
            if seq < row.cursor:
                continue  # already committed
            if txn.get(SEQ.pack(seq), db=self.events) is not None:
                txn.put(SEQ.pack(seq) + rid, _encode(record), db=self.deliveries)
            if record.delivered:
                row.sent += 1
            else:
                row.failed += 1
                row.failed_attempts += 1
            row.cursor = seq + 1
        row.attempts, row.next_at, row.last_error = 0, 0.0, None
        txn.put(rid, _encode(row), db=self.receivers)

    def retry_later(
        self, txn, rid: bytes, cursor: int, next_at: float, error: str
    ) -> None:
        """An attempt at the event at ``cursor`` failed: note it, and when to retry."""
        raw = txn.get(rid, db=self.receivers)
        if raw is None:
            return
        row = _row(raw)
        if row.cursor != cursor:
            return
        row.attempts += 1
        row.failed_attempts += 1
        row.next_at = next_at
        row.last_error = error
        txn.put(rid, _encode(row), db=self.receivers)

    def firing_before(self, seq: int) -> list[tuple[str, Firing, Alert | None]]:
        """Alerts firing whose opening event is before ``seq`` (a receiver's cursor:
        it has had them), with each stream's alert as it is now (for its peak)."""
        found = []
        with self.env.begin() as txn:
            for key, value in txn.cursor(db=self.firing):
                firing = _firing(value)
                if firing.seq < seq:
                    found.append(
                        (bytes(key).decode(), firing, self.alert_now(txn, key))
                    )
        return found

    def alert_now(self, txn, series_key: bytes) -> Alert | None:
        """The stream's firing alert as its record has it now (its peak so far)."""
        raw = txn.get(series_key, db=self.streams)
        return None if raw is None else decode_record(raw, bytes(series_key)).alert


def redact(url: str) -> str:
    """``url`` without the password of its user information, for logs and pages."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}{slash}{path}"
