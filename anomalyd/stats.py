"""Latency histograms and request counters in shared memory, summed across workers.

The idea is prometheus client_python's multiprocess mode, without files per pid: the
master creates one file under the runtime directory before it forks, maps it, and every
process inherits the mapping. The file is cut into slots; each request-handling thread
of each worker owns one slot and is its only writer, so recording needs no lock.
Readers (``/healthcheck``, ``/metrics``) sum every slot. A worker respawned after a
crash is given the slot of the worker it replaces, so its counts are kept, not leaked.

Each histogram has fixed log-scale buckets 3% wide between 1 µs and ~100 s. A
percentile is read as the geometric middle of the bucket that holds the order
statistic, within 1.5% of the true value; the average is exact (sum and count).
"""

from __future__ import annotations

import bisect
import itertools
import math
import mmap
import os
import threading

BUCKET_RATIO = 1.03
LOWEST = 1e-6  # seconds; bucket 0 holds everything below
N_BUCKETS = 626  # LOWEST * 1.03**624 ~ 100 s; the last bucket holds everything above
_LOG_RATIO = math.log(BUCKET_RATIO)
_LOG_LOWEST = math.log(LOWEST)
_EDGES = [LOWEST * BUCKET_RATIO**i for i in range(N_BUCKETS - 1)]

HISTOGRAMS = ("inference", "batch_inference", "training")
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
    "other",
)
METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "other")
STATUSES = (200, 304, 400, 401, 404, 405, 411, 413, 415, 422, 500, 503, 507, 0)
_ROUTE_INDEX = {r: i for i, r in enumerate(ROUTES)}
_METHOD_INDEX = {m: i for i, m in enumerate(METHODS)}
_STATUS_INDEX = {s: i for i, s in enumerate(STATUSES)}

# Slot layout, in 8-byte words: per histogram N_BUCKETS counts (u64) and one sum
# (f64, seconds); then the request counters (u64).
_HIST_WORDS = N_BUCKETS + 1
_REQUESTS_AT = len(HISTOGRAMS) * _HIST_WORDS
_REQUEST_WORDS = len(ROUTES) * len(METHODS) * len(STATUSES)
SLOT_WORDS = _REQUESTS_AT + _REQUEST_WORDS
SLOT_BYTES = SLOT_WORDS * 8
# Slot 0 belongs to the master (worker restarts); workers use 1..n.
_RESTARTS_AT = 0


def bucket_of(seconds: float) -> int:
    if seconds <= LOWEST:
        return 0
    index = int((math.log(seconds) - _LOG_LOWEST) / _LOG_RATIO) + 1
    return index if index < N_BUCKETS else N_BUCKETS - 1


def bucket_value(index: int) -> float:
    """The value a bucket stands for: the geometric middle of its edges."""
    if index == 0:
        return LOWEST
    if index == N_BUCKETS - 1:
        return _EDGES[-1]
    return LOWEST * BUCKET_RATIO ** (index - 0.5)


def request_index(route: str, method: str, status: int) -> int:
    r = _ROUTE_INDEX.get(route, len(ROUTES) - 1)
    m = _METHOD_INDEX.get(method, len(METHODS) - 1)
    s = _STATUS_INDEX.get(status, len(STATUSES) - 1)
    return _REQUESTS_AT + (r * len(METHODS) + m) * len(STATUSES) + s


class Histogram:
    """A summed, read-only view of one histogram across slots."""

    def __init__(self, counts: list[int], total: float) -> None:
        self.counts = counts
        self.sum = total
        self.count = sum(counts)

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def _order_statistic(self, rank: int) -> float:
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen > rank:
                return bucket_value(index)
        return 0.0

    def quantile(self, q: float) -> float:
        """As ``numpy.percentile(..., q*100)`` (linear), from the bucketed data."""
        if not self.count:
            return 0.0
        position = (self.count - 1) * q
        low = math.floor(position)
        value = self._order_statistic(low)
        fraction = position - low
        if fraction:
            value += (self._order_statistic(low + 1) - value) * fraction
        return value

    def cumulative(self, edges: list[float]) -> list[int]:
        """Counts at or below each upper edge (edges must be bucket edges)."""
        out = []
        for edge in edges:
            upto = bisect.bisect_right(_EDGES, edge * (1 + 1e-12))
            out.append(sum(self.counts[:upto]))
        return out


# Prometheus bucket edges: the bucket edges nearest a 1-2.5-5 series, 10 µs .. 60 s.
PROMETHEUS_EDGES = sorted(
    {
        _EDGES[min(range(len(_EDGES)), key=lambda i: abs(math.log(_EDGES[i] / t)))]
        for t in (
            m * 10.0**e for e in range(-5, 2) for m in (1, 2.5, 5)
        )
    }
)


class Stats:
    """The shared region. Create in the master with ``create``; workers ``attach``."""

    def __init__(self, path: str, slots: int, threads: int) -> None:
        self.path = path
        self.slots = slots
        self.threads = threads
        self._local = threading.local()
        self._thread_numbers = itertools.count()
        self._worker_slot = 0
        size = SLOT_BYTES * (1 + slots)
        with open(path, "r+b") as f:
            self._mmap = mmap.mmap(f.fileno(), size)
        self._words = memoryview(self._mmap).cast("Q")
        self._floats = memoryview(self._mmap).cast("d")

    @classmethod
    def create(cls, runtime_dir: str, workers: int, threads: int) -> Stats:
        """Make a fresh, zeroed region for ``workers`` x ``threads`` writers."""
        slots = workers * threads
        path = os.path.join(runtime_dir, "stats.bin")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, SLOT_BYTES * (1 + slots))
        finally:
            os.close(fd)
        return cls(path, slots, threads)

    def use_worker_slot(self, worker_slot: int) -> None:
        """Called in a worker after fork: its threads write slots of this worker only."""
        self._worker_slot = worker_slot
        self._local = threading.local()
        self._thread_numbers = itertools.count()

    def _base(self) -> int:
        base = getattr(self._local, "base", None)
        if base is None:
            thread = next(self._thread_numbers) % self.threads
            slot = 1 + self._worker_slot * self.threads + thread
            base = self._local.base = slot * SLOT_WORDS
        return base

    def observe(self, histogram: int, seconds: float, route: str, method: str,
                status: int) -> None:
        """Count one request and, if ``histogram >= 0``, its latency."""
        base = self._base()
        words = self._words
        words[base + request_index(route, method, status)] += 1
        if histogram >= 0:
            at = base + histogram * _HIST_WORDS
            words[at + bucket_of(seconds)] += 1
            self._floats[at + N_BUCKETS] += seconds

    def count_request(self, route: str, method: str, status: int) -> None:
        self.observe(-1, 0.0, route, method, status)

    def record_restart(self) -> None:
        """Master only: one worker died and was replaced."""
        self._words[_RESTARTS_AT] += 1

    # -- reading ----------------------------------------------------------------

    def _slot_bases(self) -> range:
        return range(SLOT_WORDS, SLOT_WORDS * (1 + self.slots), SLOT_WORDS)

    def histogram(self, histogram: int) -> Histogram:
        counts = [0] * N_BUCKETS
        total = 0.0
        for base in self._slot_bases():
            at = base + histogram * _HIST_WORDS
            row = self._words[at : at + N_BUCKETS]
            counts = [a + b for a, b in zip(counts, row)]
            total += self._floats[at + N_BUCKETS]
        return Histogram(counts, total)

    def requests(self) -> dict[tuple[str, str, int], int]:
        out: dict[tuple[str, str, int], int] = {}
        for r, route in enumerate(ROUTES):
            for m, method in enumerate(METHODS):
                for s, status in enumerate(STATUSES):
                    offset = request_index(route, method, status)
                    n = sum(self._words[base + offset] for base in self._slot_bases())
                    if n:
                        out[(route, method, status)] = n
        return out

    def restarts(self) -> int:
        return self._words[_RESTARTS_AT]

    def close(self) -> None:
        self._words.release()
        self._floats.release()
        self._mmap.close()


class LocalStats(Stats):
    """An unshared region in a temporary file, for tests and tools."""

    def __init__(self, threads: int = 1) -> None:
        import tempfile

        self._dir = tempfile.mkdtemp(prefix="anomalyd-stats-")
        created = Stats.create(self._dir, 1, threads)
        created.close()
        super().__init__(created.path, 1, threads)
