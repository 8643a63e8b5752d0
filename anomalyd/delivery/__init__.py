"""Alert delivery: the outbox, its receivers, and the worker that delivers.

- ``http``:      one POST within a deadline, following nothing.
- ``formats``:   Alertmanager's alerts, the signed webhook document.
- ``sender``:    one receiver's thread: order, timeout, backoff, refusals, re-sends.
- ``deliverer``: the lock that makes exactly one worker deliver at a time.

``AlertService`` ties them together for a worker: built with the app (no I/O but
opening the tables), then, in a real worker before its first request, ``open``
brings the outbox's receivers up to date and ``start`` starts the thread that
delivers once this worker holds the lock (never in tests that only build an app).
"""

from __future__ import annotations

from anomalyd.alert_settings import secret_key
from anomalyd.commit import GroupCommit
from anomalyd.delivery.deliverer import Deliverer
from anomalyd.delivery.sender import receivers_of
from anomalyd.observer import Alerts
from anomalyd.store.base import StoreBase
from anomalyd.store.outbox import Outbox


class AlertService:
    def __init__(self, settings, store: StoreBase) -> None:
        self.settings = settings
        self.public_url = settings.public_url
        self.outbox = Outbox(store, settings.outbox_max_events)
        self.receivers = receivers_of(settings)
        # The worker's one group commit: observes and cursor updates share fsyncs.
        self.group = GroupCommit(store)
        key = (
            None
            if settings.webhook_secret is None
            else secret_key(settings.webhook_secret)
        )
        self.deliverer = (
            Deliverer(self.group, store, self.outbox, self.receivers, settings, key)
            if self.receivers
            else None
        )
        self.alerts = Alerts(
            self.outbox, settings.alert_resolve_after, self.wake, self.group
        )

    def open(self) -> None:
        """Cursors for the receivers configured, none for the others (a write)."""
        self.outbox.open([(r.kind, r.url) for r in self.receivers])

    def start(self) -> None:
        """Deliver from this worker once it holds the lock (a thread waits for it)."""
        if self.deliverer is not None:
            self.deliverer.start()

    def wake(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()
