"""GET /healthcheck: readiness (the store can be read), and every worker's latencies.

It reads the store's meta record in one small read transaction and checks that the
data file is the one the service has been committing to (``Store.health``); when it
cannot, the answer is a 503 whose description names what failed.
"""

from __future__ import annotations

from typing import Literal

import falcon
import msgspec
import numpy as np

from anomalyd import schemas
from anomalyd.stats import Stats
from anomalyd.store import Store
from anomalyd.store.stream_reads import count_streams


class Latency(msgspec.Struct):
    avg: float
    p95: float
    # Beyond the contract: the median and p99, read from the same histogram.
    p50: float
    p99: float


class Health(msgspec.Struct):
    status: Literal["ok"]
    series_trained: int
    inference_latency_ms: Latency
    training_latency_ms: Latency
    streams: int
    observe_latency_ms: Latency


def latency_ms(stats: Stats, name: str, snapshot: np.ndarray | None = None) -> Latency:
    histogram = stats.histogram(name, snapshot)
    return Latency(
        *(
            round(value * 1000, 6)
            for value in (
                histogram.avg,
                histogram.quantile(0.95),
                histogram.quantile(0.5),
                histogram.quantile(0.99),
            )
        )
    )


class HealthResource:
    def __init__(self, store: Store, stats: Stats) -> None:
        self._store = store
        self._stats = stats

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        series_trained = self._store.health()  # StoreUnavailable: 503
        snapshot = self._stats.snapshot()
        resp.data = schemas.encoder.encode(
            Health(
                "ok",
                series_trained,
                latency_ms(self._stats, "inference", snapshot),
                latency_ms(self._stats, "training", snapshot),
                count_streams(self._store),
                latency_ms(self._stats, "observe", snapshot),
            )
        )
        resp.cache_control = ["no-store"]
