"""/plot of a 16.7M-point version, before and after drawings stored at fit time.

    .venv/bin/python bench/plot_store.py [--points 16700000] [--rounds 5] [--before main]

For each of git ref ``--before`` (exported with ``git archive``) and this checkout: a
store holding one version of ``--points`` points (a random walk with a daily cycle and
spikes, 3sigma both sides) is written in process through that code's
``Store.add_version`` (this checkout's with ``drawer=plot.drawing_of``, as the service
does), then served by that code (``anomalyd serve``, 2 workers), and
``GET /plot?series_id=big&version=v1`` is timed ``--rounds`` times on one keep-alive
connection, without If-None-Match (each one draws). Also timed: ``add_version`` itself
(the fit's store part) and, in this checkout, ``plot.drawing_of`` alone, the fit-time
cost of the drawing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent

BUILD = r"""
import json, sys, time
import numpy as np
from anomalyd.detectors import DetectorParams, fit
from anomalyd import store as store_module
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(42)
timestamps = 1_600_000_000 + 60 * np.arange(n, dtype=np.int64)
values = (50 + np.cumsum(rng.normal(0, 0.05, n))
          + 5 * np.sin(2 * np.pi * np.arange(n) / 1440) + rng.normal(0, 1, n))
spikes = rng.choice(n, size=max(1, n // 1000), replace=False)
values[spikes] += rng.choice([-1, 1], spikes.size) * 80
model = fit(values, DetectorParams(direction="both"))
kwargs, drawing_s = {}, None
try:
    from anomalyd.plot import drawing_of
    kwargs["drawer"] = drawing_of
    started = time.perf_counter()
    drawing_of(model, timestamps, values)
    drawing_s = time.perf_counter() - started
except ImportError:
    pass
store = store_module.Store(path, map_size=16 << 30, **kwargs)
started = time.perf_counter()
store.add_version("big", model, timestamps, values, time.time())
add_s = time.perf_counter() - started
store.close()
print(json.dumps({"add_version_s": add_s, "drawing_of_s": drawing_s}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in(
    source: Path, *args: str, **kw
) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    env["PYTHONPATH"] = str(source)
    if kw.pop("background", False):
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=source,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    return subprocess.run(
        [sys.executable, *args], cwd=source, env=env, check=True, capture_output=True
    )


def measure(source: Path, data_dir: str, points: int, rounds: int) -> dict:
    built = json.loads(run_in(source, "-c", BUILD, data_dir, str(points)).stdout)
    port = free_port()
    server = run_in(
        source,
        "-m",
        "anomalyd",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--data-dir",
        data_dir,
        background=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                requests.get(url + "/healthcheck", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.1)
        time.sleep(1.0)
        times, size = [], 0
        with requests.Session() as session:
            for _ in range(rounds):
                started = time.perf_counter()
                r = session.get(f"{url}/plot?series_id=big&version=v1", timeout=300)
                times.append(time.perf_counter() - started)
                r.raise_for_status()
                size = len(r.content)
        return {**built, "plot_ms": [t * 1000 for t in times], "svg_bytes": size}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=16_700_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", default="main")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anomalyd-plot-store-") as tmp:
        before = Path(tmp, "before")
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "anomalyd"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        for label, source in ((args.before, before), ("this checkout", ROOT)):
            data = os.path.join(tmp, label.replace(" ", "_"))
            got = measure(source, data, args.points, args.rounds)
            plot = got["plot_ms"]
            line = (
                f"{label:>14}: /plot of {args.points:,} points: median "
                f"{statistics.median(plot):.0f} ms, slowest {max(plot):.0f} ms over "
                f"{len(plot)} (svg {got['svg_bytes']:,} bytes); add_version "
                f"{got['add_version_s']:.2f} s"
            )
            if got["drawing_of_s"] is not None:
                line += f", of which drawing_of {got['drawing_of_s']:.2f} s"
            print(line, flush=True)


if __name__ == "__main__":
    main()
