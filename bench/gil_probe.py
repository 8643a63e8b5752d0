"""Which steps of a large fit, batch or plot hold the GIL for long, in this process.

    .venv/bin/python bench/gil_probe.py [--mib 64]

A probe thread sleeps 1 ms in a loop and records how late it wakes: a step that holds
the GIL for 200 ms makes the probe wake about 200 ms late, and every other thread of a
worker (single predicts among them) waits as long. Each step of the service's own code
for a fit and a batch predict of a ``--mib`` MiB body (one-digit numbers, the most
points per byte) is timed and probed on its own, with a store in a temporary
directory. Prints, per step, its wall time and the probe's worst lateness.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import tiny_body

from anomalyd import detectors, ingest
from anomalyd.api.fit import fit_columns
from anomalyd.api.predict import batch_answer, batch_columns
from anomalyd.plot import render_svg
from anomalyd.store import Store, points_blob

MiB = 1024 * 1024


class Probe:
    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            time.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - started - 0.001)

    def step(self, name: str, work):
        time.sleep(0.01)
        self.worst = 0.0
        started = time.perf_counter()
        result = work()
        elapsed = time.perf_counter() - started
        time.sleep(0.01)
        print(
            f"{name:<34} {elapsed * 1000:8.1f} ms   GIL held up to "
            f"{self.worst * 1000:7.1f} ms",
            flush=True,
        )
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=float, default=64)
    args = parser.parse_args()
    body, n = tiny_body(int(args.mib * MiB))
    print(f"{n:,} points, {len(body) / MiB:.1f} MiB")
    probe = Probe()
    _, stamps, values = probe.step(
        "fit: decode (ingest.decode)", lambda: ingest.decode(body, fit_columns, 3)
    )
    params = detectors.DetectorParams()
    model = probe.step(
        "fit: train (detectors.fit)", lambda: detectors.fit(values, params)
    )
    probe.step("fit: points record (points_blob)", lambda: points_blob(stamps, values))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, map_size=4 << 30)
        probe.step(
            "fit: store (add_version, fsync)",
            lambda: store.add_version("big", model, stamps, values, 0.0),
        )
        _, _, t, v = probe.step(
            "plot: read (training_data)", lambda: store.training_data("big", 1)
        )
        probe.step("plot: draw (render_svg)", lambda: render_svg("big", 1, model, t, v))
        store.close()
    probe.step(
        "batch: decode (ingest.decode)",
        lambda: ingest.decode(body, batch_columns, 1, keep_timestamps=False),
    )
    probe.step(
        "batch: answer (batch_answer)",
        lambda: sum(len(piece) for piece in batch_answer("v1", model, values)),
    )


if __name__ == "__main__":
    main()
