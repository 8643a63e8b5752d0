"""The shared-memory histograms: percentiles against numpy, slots summed, counters."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest

from anomalyd import stats as stats_module
from anomalyd.server import died_unasked, free_slot, worker_slots
from anomalyd.stats import (
    EDGES,
    HIGHEST,
    LOWEST,
    PROMETHEUS_EDGES,
    Histogram,
    LocalStats,
    bucket_of,
    counter_of,
    histogram_of,
)

PREDICT = counter_of("/predict/{series_id}", "POST")
INFERENCE = histogram_of("inference")
QUANTILES = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)


@pytest.fixture
def stats():
    region = LocalStats(threads=4, worker_slots=2)
    yield region
    region.remove()


def histogram_from(data: np.ndarray) -> Histogram:
    counts = np.zeros(stats_module.N_BUCKETS, dtype=np.uint64)
    np.add.at(counts, [bucket_of(float(x)) for x in data], 1)
    return Histogram(counts, float(np.sum(data)))


def assert_quantiles_close(histogram: Histogram, data: np.ndarray) -> None:
    for q in QUANTILES:
        exact = float(np.percentile(data, q * 100))
        got = histogram.quantile(q)
        assert got == pytest.approx(exact, rel=0.02), (q, got, exact)


RANDOM_SETS = {
    "lognormal": lambda rng: rng.lognormal(np.log(2e-4), 1.0, 20_000),
    "uniform": lambda rng: rng.uniform(5e-5, 5e-3, 5_000),
    "exponential": lambda rng: 1e-5 + rng.exponential(1e-3, 10_000),
    "pareto heavy tail": lambda rng: 1e-4 * (1 + rng.pareto(1.2, 10_000)),
    "small sample": lambda rng: rng.lognormal(np.log(1e-3), 0.5, 7),
}


@pytest.mark.parametrize("name", RANDOM_SETS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_match_numpy_on_random_latencies(name, seed):
    data = RANDOM_SETS[name](np.random.default_rng(seed))
    assert_quantiles_close(histogram_from(data), data)


def _edges(lo: int, hi: int) -> np.ndarray:
    return EDGES[lo:hi]


ADVERSARIAL_SETS = {
    "one value": np.array([3.3e-4]),
    "two values far apart": np.array([2e-5, 40.0]),
    "all equal": np.full(1000, 1.234e-3),
    # p95 falls between the two clusters: linear interpolation across a wide gap.
    "bimodal, p95 in the gap": np.r_[np.full(940, 1e-4), np.full(60, 5.0)],
    "bimodal, p95 on the step": np.r_[np.full(95, 1e-4), np.full(5, 5.0)],
    "exactly on bucket edges": _edges(100, 400),
    "just above bucket edges": _edges(100, 400) * (1 + 1e-12),
    "just below bucket edges": _edges(100, 400) * (1 - 1e-12),
    "bucket boundaries, few": np.r_[_edges(300, 301), _edges(300, 301) * 1.0299],
    "range ends": np.r_[np.full(10, LOWEST * 1.0001), np.full(10, HIGHEST * 0.999)],
    "twenty, interpolated": np.geomspace(1e-5, 1e-1, 20),
    "one outlier": np.r_[np.full(10_000, 2e-4), [90.0]],
}


@pytest.mark.parametrize("name", ADVERSARIAL_SETS)
def test_percentiles_match_numpy_on_adversarial_latencies(name):
    data = ADVERSARIAL_SETS[name]
    assert_quantiles_close(histogram_from(data), data)


def test_buckets_are_under_three_percent_wide_and_cover_the_range():
    ratios = EDGES[1:] / EDGES[:-1]
    assert np.all(ratios < 1.03) and np.all(ratios > 1.0299)
    assert EDGES[0] == LOWEST and EDGES[-1] >= HIGHEST
    # Powers of ten are edges, so Prometheus' le="0.001" is exact.
    assert {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0} <= set(PROMETHEUS_EDGES.tolist())
    assert bucket_of(0.0) == 0 and bucket_of(-1.0) == 0 and bucket_of(LOWEST) == 0
    assert bucket_of(HIGHEST * 10) == stats_module.N_BUCKETS - 1
    # A value exactly on an upper edge belongs to that bucket, as Prometheus' le.
    assert bucket_of(float(EDGES[200])) == 200
    assert bucket_of(float(EDGES[200]) * (1 + 1e-12)) == 201


def test_no_data_reads_zero():
    empty = histogram_from(np.array([]))
    assert (empty.count, empty.avg, empty.quantile(0.95)) == (0, 0.0, 0.0)


def test_observe_records_latency_and_counts_the_request(stats):
    data = np.random.default_rng(7).lognormal(np.log(1e-4), 0.7, 3000)
    for seconds in data:
        stats.observe(PREDICT, INFERENCE, 200, float(seconds))
    stats.observe(PREDICT, -1, 404, 0.5)  # counted, not timed
    histogram = stats.histogram("inference")
    assert histogram.count == 3000
    assert histogram.avg == pytest.approx(float(np.mean(data)), rel=1e-12)
    assert_quantiles_close(histogram, data)
    assert stats.histogram("training").count == 0
    assert stats.requests() == {
        ("/predict/{series_id}", "POST", 200): 3000,
        ("/predict/{series_id}", "POST", 404): 1,
    }


def test_unknown_route_method_and_status_are_counted_as_other(stats):
    stats.observe(counter_of("/nope", "BREW"), -1, 418, 0.0)
    stats.observe(counter_of("/series", "GET"), -1, 999, 0.0)
    assert stats.requests() == {("other", "other", 0): 1, ("/series", "GET", 0): 1}


def test_prometheus_buckets_count_exactly_what_is_at_or_below_each_edge(stats):
    data = np.r_[
        np.random.default_rng(3).lognormal(np.log(3e-3), 2.0, 5000),
        PROMETHEUS_EDGES,  # values exactly on an edge are at or below it
    ]
    for seconds in data:
        stats.observe(PREDICT, INFERENCE, 200, float(seconds))
    got = stats.histogram("inference").cumulative(PROMETHEUS_EDGES)
    assert got == [int(np.sum(data <= edge)) for edge in PROMETHEUS_EDGES]


def test_threads_write_their_own_slots_and_no_count_is_lost(stats):
    per_thread = 20_000
    barrier = threading.Barrier(stats.threads)

    def work(seconds: float) -> None:
        barrier.wait()
        for _ in range(per_thread):
            stats.observe(PREDICT, INFERENCE, 200, seconds)

    threads = [
        threading.Thread(target=work, args=(1e-4 * (i + 1),))
        for i in range(stats.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    histogram = stats.histogram("inference")
    assert histogram.count == per_thread * stats.threads
    expected_sum = per_thread * sum(1e-4 * (i + 1) for i in range(stats.threads))
    assert histogram.sum == pytest.approx(expected_sum, rel=1e-9)
    assert stats.requests() == {("/predict/{series_id}", "POST", 200): histogram.count}


def _worker(region: LocalStats, slot: int, data: list[float]) -> None:
    region.use_worker_slot(slot)
    for seconds in data:
        region.observe(PREDICT, INFERENCE, 200, seconds)


def test_slots_of_forked_workers_are_summed(stats):
    """Two forked processes write their own worker slots; the parent reads the sum."""
    rng = np.random.default_rng(11)
    parts = [rng.lognormal(np.log(1e-3), 1.0, n).tolist() for n in (1500, 2500)]
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_worker, args=(stats, slot, part))
        for slot, part in enumerate(parts)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    everything = np.array(parts[0] + parts[1])
    histogram = stats.histogram("inference")
    assert histogram.count == len(everything)
    assert histogram.sum == pytest.approx(float(everything.sum()), rel=1e-12)
    assert stats.worker_requests() == [1500, 2500]
    assert np.array_equal(histogram.counts, histogram_from(everything).counts)
    assert_quantiles_close(histogram, everything)


def test_a_respawned_worker_adds_to_the_counts_of_its_slot(stats):
    _worker(stats, 1, [1e-3] * 5)
    _worker(stats, 1, [1e-3] * 3)  # same slot, a new process in real life
    assert stats.worker_requests() == [0, 8]
    assert stats.histogram("inference").count == 8


def test_restarts_are_counted_in_the_master_slot(stats):
    assert stats.restarts() == 0
    stats.record_restart()
    stats.record_restart()
    assert stats.restarts() == 2
    assert stats.requests() == {}


def test_each_region_is_its_own_file_created_empty(tmp_path):
    first = stats_module.Stats.create(str(tmp_path), 2, 2)
    second = stats_module.Stats.create(str(tmp_path), 2, 2)
    try:
        assert first.path != second.path
        first.observe(PREDICT, INFERENCE, 200, 1e-3)
        assert second.histogram("inference").count == 0
        assert first.histogram("inference").count == 1
    finally:
        first.remove()
        second.remove()
    assert list(tmp_path.iterdir()) == []


class _Worker:
    def __init__(self, slot):
        self.anomalyd_slot = slot


def test_free_slot_gives_a_respawned_worker_the_slot_it_vacated():
    live = {10: _Worker(0), 12: _Worker(2)}
    assert free_slot(live, 4) == 1
    assert free_slot({i: _Worker(i) for i in range(4)}, 4) is None
    assert worker_slots(3) == 6


def test_only_a_worker_the_master_did_not_retire_is_a_restart():
    # Crash: one of two workers reaped, the master wants two: it will respawn.
    assert died_unasked({1: _Worker(0)}, 2)
    # Reload or TTOU: the master retired it and still has all it wants.
    assert not died_unasked({1: _Worker(0), 2: _Worker(1)}, 2)
