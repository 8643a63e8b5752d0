"""Group commit: many callers' writes in one durable LMDB commit (one fsync).

A durable commit costs an fsync, a few milliseconds on most disks: one commit per
request would cap observes near the disk's commits per second. ``GroupCommit.run(op)``
queues a write operation instead. The first caller when no commit is in progress
becomes the leader: it takes every operation queued so far, runs each in a nested
write transaction of one ``Store.write`` transaction (an operation that raises leaves
nothing behind and gets its own exception), commits once, then hands leadership to
the oldest caller still waiting, if any. Every caller returns its own result, or
raises its own exception, only after the commit that holds its writes is durable.

While one leader commits, the next group gathers. Across worker processes LMDB's
single writer lock lines the groups up: a leader waiting for the lock while another
worker commits is time its own queue keeps growing in.

Errors of the whole transaction (the store is full, the disk failed, the lock file
was replaced) reach every caller of the group: none of its writes was committed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import lmdb

from anomalyd.store.base import StoreBase

# Operations in one commit at most: bounds how long one write transaction holds
# LMDB's writer (the rest wait for the next group, already gathered).
MAX_GROUP = 256

Operation = Callable[[lmdb.Transaction], Any]


class _Waiter:
    __slots__ = ("done", "error", "event", "need", "op", "value")

    def __init__(self, op: Operation, need: int) -> None:
        self.op = op
        self.need = need
        self.event = threading.Event()
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.value


class GroupCommit:
    def __init__(self, store: StoreBase) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._leading = False
        # Figures for tests and benchmarks: commits made, operations committed.
        self.commits = 0
        self.operations = 0

    def run(self, op: Operation, need_bytes: int = 0) -> Any:
        """Run ``op(txn)`` in a durable write transaction shared with other callers;
        return what it returned once its commit is durable, or raise what it raised.
        ``need_bytes``: what it will add to the store, for the headroom check."""
        waiter = _Waiter(op, need_bytes)
        with self._lock:
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                self._queue.append(waiter)
        if not lead:
            waiter.event.wait()
            if waiter.done:
                return waiter.result()
            # Promoted: the previous leader handed over with this caller first.
        self._lead(waiter)
        return waiter.result()

    def _lead(self, leader: _Waiter) -> None:
        with self._lock:
            group = [leader]
            while self._queue and len(group) < MAX_GROUP:
                group.append(self._queue.popleft())
        try:
            self._commit(group)
        finally:
            with self._lock:
                for waiter in group:
                    waiter.done = True
                successor = self._queue.popleft() if self._queue else None
                if successor is None:
                    self._leading = False
            for waiter in group:
                if waiter is not leader:
                    waiter.event.set()
            if successor is not None:
                successor.event.set()  # not done: it leads the next group

    def _commit(self, group: list[_Waiter]) -> None:
        env = self._store.env
        try:
            with self._store.write(need_bytes=sum(w.need for w in group)) as txn:
                for waiter in group:
                    try:
                        with env.begin(write=True, parent=txn) as child:
                            waiter.value = waiter.op(child)
                    except lmdb.Error:
                        # Out of room or a failing disk: the parent transaction is
                        # no better off. Abort it all (Store.write names the cause).
                        raise
                    except Exception as exc:  # noqa: BLE001 - handed to its caller
                        waiter.error = exc
        except Exception as exc:  # noqa: BLE001 - handed to every caller
            # Nothing of the group was committed: every caller gets the error, each
            # its own object (each raises it in its own thread).
            for waiter in group:
                waiter.value = None
                waiter.error = _copy(exc)
        else:
            self.commits += 1
            self.operations += len(group)


def _copy(exc: BaseException) -> BaseException:
    try:
        copy = type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - an exception type with another signature
        return exc
    copy.__cause__ = exc.__cause__
    return copy
