"""Do large requests starve small ones? Predict latency while maximum-size fits and
large plots run.

    .venv/bin/python bench/starvation.py [--seconds 30] [--fits 4] [--plots 4]
        [--mib 64] [--plot-points 16777209] [--flags "--workers 2"]

Starts a real ``anomalyd serve`` (2 workers × 4 threads by default), fits a small
series to predict on and a large one (``--plot-points``) to plot, then for
``--seconds``: ``--fits`` clients each sending ``--mib`` MiB fits (one-digit numbers,
16.7M points in 64 MiB: the most points a body can hold) one after another, ``--plots``
clients each asking ``/plot`` of the large version (no If-None-Match: drawn each time),
and 2 clients sending single predicts, each on a new connection (so they spread over
the workers as clients' do). Before the load, the same predict clients run alone for
``--seconds / 3`` seconds: the baseline of the same run.

Prints predict p50/p99/max and count with and without the load, how many fits and
plots were answered (and with which status: a refused large request is a 503), and
the ratio of the loaded p99 to the baseline p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import shlex
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Anomalyd
from memory import tiny_body

MiB = 1024 * 1024


def request(url: str, method: str, path: str, body: bytes | None = None):
    """The status of one request on a new connection. A large request refused
    before its body is read is answered while the body is still being sent: the
    answer is read after the broken pipe, as HTTP clients do."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        try:
            conn.request(method, path, body, {"Content-Type": "application/json"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            response = conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            return "reset"
        while response.read(1 << 20):
            pass
        if response.status == 503:
            time.sleep(float(response.getheader("Retry-After", "1")))
        return response.status
    finally:
        conn.close()


def predicts(url: str, stop: threading.Event, times: list[float]) -> None:
    point = b'{"timestamp": 1694336640, "value": 2.5}'
    while not stop.is_set():
        started = time.perf_counter()
        status = request(url, "POST", "/predict/small", point)
        times.append(time.perf_counter() - started)
        assert status == 200, status


def loop(url: str, stop: threading.Event, statuses: Counter, method, path, body=None):
    while not stop.is_set():
        statuses[request(url, method, path, body)] += 1


def percentile(times: list[float], q: float) -> float:
    """Nearest rank, in ms: with few samples p99 is the slowest, never beyond it."""
    ordered = sorted(times)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000


def run_predicts(url: str, seconds: float) -> list[float]:
    stop, times = threading.Event(), []
    threads = [
        threading.Thread(target=predicts, args=(url, stop, times)) for _ in range(2)
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return times


def summary(times: list[float]) -> str:
    return (
        f"p50 {percentile(times, 50):7.1f} ms  p99 {percentile(times, 99):7.1f} ms  "
        f"max {max(times) * 1000:7.1f} ms  ({len(times)} predicts)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--fits", type=int, default=4)
    parser.add_argument("--plots", type=int, default=4)
    parser.add_argument("--mib", type=float, default=64)
    parser.add_argument("--plot-points", type=int, default=16_777_209)
    parser.add_argument("--flags", default="--workers 2")
    args = parser.parse_args()
    big, points = tiny_body(int(args.mib * MiB))
    plot_body, _ = tiny_body(args.plot_points * 4 + 40)
    flags = [*shlex.split(args.flags), "--max-body-bytes", str(len(big) + 1024)]
    with Anomalyd(*flags) as service:
        url = service.url
        small = {"timestamps": [1, 2, 3, 4], "values": [1.0, 2.0, 3.0, 5.0]}
        assert request(url, "POST", "/fit/small", json.dumps(small).encode()) == 200
        assert request(url, "POST", "/fit/bigplot", plot_body) == 200
        alone = run_predicts(url, args.seconds / 3)
        stop = threading.Event()
        fits, plots = Counter(), Counter()
        load = [
            threading.Thread(
                target=loop, args=(url, stop, fits, "POST", "/fit/big", big)
            )
            for _ in range(args.fits)
        ] + [
            threading.Thread(
                target=loop,
                args=(url, stop, plots, "GET", "/plot?series_id=bigplot&version=v1"),
            )
            for _ in range(args.plots)
        ]
        for t in load:
            t.start()
        time.sleep(2)  # the large requests are under way
        loaded = run_predicts(url, args.seconds)
        stop.set()
        for t in load:
            t.join()
    print(
        f"{points:,} points per fit body ({len(big) / MiB:.1f} MiB), "
        f"plots of {args.plot_points:,} points; flags: {' '.join(flags)}"
    )
    print(f"predict alone:          {summary(alone)}")
    print(f"predict under the load: {summary(loaded)}")
    print(f"fits answered: {dict(fits)}; plots answered: {dict(plots)}")
    print(
        f"p99 under load / p99 alone: "
        f"{percentile(loaded, 99) / percentile(alone, 99):.1f}"
    )


if __name__ == "__main__":
    main()
