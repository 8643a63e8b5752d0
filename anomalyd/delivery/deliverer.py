"""Exactly one process delivers alerts at a time: the worker holding ``alerts.lock``.

Every worker starts a thread that blocks on an exclusive ``flock`` of
``<data_dir>/alerts.lock`` (opened by the worker itself after the fork, so each
worker's lock is its own). The one that gets it starts a sender per receiver
(``delivery.sender``) and delivers until its process ends. The kernel releases an
``flock`` when its holder dies, whatever kills it: SIGKILL, a crash, the master
retiring it on timeout or reload. Another worker's thread, already waiting, then
holds it at once and goes on from the cursors committed in the store. The holder's
pid is written into the file (for operators and tests).

New events are noticed at once when this worker wrote them (``wake``), and by a look
at the outbox's next sequence number every ``POLL`` seconds when another worker did.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import threading
import time

from anomalyd.commit import GroupCommit
from anomalyd.delivery.sender import Receiver, Sender
from anomalyd.store.base import StoreBase
from anomalyd.store.outbox import Outbox

log = logging.getLogger("anomalyd")

LOCK_FILE = "alerts.lock"
POLL = 0.02  # seconds
# A worker stopping gracefully (SIGTERM, a reload) waits this long at exit for its
# senders to commit what they delivered (one sending may take up to alert_timeout).
STOP_WAIT = 2.0


class Deliverer:
    def __init__(
        self,
        group: GroupCommit,
        store: StoreBase,
        outbox: Outbox,
        receivers: list[Receiver],
        settings,
        secret_key: bytes | None,
    ) -> None:
        self.path = os.path.join(store.path, LOCK_FILE)
        self.group = group
        self.outbox = outbox
        self._receivers = receivers
        self._settings = settings
        self._key = secret_key
        self.senders: list[Sender] = []
        self.holding = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="anomalyd-alerts", daemon=True).start()

    def wake(self) -> None:
        for sender in self.senders:
            sender.wakeup.set()

    def stop(self) -> None:
        """At a graceful exit: the senders commit their deliveries, so that the
        worker taking the lock over does not send them again."""
        for sender in self.senders:
            sender.stop()
        deadline = time.monotonic() + STOP_WAIT
        for sender in self.senders:
            sender.thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another worker delivers
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            log.error("alerts are not delivered by worker %d: %s", os.getpid(), exc)
            return
        log.info(
            "worker %d delivers alerts to %d receiver(s)",
            os.getpid(),
            len(self._receivers),
        )
        self.senders = [
            Sender(receiver, self.outbox, self.group, self._settings, self._key)
            for receiver in self._receivers
        ]
        for sender in self.senders:
            sender.start()
        atexit.register(self.stop)
        self.holding.set()
        seen = self.outbox.following()
        stop = threading.Event()  # never set: the thread ends with its process
        while not stop.wait(POLL):
            try:
                now = self.outbox.following()
            except Exception:  # the store closing at exit, for one
                log.debug("alerts: the outbox could not be read", exc_info=True)
                continue
            if now != seen:
                seen = now
                self.wake()
