"""Locust scenarios for anomalyd, one User class per scenario.

Headless, one scenario (what ``make bench`` does)::

    locust -f bench/locustfile.py --headless -u 16 -r 16 -t 30s \
        --host http://127.0.0.1:8000 PredictUser

Web UI (pick the scenarios and the user count in the browser)::

    locust -f bench/locustfile.py --class-picker --host http://127.0.0.1:8000

The predict, batch, mixed and plot scenarios expect series ``s0000000`` ...
``s{N-1}`` (N from ``BENCH_SERIES``, default 1000) to exist: ``bench/fill.py`` writes
them straight into a store, or fit them yourself. Fit scenarios create their own series.
Every user sends requests back to back (no think time): these measure capacity.
"""

from __future__ import annotations

import itertools
import os
import random

import msgspec
from locust import FastHttpUser, constant, tag, task

SERIES = int(os.environ.get("BENCH_SERIES", "1000"))
HEADERS = {"Content-Type": "application/json"}
_encode = msgspec.json.encode
_ids = itertools.count()
_run = f"{random.getrandbits(32):08x}"


def known_series() -> str:
    return f"s{random.randrange(SERIES):07d}"


def new_series() -> str:
    return f"lf{_run}-{next(_ids)}"


def training_body(points: int) -> bytes:
    rng = random.Random(points)
    return _encode(
        {
            "timestamps": list(range(1_694_336_400, 1_694_336_400 + 60 * points, 60)),
            "values": [round(rng.gauss(50.0, 5.0), 3) for _ in range(points)],
        }
    )


PREDICT_BODY = _encode({"timestamp": "1694336640", "value": 55.0})
BATCH_BODIES = {n: training_body(n) for n in (100, 10_000)}
FIT_BODIES = {n: training_body(n) for n in (100, 100_000)}


def check(response, expected: int = 200) -> None:
    if response.status_code != expected:
        response.failure(f"HTTP {response.status_code}: {response.text[:200]}")


class _Base(FastHttpUser):
    abstract = True
    wait_time = constant(0)

    def post(self, path: str, body: bytes, name: str) -> None:
        with self.client.post(
            path, data=body, headers=HEADERS, name=name, catch_response=True
        ) as response:
            check(response)


class PredictUser(_Base):
    """Predict-heavy: single points against known series."""

    @tag("predict")
    @task
    def predict(self) -> None:
        self.post(f"/predict/{known_series()}", PREDICT_BODY, "/predict/[id]")


class Batch100User(_Base):
    """Batch predict, 100 points per request."""

    @tag("batch")
    @task
    def batch(self) -> None:
        self.post(
            f"/predict/{known_series()}/batch",
            BATCH_BODIES[100],
            "/predict/[id]/batch (100)",
        )


class Batch10kUser(_Base):
    """Batch predict, 10,000 points per request."""

    @tag("batch")
    @task
    def batch(self) -> None:
        self.post(
            f"/predict/{known_series()}/batch",
            BATCH_BODIES[10_000],
            "/predict/[id]/batch (10000)",
        )


class Fit100User(_Base):
    """Fit-heavy: 100-point fits, each a durable commit, to new series."""

    @tag("fit")
    @task
    def fit(self) -> None:
        self.post(f"/fit/{new_series()}", FIT_BODIES[100], "/fit/[id] (100)")


class Fit100kUser(_Base):
    """Fit-heavy: 100,000-point fits (about 2.9 MB of JSON each)."""

    @tag("fit")
    @task
    def fit(self) -> None:
        self.post(f"/fit/{new_series()}", FIT_BODIES[100_000], "/fit/[id] (100000)")


class MixedUser(_Base):
    """95% single-point predicts, 5% 100-point refits, over all known series."""

    @task(95)
    def predict(self) -> None:
        self.post(f"/predict/{known_series()}", PREDICT_BODY, "/predict/[id]")

    @task(5)
    def refit(self) -> None:
        self.post(f"/fit/{known_series()}", FIT_BODIES[100], "/fit/[id] (100)")


class PlotUser(_Base):
    """GET /plot?series_id=... (an SVG of a known series)."""

    @tag("plot")
    @task
    def plot(self) -> None:
        with self.client.get(
            "/plot",
            params={"series_id": known_series()},
            name="/plot?series_id=[id]",
            catch_response=True,
        ) as response:
            check(response)
