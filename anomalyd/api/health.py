"""GET /healthcheck: liveness, and the latencies of every worker together."""

from __future__ import annotations

from typing import Literal

import falcon
import msgspec
import numpy as np

from anomalyd import schemas
from anomalyd.stats import Stats
from anomalyd.store import Store


class Latency(msgspec.Struct):
    avg: float
    p95: float


class Health(msgspec.Struct):
    status: Literal["ok"]
    series_trained: int
    inference_latency_ms: Latency
    training_latency_ms: Latency


def latency_ms(stats: Stats, name: str, snapshot: np.ndarray | None = None) -> Latency:
    histogram = stats.histogram(name, snapshot)
    return Latency(
        round(histogram.avg * 1000, 6), round(histogram.quantile(0.95) * 1000, 6)
    )


class HealthResource:
    def __init__(self, store: Store, stats: Stats) -> None:
        self._store = store
        self._stats = stats

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snapshot = self._stats.snapshot()
        resp.data = schemas.encoder.encode(
            Health(
                "ok",
                self._store.series_trained(),
                latency_ms(self._stats, "inference", snapshot),
                latency_ms(self._stats, "training", snapshot),
            )
        )
        resp.cache_control = ["no-store"]
