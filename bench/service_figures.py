"""Issue 2's figures: a 1,000,000-point fit end to end, and predict handling time.

    .venv/bin/python bench/service_figures.py

Starts `anomalyd serve` with the default settings (2 workers, gthread) on a temporary
LMDB directory. The fit is timed by the client from the first byte sent to the last
byte of the response (the JSON body is encoded beforehand). The predict figure is the
median of the service's own latency histogram (time inside the service), after 20,000
single-point predicts sent one at a time over a keep-alive connection.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import requests
from _server import Anomalyd

N_POINTS = 1_000_000
N_PREDICTS = 20_000


def million_point_body() -> bytes:
    rng = np.random.default_rng(0)
    values = rng.normal(70.0, 5.0, N_POINTS)
    ts = np.arange(1_600_000_000, 1_600_000_000 + 300 * N_POINTS, 300)
    return (
        b'{"timestamps":['
        + ",".join(map(str, ts.tolist())).encode()
        + b'],"values":['
        + ",".join(map(repr, values.tolist())).encode()
        + b"]}"
    )


def main() -> None:
    body = million_point_body()
    with Anomalyd() as server, requests.Session() as session:
        fit_times = []
        for _ in range(5):
            start = time.perf_counter()
            r = session.post(server.url + "/fit/million", data=body, timeout=300)
            fit_times.append(time.perf_counter() - start)
            assert r.status_code == 200 and r.json()["points_used"] == N_POINTS
        print(
            f"1,000,000-point fit, end to end ({len(body) / 2**20:.1f} MiB body): "
            f"median {statistics.median(fit_times):.3f} s, "
            f"min {min(fit_times):.3f} s over {len(fit_times)} fits"
        )

        session.post(
            server.url + "/fit/p",
            json={"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]},
        )

        # One client at a time: the handling time without queueing for the GIL
        # behind other requests of the same worker.
        with requests.Session() as s:
            for _ in range(N_PREDICTS):
                s.post(server.url + "/predict/p", data=b'{"timestamp": 1, "value": 3}')
        health = session.get(server.url + "/healthcheck").json()["inference_latency_ms"]
        print(
            f"predict, inside the service over {N_PREDICTS} sequential requests: "
            f"median {health['p50'] * 1000:.1f} us, avg {health['avg'] * 1000:.1f} us, "
            f"p95 {health['p95'] * 1000:.1f} us"
        )


if __name__ == "__main__":
    main()
