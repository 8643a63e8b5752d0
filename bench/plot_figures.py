"""How long /plot takes to draw a 1,000,000-point version, and how big the SVG is.

    .venv/bin/python bench/plot_figures.py [--points 1000000] [--rounds 20]

Starts a real ``anomalyd serve`` (2 workers, temporary LMDB), fits one version of
``--points`` points (a random walk with a daily cycle and spikes, 3sigma on both sides),
then, on one keep-alive connection:

- ``GET /plot?series_id=big&version=v1`` ``--rounds`` times, without If-None-Match,
  so each one reads the training data from LMDB, reduces it and renders the SVG;
- the same with the ETag in If-None-Match (the 304 path a browser takes);

and prints the size of the SVG and the median and slowest wall time of each, measured
by the client on 127.0.0.1 (an upper bound of the time inside the service). It also
times ``anomalyd.plot.render_svg`` and ``reduce_extremes`` alone, in this process, on
the same data.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Anomalyd

from anomalyd.detectors import DetectorParams, fit
from anomalyd.plot import reduce_extremes, render_svg


def make_series(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    timestamps = 1_600_000_000 + 60 * np.arange(n, dtype=np.int64)
    values = (
        50
        + np.cumsum(rng.normal(0, 0.05, n))
        + 5 * np.sin(2 * np.pi * np.arange(n) / 1440)
        + rng.normal(0, 1, n)
    )
    spikes = rng.choice(n, size=max(1, n // 1000), replace=False)
    values[spikes] += rng.choice([-1, 1], spikes.size) * 80
    return timestamps, values


def timed(session: requests.Session, url: str, rounds: int, **kw) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = session.get(url, timeout=120, **kw)
        times.append(time.perf_counter() - started)
        response.raise_for_status()
    return times


def summary(times: list[float], digits: int = 0) -> str:
    return (
        f"median {statistics.median(times) * 1000:.{digits}f} ms, "
        f"slowest {max(times) * 1000:.{digits}f} ms over {len(times)} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    timestamps, values = make_series(args.points)
    body = {
        "timestamps": timestamps.tolist(),
        "values": values.tolist(),
        "detector": {"kind": "3sigma", "direction": "both"},
    }
    with (
        tempfile.TemporaryDirectory(prefix="anomalyd-plot-bench-") as tmp,
        Anomalyd("--workers", "2", data_dir=f"{tmp}/data") as server,
    ):
        session = requests.Session()
        fitted = session.post(f"{server.url}/fit/big", json=body, timeout=300)
        fitted.raise_for_status()
        url = f"{server.url}/plot?series_id=big&version=v1"
        first = session.get(url, timeout=120)
        first.raise_for_status()
        full = timed(session, url, args.rounds)
        revalidate = timed(
            session,
            url,
            args.rounds,
            headers={"If-None-Match": first.headers["ETag"]},
        )
        session.close()
    model = fit(values, DetectorParams(direction="both"))
    reduction = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        reduce_extremes(values)
        reduction.append(time.perf_counter() - started)
    in_process = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        render_svg("big", 1, model, timestamps, values)
        in_process.append(time.perf_counter() - started)

    drawn = re.search(
        r"[0-9]+ points \(([0-9]+) drawn\) · ([0-9]+) beyond", first.content.decode()
    )
    print(
        f"points: {args.points:,}  drawn: {int(drawn[1]):,}  "
        f"beyond a bound: {int(drawn[2]):,}  svg: {len(first.content):,} bytes"
    )
    print(f"GET /plot (read, reduce, render): {summary(full)}")
    print(f"GET /plot with If-None-Match (304): {summary(revalidate)}")
    print(f"render_svg alone, in process:      {summary(in_process)}")
    print(f"reduce_extremes alone, in process: {summary(reduction, 2)}")


if __name__ == "__main__":
    main()
