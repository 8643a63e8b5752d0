"""How close /healthcheck's p95 is to an exact p95, measured in one run.

    .venv/bin/python bench/healthcheck_p95.py [--predicts N]

1. Against a real ``anomalyd serve`` (2 workers, defaults): N single-point predicts over
   one keep-alive connection, each timed by the client; then /healthcheck. Prints the
   service's inference avg and p95 next to the exact avg and p95 (numpy.percentile) of
   the client's timings. They are not the same quantity: the client's also holds the
   HTTP round trip, so the client's numbers are the larger.
2. In process, the same app (``create_app`` with a real store) driven by Falcon's test
   client, with a stats region that also keeps every latency it records: the
   histogram's p95 against numpy's exact p95 of the very same latencies. This is the
   2% promise, checked on real request latencies.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import requests
from _server import Anomalyd
from falcon import testing

from anomalyd.app import create_app
from anomalyd.settings import Settings
from anomalyd.stats import LocalStats, histogram_of
from anomalyd.store import Store

FIT = {"timestamps": list(range(100)), "values": [float(i % 7) for i in range(100)]}
POINT = {"timestamp": 101, "value": 3.5}


class KeepingStats(LocalStats):
    """A stats region that also keeps every inference latency it records."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.kept: list[float] = []
        self._inference = histogram_of("inference")

    def observe(self, counter, histogram, status, seconds, **kw) -> None:
        super().observe(counter, histogram, status, seconds)
        if histogram == self._inference:
            self.kept.append(seconds)


def against_the_service(n: int) -> None:
    with Anomalyd("--workers", "2") as service, requests.Session() as session:
        assert session.post(f"{service.url}/fit/p95", json=FIT).ok
        client = []
        for _ in range(n):
            started = time.perf_counter()
            response = session.post(f"{service.url}/predict/p95", json=POINT)
            client.append(time.perf_counter() - started)
            assert response.status_code == 200
        health = session.get(f"{service.url}/healthcheck").json()
    server = health["inference_latency_ms"]
    exact_avg = float(np.mean(client)) * 1000
    exact_p95 = float(np.percentile(client, 95)) * 1000
    print(f"1. {n} predicts against anomalyd serve (2 workers), one keep-alive client")
    print(
        f"   /healthcheck inference (in the service): avg {server['avg']:.4f} ms, "
        f"p95 {server['p95']:.4f} ms"
    )
    print(
        f"   client round trip, exact:                avg {exact_avg:.4f} ms, "
        f"p95 {exact_p95:.4f} ms"
    )


def in_process(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="anomalyd-p95-") as tmp:
        store = Store(os.path.join(tmp, "data"), map_size=64 * 1024 * 1024)
        stats = KeepingStats()
        client = testing.TestClient(create_app(Settings(), store, stats))
        assert client.simulate_post("/fit/p95", json=FIT).status_code == 200
        for _ in range(n):
            assert client.simulate_post("/predict/p95", json=POINT).status_code == 200
        histogram = stats.histogram("inference")
        exact = float(np.percentile(stats.kept, 95))
        got = histogram.quantile(0.95)
        assert histogram.count == len(stats.kept) == n
        store.close()
        stats.remove()
    print(f"2. {n} predicts in process, the same latencies in both")
    print(
        f"   histogram p95 {got * 1e3:.5f} ms, exact p95 {exact * 1e3:.5f} ms, "
        f"off by {(got / exact - 1) * 100:+.2f}%"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predicts", type=int, default=5000)
    args = parser.parse_args()
    against_the_service(args.predicts)
    in_process(args.predicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
