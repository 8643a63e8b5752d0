"""Latency histograms and request counters in shared memory, summed across workers.

The idea is prometheus client_python's multiprocess mode, without a file per pid: the
master creates one file under the runtime directory before it forks, maps it, and every
worker inherits the mapping. The file is cut into slots; each request-handling thread
of each worker owns one slot and is its only writer, so recording needs no lock and
every write is a whole aligned 8-byte word (never torn). Readers (``/healthcheck``,
``/metrics``) sum every slot. A worker respawned after a crash takes the lowest free
slot (``free_slot`` in ``server.py``), the one it replaces: counts are never cleared, so
nothing is lost, and the region never grows.

The file name is unique (``mkstemp``), so two services never share a region even when
they are given the same runtime directory; it is created empty (zeroed) at start and
removed by the master at clean shutdown. Its blocks are allocated at start
(``posix_fallocate``): a sparse file on a full tmpfs would kill the first worker that
writes past the free space with SIGBUS. The master holds an ``flock`` on it (inherited
by the workers) and marks it as locked (``LOCKED_MAGIC`` in the master's slot), so a
region left by a service killed with SIGKILL is recognised at the next start (marked,
and nobody holds its lock) and removed; a live service's never is.

Each histogram has fixed log-scale buckets under 3% wide (78 per decade) from 1 µs to
10,000 s (beyond the longest worker timeout). A percentile is computed as
``numpy.percentile`` (linear) does, with each order statistic read as the geometric
middle of its bucket: within 1.5% of the exact value. The average is exact (sum and
count).
"""

from __future__ import annotations

import bisect
import fcntl
import functools
import math
import mmap
import os
import tempfile
import threading

import numpy as np

# 78 buckets per decade: each is 2.996% wide (under 3%), and every power of ten is an
# edge, so the Prometheus buckets le="0.001", "0.01", ... are exact.
BUCKETS_PER_DECADE = 78
BUCKET_RATIO = 10 ** (1 / BUCKETS_PER_DECADE)
LOWEST = 1e-6  # seconds; bucket 0 holds everything at or below
HIGHEST = 1e4  # seconds; the last bucket holds everything above
# Bucket i (1 <= i < N_BUCKETS - 1) holds (EDGES[i-1], EDGES[i]].
N_BUCKETS = round(math.log10(HIGHEST / LOWEST)) * BUCKETS_PER_DECADE + 2
# Upper edge of each bucket but the last (whose upper edge is +Inf).
_EDGE_LIST = [
    10 ** (math.log10(LOWEST) + i / BUCKETS_PER_DECADE) for i in range(N_BUCKETS - 1)
]
EDGES = np.array(_EDGE_LIST)
# Bucket i holds (EDGES[i-1], EDGES[i]]: the index of the first edge at or above.
_BUCKET_OF = functools.partial(bisect.bisect_left, _EDGE_LIST)

HISTOGRAMS = ("inference", "batch_inference", "training", "observe", "batch_observe")
ROUTES = (
    "/",
    "/fit/{series_id}",
    "/predict/{series_id}",
    "/predict/{series_id}/batch",
    "/series",
    "/series/{series_id}",
    "/healthcheck",
    "/metrics",
    "/openapi.json",
    "/plot",
    "/observe/{series_id}",
    "/observe/{series_id}/batch",
    "/streams",
    "/streams/{series_id}",
    "/streams/{series_id}/points",
    "/streams/{series_id}/anomalies",
    "/alerts",
    "other",
)
# Plain counters, summed over slots like the request counters.
COUNTERS = ("points_observed", "episodes_opened")
METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "other")
# 0 stands for any status not listed.
STATUSES = (
    200, 201, 204, 304, 400, 401, 403, 404, 405, 406, 409, 411, 413, 415, 422, 429,
    500, 503, 507, 0,
)  # fmt: skip
# Status code -> its counter's offset, as a list: indexing beats a dict lookup.
_STATUS_OFFSET = [len(STATUSES) - 1] * 1000
for _i, _status in enumerate(STATUSES[:-1]):
    _STATUS_OFFSET[_status] = _i

# Slot layout, in 8-byte words: per histogram N_BUCKETS counts (u64) and one sum
# (f64, seconds); then one request counter (u64) per route, method and status; then
# one word (u64) per name in COUNTERS.
_HIST_WORDS = N_BUCKETS + 1
_REQUESTS_AT = len(HISTOGRAMS) * _HIST_WORDS
_REQUEST_WORDS = len(ROUTES) * len(METHODS) * len(STATUSES)
_COUNTERS_AT = _REQUESTS_AT + _REQUEST_WORDS
SLOT_WORDS = _COUNTERS_AT + len(COUNTERS)
SLOT_BYTES = SLOT_WORDS * 8
# Slot 0 belongs to the master; its first word counts worker restarts. Thread slots of
# worker slot w are 1 + w * threads ... (w + 1) * threads.
_RESTARTS_WORD = 0
# Word 1 of the master's slot: "this region's service holds an flock on it".
MAGIC_WORD = 1
LOCKED_MAGIC = int.from_bytes(b"ANOMLOCK", "little")


class RegionError(OSError):
    """The region cannot be made; the message says where and why."""


def bucket_of(seconds: float) -> int:
    return _BUCKET_OF(seconds)


def bucket_value(index: int) -> float:
    """The value a bucket stands for: the geometric middle of its edges."""
    if index == 0:
        return LOWEST
    if index >= N_BUCKETS - 1:
        return float(EDGES[-1])
    return LOWEST * BUCKET_RATIO ** (index - 0.5)


def counter_of(route: str, method: str) -> int:
    """Where the request counters of ``route`` and ``method`` start in a slot."""
    r = ROUTES.index(route) if route in ROUTES else len(ROUTES) - 1
    m = METHODS.index(method) if method in METHODS else len(METHODS) - 1
    return _REQUESTS_AT + (r * len(METHODS) + m) * len(STATUSES)


def counter_word(name: str) -> int:
    """Where counter ``name`` (one of ``COUNTERS``) is in a slot."""
    return _COUNTERS_AT + COUNTERS.index(name)


def histogram_of(name: str | None) -> int:
    """Where histogram ``name`` starts in a slot; -1 for None (count only)."""
    return -1 if name is None else HISTOGRAMS.index(name) * _HIST_WORDS


class Histogram:
    """A summed, read-only view of one histogram across slots."""

    def __init__(self, counts: np.ndarray, total: float) -> None:
        self.counts = np.asarray(counts, dtype=np.uint64)
        self.sum = float(total)
        self._cumulative = np.cumsum(self.counts)
        self.count = int(self._cumulative[-1]) if len(self.counts) else 0

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def _order_statistic(self, rank: int) -> float:
        """The value of the ``rank``-th smallest observation (from 0), bucketed."""
        return bucket_value(int(np.searchsorted(self._cumulative, rank, side="right")))

    def quantile(self, q: float) -> float:
        """As ``numpy.percentile(..., q * 100)`` (linear), from the bucketed data."""
        if not self.count:
            return 0.0
        position = (self.count - 1) * q
        low = math.floor(position)
        value = self._order_statistic(low)
        fraction = position - low
        if fraction:
            value += (self._order_statistic(low + 1) - value) * fraction
        return value

    def cumulative(self, edges: np.ndarray) -> list[int]:
        """Observations at or below each edge; ``edges`` must be bucket edges."""
        upto = np.searchsorted(EDGES, np.asarray(edges) * (1 + 1e-12), side="right")
        return [int(self._cumulative[i - 1]) if i else 0 for i in upto]


def _nearest_edge(target: float) -> float:
    return float(EDGES[np.argmin(np.abs(np.log(EDGES / target)))])


# Prometheus bucket edges: powers of ten (exact edges) and the edges nearest 2.5 and 5
# times them, 10 µs .. 100 s.
PROMETHEUS_EDGES = np.array(
    sorted(
        {_nearest_edge(m * 10.0**e) for e in range(-5, 2) for m in (1, 2.5, 5)}
        | {_nearest_edge(100.0)}
    )
)


class Stats:
    """The shared region. The master calls ``create``; workers inherit the mapping.

    ``worker_slots`` is how many workers may be alive at once (a reload briefly runs
    the old and the new generation side by side); ``threads`` the writers per worker.
    """

    def __init__(self, path: str, worker_slots: int, threads: int) -> None:
        self.path = path
        self.worker_slots = worker_slots
        self.threads = threads
        self.slots = worker_slots * threads
        self._local = threading.local()
        self._claim_lock = threading.Lock()
        self._claimed = 0
        self._worker_slot: int | None = 0
        self._lock_fd: int | None = None
        size = SLOT_BYTES * (1 + self.slots)
        with open(path, "r+b") as f:
            self._mmap = mmap.mmap(f.fileno(), size)
        self._words = memoryview(self._mmap).cast("Q")
        self._floats = memoryview(self._mmap).cast("d")

    @classmethod
    def create(cls, runtime_dir: str, worker_slots: int, threads: int) -> Stats:
        """Make a fresh, zeroed, allocated and locked region no other service uses.

        Built under a temporary name and renamed into place once locked, so another
        service's stale-region cleanup never sees it unlocked.
        """
        size = SLOT_BYTES * (1 + worker_slots * threads)
        fd, building = tempfile.mkstemp(prefix=".stats-", dir=runtime_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                raise RegionError(
                    exc.errno,
                    f"cannot allocate the {size}-byte statistics region in "
                    f"{runtime_dir}: {exc.strerror}; free space there or give another "
                    "runtime directory (RUNTIME_DIRECTORY)",
                ) from None
            os.pwrite(fd, LOCKED_MAGIC.to_bytes(8, "little"), 8 * MAGIC_WORD)
            name = os.path.basename(building).removeprefix(".stats-")
            path = os.path.join(runtime_dir, f"stats-{name}.bin")
            os.rename(building, path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(building)
            except FileNotFoundError:
                pass
            raise
        region = cls(path, worker_slots, threads)
        region._lock_fd = fd
        return region

    def use_worker_slot(self, worker_slot: int | None) -> None:
        """In a worker after fork: its threads write the slots of this worker only.

        None (no slot free) gives the worker a private scratch region: its requests are
        served but not counted, rather than two writers sharing a slot.
        """
        self._worker_slot = worker_slot
        self._local = threading.local()
        self._claimed = 0
        if worker_slot is None:
            scratch = mmap.mmap(-1, SLOT_BYTES * (1 + self.slots))
            self._words = memoryview(scratch).cast("Q")
            self._floats = memoryview(scratch).cast("d")

    def _claim(self) -> tuple[memoryview, memoryview]:
        """Give the calling thread its own slot, as (u64 words, f64 words) views."""
        with self._claim_lock:
            thread = self._claimed
            self._claimed += 1
        if thread >= self.threads or self._worker_slot is None:
            # More writer threads than configured: never share a slot.
            start = 0
            scratch = mmap.mmap(-1, SLOT_BYTES)
            words, floats = memoryview(scratch).cast("Q"), memoryview(scratch).cast("d")
        else:
            start = (1 + self._worker_slot * self.threads + thread) * SLOT_WORDS
            words, floats = self._words, self._floats
        views = (
            words[start : start + SLOT_WORDS],
            floats[start : start + SLOT_WORDS],
        )
        self._local.views = views
        return views

    def observe(
        self,
        counter: int,
        histogram: int,
        status: int,
        seconds: float,
        _status=_STATUS_OFFSET,
        _bucket=_BUCKET_OF,
    ) -> None:
        """Count one request and, if ``histogram >= 0``, record its latency.

        ``counter`` and ``histogram`` come from ``counter_of`` and ``histogram_of``,
        computed once per route. This runs on every request, so it avoids lookups
        (defaults bind the helpers as locals): the thread's own slot views, a list index
        for the status, and a bisection of the edges in C for the bucket.
        """
        try:
            words, floats = self._local.views
        except AttributeError:
            words, floats = self._claim()
        words[counter + _status[status]] += 1
        if histogram >= 0:
            words[histogram + _bucket(seconds)] += 1
            floats[histogram + N_BUCKETS] += seconds

    def add(self, word: int, n: int) -> None:
        """Add ``n`` to the counter at ``word`` (``counter_word``) of this thread."""
        try:
            words = self._local.views[0]
        except AttributeError:
            words = self._claim()[0]
        words[word] += n

    def record_restart(self) -> None:
        """Master only: a worker died without being asked to and is replaced."""
        self._words[_RESTARTS_WORD] += 1

    # -- reading ----------------------------------------------------------------

    def _snapshot(self) -> np.ndarray:
        """A copy of every writer slot, one row per slot (u64)."""
        words = np.frombuffer(
            self._mmap,
            dtype=np.uint64,
            count=self.slots * SLOT_WORDS,
            offset=SLOT_BYTES,
        )
        try:
            return words.reshape(self.slots, SLOT_WORDS).copy()
        finally:
            del words

    def histogram(self, name: str, snapshot: np.ndarray | None = None) -> Histogram:
        rows = self._snapshot() if snapshot is None else snapshot
        at = histogram_of(name)
        counts = rows[:, at : at + N_BUCKETS].sum(axis=0, dtype=np.uint64)
        total = rows[:, at + N_BUCKETS].copy().view(np.float64).sum()
        return Histogram(counts, total)

    def requests(
        self, snapshot: np.ndarray | None = None
    ) -> dict[tuple[str, str, int], int]:
        """Non-zero request counts by (route, method, status); status 0 is "other"."""
        rows = self._snapshot() if snapshot is None else snapshot
        totals = rows[:, _REQUESTS_AT:_COUNTERS_AT].sum(axis=0, dtype=np.uint64)
        out: dict[tuple[str, str, int], int] = {}
        for flat in np.flatnonzero(totals):
            route_method, s = divmod(int(flat), len(STATUSES))
            r, m = divmod(route_method, len(METHODS))
            out[(ROUTES[r], METHODS[m], STATUSES[s])] = int(totals[flat])
        return out

    def total(self, name: str, snapshot: np.ndarray | None = None) -> int:
        """Counter ``name`` summed over every slot."""
        rows = self._snapshot() if snapshot is None else snapshot
        return int(rows[:, counter_word(name)].sum(dtype=np.uint64))

    def worker_requests(self, snapshot: np.ndarray | None = None) -> list[int]:
        """Requests answered by each worker slot, over every worker that held it."""
        rows = self._snapshot() if snapshot is None else snapshot
        per_thread = rows[:, _REQUESTS_AT:_COUNTERS_AT].sum(axis=1, dtype=np.uint64)
        per_worker = per_thread.reshape(self.worker_slots, self.threads).sum(axis=1)
        return [int(n) for n in per_worker]

    def restarts(self) -> int:
        return int(self._words[_RESTARTS_WORD])

    def snapshot(self) -> np.ndarray:
        """One consistent-enough copy to read several figures from."""
        return self._snapshot()

    def close(self) -> None:
        self._local = threading.local()
        self._words.release()
        self._floats.release()
        try:
            self._mmap.close()
        except BufferError:
            pass  # a thread still holds its slot view; unmapped when that goes

    def remove(self) -> None:
        """Master at clean shutdown: unmap and delete the region."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class LocalStats(Stats):
    """An unshared region in a temporary file, for tests and tools."""

    def __init__(self, threads: int = 1, worker_slots: int = 1) -> None:
        self._dir = tempfile.mkdtemp(prefix="anomalyd-stats-")
        created = Stats.create(self._dir, worker_slots, threads)
        created.close()
        super().__init__(created.path, worker_slots, threads)
        self._lock_fd = created._lock_fd

    def remove(self) -> None:
        super().remove()
        os.rmdir(self._dir)
