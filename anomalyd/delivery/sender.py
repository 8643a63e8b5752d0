"""One receiver's sender: its own thread, its own timeout, its own backoff.

A sender delivers its receiver's events in outbox order (so in order per stream),
from its cursor: one event per POST to a webhook, up to ``BATCH`` to Alertmanager
(one list). Each attempt is bounded by ``alert_timeout`` (``delivery.http``), so a
slow or hanging receiver holds only its own sender, never another receiver's.

- A 2xx: the events are delivered; the cursor moves past them in a durable commit
  made ``SAVE_AFTER`` seconds after the first delivery not yet committed (a few
  fsyncs a second at most rather than one per event, shared with the worker's
  observes). A crash before it sends those events again, with the same ids.
- No answer, a timeout, a 408, a 429 or a 5xx: tried again, without end, after an
  exponential backoff with full jitter (a random wait between 0 and
  ``BACKOFF_BASE`` * 2^attempts, at most ``BACKOFF_CAP``; at least what a
  Retry-After asks, within the cap), so a receiver down for an hour gets everything,
  in order, within ``BACKOFF_CAP`` of its return.
- Any other 4xx, or a redirect (never followed): the receiver refuses the event
  itself; after ``REFUSALS`` such answers in a row it is marked failed for that
  receiver (``GET /alerts?state=failed``) and the cursor moves on.

Alertmanager forgets an alert that is not re-sent: every ``alert_resend_interval``
its sender re-sends the alerts still firing that it has already delivered.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import NamedTuple

from anomalyd.commit import GroupCommit
from anomalyd.delivery import formats
from anomalyd.delivery.http import Outcome, Target, post, target
from anomalyd.store.outbox import Delivery, Outbox, receiver_id, redact

log = logging.getLogger("anomalyd")

ALERTMANAGER, WEBHOOK = "alertmanager", "webhook"
BATCH = {ALERTMANAGER: 64, WEBHOOK: 1}
BACKOFF_BASE = 1.0  # seconds
BACKOFF_CAP = 300.0
REFUSALS = 4
# Firing alerts per re-send request to Alertmanager.
RESEND_CHUNK = 500
# The longest a sender sleeps before looking at its row again.
IDLE = 1.0
# Deliveries are committed together, this many seconds after the first one not yet
# committed: at most a few cursor commits a second, whatever the rate of events (a
# crash sends those again: duplicates, never a loss).
SAVE_AFTER = 0.2


class Receiver(NamedTuple):
    kind: str
    url: str  # as configured
    rid: bytes
    to: Target  # where it is posted


def receivers_of(settings) -> list[Receiver]:
    found = [
        Receiver(ALERTMANAGER, url, receiver_id(ALERTMANAGER, url), target(post_to))
        for url in dict.fromkeys(settings.alertmanager_url)
        for post_to in (formats.alertmanager_url(url),)
    ]
    found += [
        Receiver(WEBHOOK, url, receiver_id(WEBHOOK, url), target(url))
        for url in dict.fromkeys(settings.webhook_url)
    ]
    return found


def backoff(attempts: int, retry_after: float | None) -> float:
    """Seconds to wait after the ``attempts``-th failure in a row (full jitter)."""
    wait = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempts))
    if retry_after is not None:
        wait = max(wait, min(retry_after, BACKOFF_CAP))
    return wait


def refused(outcome: Outcome) -> bool:
    """The receiver refuses the request itself: retrying the same will not help."""
    status = outcome.status
    return status is not None and 300 <= status < 500 and status not in (408, 429)


class Sender:
    def __init__(
        self,
        receiver: Receiver,
        outbox: Outbox,
        group: GroupCommit,
        settings,
        secret_key: bytes | None,
    ) -> None:
        self.receiver = receiver
        self.outbox = outbox
        self.group = group
        self.timeout = float(settings.alert_timeout)
        self.resend = settings.alert_resend_interval
        self.public_url = settings.public_url
        self.key = secret_key
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.batch = BATCH[receiver.kind]
        self.resend_at = 0.0
        # Delivered, not yet committed: (sequence, Delivery), and since when.
        self.unsaved: list[tuple[int, Delivery]] = []
        self.unsaved_since: float | None = None
        self.name = f"{receiver.kind} {redact(receiver.url)}"
        self.thread = threading.Thread(
            target=self._run, name=f"anomalyd-send-{receiver.kind}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to commit what it delivered and end (``join`` it)."""
        self.stopping.set()
        self.wakeup.set()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception:
                log.exception("alert sender for %s failed; retrying in 1 s", self.name)
                self.stopping.wait(1)
        try:
            self._save()  # a graceful stop sends nothing again after a restart
        except Exception:
            log.exception("alert sender for %s: deliveries not committed", self.name)

    def _sleep(self, seconds: float) -> None:
        self.wakeup.wait(max(0.0, min(seconds, IDLE)))
        self.wakeup.clear()

    def step(self) -> None:
        unsaved = self.unsaved
        after = unsaved[-1][0] if unsaved else None
        row, events = self.outbox.head(self.receiver.rid, self.batch, after)
        now = time.time()
        if row is None:  # forgotten: a newer worker runs with other receivers
            unsaved.clear()
            self._sleep(IDLE)
            return
        if (
            self.receiver.kind == ALERTMANAGER
            and now >= self.resend_at
            and not row.attempts
        ):
            self._save()
            self.resend_at = now + self.resend
            self._resend(row.cursor, now)
        if not events:
            if unsaved:  # wait out the window for more before committing
                left = SAVE_AFTER - (time.monotonic() - self.unsaved_since)
                if left > 0:
                    self._sleep(left)
                    return
            self._save()
            self._sleep(self.resend_at - now)
            return
        if row.next_at > now and not unsaved:
            self._sleep(row.next_at - now)
            return
        # Failed attempts so far at the first of these events (the stored row's
        # head is behind it while successes wait to be committed).
        failures = 0 if unsaved else row.attempts
        outcome = self._send([event for _, event in events], now)
        seqs = [seq for seq, _ in events]
        if outcome.error is None:
            self.batch = BATCH[self.receiver.kind]
            at = time.time()
            unsaved += [
                (seq, Delivery(True, failures + 1 if i == 0 else 1, None, at))
                for i, seq in enumerate(seqs)
            ]
            if self.unsaved_since is None:
                self.unsaved_since = time.monotonic()
            elif time.monotonic() - self.unsaved_since >= SAVE_AFTER:
                self._save()
            return
        self._save()  # the successes before this one are committed first
        if refused(outcome) and len(seqs) > 1:
            self.batch = 1  # find the one refused
        elif refused(outcome) and failures + 1 >= REFUSALS:
            log.warning(
                "alert event %s refused by %s %d times (%s): marked failed for it",
                events[0][1].id,
                self.name,
                REFUSALS,
                outcome.error,
            )
            ended = [(seqs[0], Delivery(False, REFUSALS, outcome.error, time.time()))]
            self._commit(self.outbox.finish, ended)
            return
        wait = backoff(failures + 1, outcome.retry_after)
        log.info(
            "alert event %s to %s: %s; attempt %d, next in %.1f s",
            events[0][1].id,
            self.name,
            outcome.error,
            failures + 1,
            wait,
        )
        self._commit(
            self.outbox.retry_later, seqs[0], time.time() + wait, outcome.error
        )

    def _save(self) -> None:
        """Commit the deliveries made since the last commit (the cursor moves)."""
        if self.unsaved:
            ended, self.unsaved, self.unsaved_since = self.unsaved, [], None
            self._commit(self.outbox.finish, ended)

    def _send(self, events: list, now: float) -> Outcome:
        if self.receiver.kind == ALERTMANAGER:
            body = formats.alertmanager_body(events, now, self.resend, self.public_url)
            return post(self.receiver.to, body, {}, self.timeout)
        event = events[0]
        body = formats.webhook_body(event, self.public_url)
        headers = formats.webhook_headers(self.key, event, body, int(time.time()))
        return post(self.receiver.to, body, headers, self.timeout)

    def _resend(self, cursor: int, now: float) -> None:
        firing = self.outbox.firing_before(cursor)
        for i in range(0, len(firing), RESEND_CHUNK):
            chunk = firing[i : i + RESEND_CHUNK]
            body = formats.resend_body(chunk, now, self.resend, self.public_url)
            outcome = post(self.receiver.to, body, {}, self.timeout)
            if outcome.error is not None:
                log.info("re-sending firing alerts to %s: %s", self.name, outcome.error)
                return

    def _commit(self, method, *args) -> None:
        self.group.run(
            lambda txn: None,
            lambda txn, _: method(txn, self.receiver.rid, *args),
        )
