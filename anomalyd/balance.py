"""Spreading connections evenly over the workers.

Every worker waits on the one listening socket, and the kernel wakes them all when a
connection arrives; whichever runs first takes it. A worker that is on a CPU while
the others are not (a client opening 16 keep-alive connections at once, on a busy
2-core host) takes them all, and that worker then serves every request of those
connections while the others idle: half the throughput, measured (``bench/run.py``,
rounds of 2,600–2,900 predicts/s against 6,500–7,000 when spread).

So the workers tell each other, in a small region of shared memory the master maps
before it forks (as ``anomalyd.supervise.Board``), how many connections each holds,
with a heartbeat. A worker holding more than ``SLACK`` connections over the least
loaded live worker leaves a new connection to the others: it stops polling the
listening socket for ``PAUSE`` seconds. It never waits longer than ``MAX_DEFER`` for
them: a sibling that is busy, stopped (SIGSTOP) or dying must not keep connections
waiting, so after that the worker takes them itself, until no connection has found it
ahead for ``GAP`` seconds (then the next one may be left to the others again).
A worker whose heartbeat is older than ``STALE`` seconds, or which has stopped
accepting (a graceful stop), does not count.
"""

from __future__ import annotations

import mmap
import struct
import time

SLACK = 1
PAUSE = 0.002
MAX_DEFER = 0.05
GAP = 0.1
STALE = 3.0

_SLOT = struct.Struct("<qd")  # connections (-1: not accepting), heartbeat (monotonic)


class Spread:
    """Connections per worker slot, shared by the master's workers (inherited at
    fork). CLOCK_MONOTONIC is one clock for every process of the host."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, _SLOT.size * slots)
        self._slot: int | None = None
        self._deferring_since = self._last_ahead = -GAP

    def use_slot(self, slot: int | None) -> None:
        """In a worker after fork; None (no slot free): take part in nothing. Until
        it polls the listener (``publish`` from its loop), the worker counts as not
        accepting: one still loading the app is not left connections to take, and
        what the slot's previous worker published no longer counts."""
        self._slot = slot
        if slot is not None:
            self.publish(-1)

    def publish(self, connections: int) -> None:
        """This worker's connection count (-1 once it accepts no more), and a beat."""
        if self._slot is not None:
            _SLOT.pack_into(
                self._map, _SLOT.size * self._slot, connections, time.monotonic()
            )

    def _least_other(self, now: float) -> int | None:
        least = None
        for slot in range(self.slots):
            if slot == self._slot:
                continue
            connections, beat = _SLOT.unpack_from(self._map, _SLOT.size * slot)
            if connections < 0 or now - beat > STALE:
                continue
            if least is None or connections < least:
                least = connections
        return least

    def should_defer(self, connections: int, now: float) -> bool:
        """Whether a worker holding ``connections`` leaves a waiting connection to
        the others for now (see the module's docstring)."""
        if self._slot is None:
            return False
        least = self._least_other(now)
        if least is None or connections <= least + SLACK:
            return False
        if now - self._last_ahead > GAP:
            self._deferring_since = now  # not one wait with the last one
        self._last_ahead = now
        return now - self._deferring_since < MAX_DEFER


class Spreads:
    """The worker's part (a mixin of ``anomalyd.worker.BufferedThreadWorker``, whose
    main thread alone calls these): ``spread`` is set after fork."""

    spread: Spread | None = None
    _resume_at: float | None = None

    def defer_accept(self, now: float) -> bool:
        """Called as a connection waits to be accepted: True when this worker
        leaves it to the others and stops polling the listener for ``PAUSE``."""
        if self.spread is None or not self.spread.should_defer(self.nr_conns, now):
            return False
        self.set_accept_enabled(False)
        self._resume_at = now + PAUSE
        return True

    def until_resume(self, timeout: float, now: float) -> float:
        """The poll timeout, shortened to the end of a pause."""
        if self._resume_at is None:
            return timeout
        return min(timeout, max(0.0, self._resume_at - now))

    def resume_accepting(self, now: float) -> None:
        if self._resume_at is not None and now >= self._resume_at:
            self._resume_at = None
            if self.alive:
                self.set_accept_enabled(True)

    def count_connections(self, accepting: bool = True) -> None:
        """Tell the others this worker's connections (and that it is alive)."""
        if self.spread is not None:
            self.spread.publish(self.nr_conns if accepting else -1)
