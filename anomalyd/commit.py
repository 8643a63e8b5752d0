"""Group commit: many callers' writes in one durable LMDB commit (one fsync).

A durable commit costs an fsync, a few milliseconds on most disks: one commit per
request would cap observes near the disk's commits per second. ``GroupCommit.run``
queues a write operation instead. The first caller when no commit is in progress
becomes the leader: it begins one ``Store.write`` transaction, and once it holds
LMDB's writer it takes every operation queued so far, runs each, commits once, then
hands leadership to the oldest caller still waiting, if any. Every caller returns its
own result, or raises its own exception, only after the commit that holds its writes
is durable.

An operation comes in two parts, so that one that is refused leaves nothing behind
without a nested transaction per operation: ``check(txn)`` only reads, and decides
(it may raise: that caller gets the exception, nothing was written);
``write(txn, checked)`` only writes what was decided. An exception from a ``write``
(an LMDB error: the map or the disk full) aborts the whole transaction, and every
caller of the group gets it: none of its writes was committed.

Every LMDB call releases the GIL (py-lmdb), and LMDB's writer is held from the
transaction's start through its fsync: while it is held, a call may wait for the GIL
behind the worker's other threads. So the work inside is kept to the least: the
callers do theirs before (the detector, the encoding, the reads), the operations
only check and write.

While one leader commits, the next group gathers. Across worker processes LMDB's
single writer lock lines the groups up: the queue is taken only once the writer is
held, so everything that arrived while another worker committed goes into this
commit. Room: each operation says how many bytes it may add, and the store's rule
applies to each (``StoreBase.write``: the last ``headroom`` bytes of the map are kept
for deletes); one that does not fit gets ``StoreFull`` and the others go on.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import lmdb

from anomalyd.store.base import StoreBase
from anomalyd.store.errors import StoreFull

# Operations in one commit at most: bounds how long one write transaction holds
# LMDB's writer (the rest wait for the next group, already gathered).
MAX_GROUP = 256
# The longest a leader holding the writer waits for announced operations, seconds.
ARRIVAL_WAIT = 0.002

Check = Callable[[lmdb.Transaction], Any]
Write = Callable[[lmdb.Transaction, Any], Any]


class _Waiter:
    __slots__ = ("check", "done", "error", "need", "value", "wake", "write")

    def __init__(self, check: Check, write: Write, need: int) -> None:
        self.check = check
        self.write = write
        self.need = need
        self.wake: Any = None  # a held lock, released to wake a queued caller
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
        self._page_size = store.page_size
        self._lock = threading.Lock()
        self._arrival = threading.Condition(self._lock)
        self._queue: deque[_Waiter] = deque()
        self._leading = False
        self._coming = 0  # callers that announced an operation not yet queued
        # Figures for tests and benchmarks: commits made, operations committed.
        self.commits = 0
        self.operations = 0

    def announce(self) -> None:
        """A caller is preparing an operation (``run`` follows, or ``withdraw``): a
        leader about to commit waits a little for it rather than leave it for the
        next commit, a whole fsync later."""
        with self._lock:
            self._coming += 1

    def withdraw(self) -> None:
        """The caller announced an operation it will not run."""
        with self._lock:
            self._coming -= 1

    def run(
        self, check: Check, write: Write, need_bytes: int = 0, announced: bool = False
    ) -> Any:
        """``write(txn, check(txn))`` in a durable write transaction shared with other
        callers; return what ``write`` returned once its commit is durable, or raise
        what was raised. ``need_bytes``: what it may add to the store."""
        waiter = _Waiter(check, write, need_bytes)
        with self._lock:
            if announced:
                self._coming -= 1
                self._arrival.notify_all()
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                waiter.wake = threading.Lock()
                waiter.wake.acquire()
                self._queue.append(waiter)
        if not lead:
            waiter.wake.acquire()  # released when done, or to lead the next group
            if waiter.done:
                return waiter.result()
        self._lead(waiter)
        return waiter.result()

    def _lead(self, leader: _Waiter) -> None:
        group = [leader]
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
                    waiter.wake.release()
            if successor is not None:
                successor.wake.release()  # not done: it leads the next group

    def _commit(self, group: list[_Waiter]) -> None:
        store = self._store
        env = store.env
        try:
            # The store's room rule is applied below, to each operation taken.
            with store.write(reserve=False) as txn:
                # Gathered only once LMDB's writer is ours: callers that came while
                # another worker held it join this commit.
                with self._lock:
                    if self._coming and len(self._queue) < MAX_GROUP:
                        # Operations being prepared in this worker: wait for them
                        # (their preparation is far shorter than a commit).
                        self._arrival.wait_for(lambda: not self._coming, ARRIVAL_WAIT)
                    while self._queue and len(group) < MAX_GROUP:
                        group.append(self._queue.popleft())
                # Pages ever allocated (last_pgno) are never fewer than the pages
                # in use: a lower bound of the room, with no walk of the trees.
                free = store.map_size - store.headroom
                room = free - (env.info()["last_pgno"] + 1) * self._page_size
                exact = False
                for waiter in group:
                    if waiter.need > room and not exact:
                        room, exact = free - store.used_bytes(txn), True
                    if waiter.need > room:
                        waiter.error = _no_room(store, waiter.need, room)
                        continue
                    room -= waiter.need
                    try:
                        checked = waiter.check(txn)
                    except lmdb.Error:
                        raise
                    except Exception as exc:  # noqa: BLE001 - handed to its caller
                        waiter.error = exc  # refused: it wrote nothing
                        room += waiter.need
                        continue
                    waiter.value = waiter.write(txn, checked)
        except Exception as exc:  # noqa: BLE001 - handed to every caller
            # Nothing of the group was committed: every caller gets the error, each
            # its own object (each raises it in its own thread).
            for waiter in group:
                waiter.value = None
                waiter.error = _copy(exc) if len(group) > 1 else exc
        else:
            self.commits += 1
            self.operations += len(group)


def _no_room(store: StoreBase, need: int, room: int) -> StoreFull:
    return StoreFull(
        f"the store is nearly full: this write needs about {need} bytes, "
        f"{max(room, 0)} are left before the last {store.headroom} of map_size "
        f"{store.map_size}, which are kept free so deletes always work. Delete "
        "streams or series you no longer need (DELETE /streams/{id}, DELETE "
        "/series/{id}) or raise map_size and restart; what is stored still answers"
    )


def _copy(exc: BaseException) -> BaseException:
    try:
        copy = type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - an exception type with another signature
        return exc
    copy.__cause__ = exc.__cause__
    return copy
