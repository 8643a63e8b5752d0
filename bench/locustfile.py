"""Locust scenarios for anomalyd, one User class per scenario.

They work against any running anomalyd, an empty one included (``make run``)::

    .venv/bin/locust -f bench/locustfile.py --headless -u 16 -r 16 -t 30s \\
        --host http://127.0.0.1:8000 PredictUser

Web UI (pick the scenarios and the user count in the browser)::

    .venv/bin/locust -f bench/locustfile.py --class-picker --host http://127.0.0.1:8000

Each user creates what it uses when it starts: a few series of its own (ids
``lu-<run>-<user>-<n>``), fitted on 100 points, which its predicts, batches and plots
then use. What the users store stays bounded, however long they run: a fitting user
cycles through its few series and deletes one once it holds ``VERSIONS_KEPT``
versions, so the store holds at most users x series x versions models (6.4 MB per
user of 100,000-point fits). Users delete their series when they stop.

``BENCH_SERIES=N`` says instead that series ``s0000000`` ... ``s{N-1}`` already exist
(``bench/fill.py`` writes them; ``make bench`` does this): the predict, batch, mixed
and plot users then spread over those. A service with an api_token: set
``ANOMALYD_API_TOKEN`` for Locust too. Every user sends requests back to back (no think
time): these measure capacity.
"""

from __future__ import annotations

import itertools
import os
import random
import time

import msgspec
from locust import FastHttpUser, constant, events, tag, task

FILLED = int(os.environ.get("BENCH_SERIES", "0"))
TOKEN = os.environ.get("ANOMALYD_API_TOKEN")
HEADERS = {"Content-Type": "application/json"} | (
    {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
)
# Requests refused with 503 + Retry-After are reported under their name and this.
BUSY = "(503 busy)"
SERIES_PER_USER = 4
VERSIONS_KEPT = 4
_encode = msgspec.json.encode
_users = itertools.count()
_run = f"{random.getrandbits(32):08x}"


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


@events.test_start.add_listener
def _say_which_series(environment, **kw) -> None:
    where = (
        f"the {FILLED} filled series s0000000.." if FILLED else "series of their own"
    )
    print(f"anomalyd locust: users predict and plot against {where}")


class _Base(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    series_count = SERIES_PER_USER
    # Users that fit create their own series even where filled ones exist.
    fits_own_series = False

    def on_start(self) -> None:
        number = next(_users)
        self.own = [f"lu-{_run}-{number}-{i}" for i in range(self.series_count)]
        self.fits = dict.fromkeys(self.own, 0)
        self.created: set[str] = set()
        if not FILLED or self.fits_own_series:
            for series_id in self.own:
                self.fit(series_id, FIT_BODIES[100], "/fit/[id] (setup)")

    def on_stop(self) -> None:
        for series_id in sorted(self.created):
            with self.client.delete(
                f"/series/{series_id}",
                headers=HEADERS,
                name="/series/[id] DELETE (stop)",
                catch_response=True,
            ) as response:
                if response.status_code in (200, 404):
                    response.success()

    def target(self) -> str:
        """A series to read: a filled one when there are, else one of this user's."""
        if FILLED:
            return f"s{random.randrange(FILLED):07d}"
        return random.choice(self.own)

    def post(self, path: str, body: bytes, name: str) -> int | None:
        """POST; a 503 with Retry-After (a worker busy with large requests: the
        max_large_requests setting) is taken as a careful client takes it: it waits
        as long as asked, and counts apart (``<name> (503 busy)``), not as an error."""
        wait = 0.0
        with self.client.post(
            path, data=body, headers=HEADERS, name=name, catch_response=True
        ) as response:
            if response.status_code == 503 and "Retry-After" in response.headers:
                response.request_meta["name"] = f"{name} {BUSY}"
                response.success()
                wait = float(response.headers["Retry-After"])
            else:
                check(response)
        if wait:
            time.sleep(wait)  # gevent's sleep under Locust: this user only
        return response.status_code

    def fit(self, series_id: str, body: bytes, name: str) -> None:
        """Fit one of this user's series; past VERSIONS_KEPT versions, delete it
        first, so what the user stores stays bounded."""
        if self.fits[series_id] >= VERSIONS_KEPT:
            with self.client.delete(
                f"/series/{series_id}",
                headers=HEADERS,
                name="/series/[id] DELETE (bound)",
                catch_response=True,
            ) as response:
                check(response)
            self.fits[series_id] = 0
        if self.post(f"/fit/{series_id}", body, name) == 200:
            self.fits[series_id] += 1
            self.created.add(series_id)

    def refit_own(self, body: bytes, name: str) -> None:
        self.fit(random.choice(self.own), body, name)


class PredictUser(_Base):
    """Predict-heavy: single points."""

    @tag("predict")
    @task
    def predict(self) -> None:
        self.post(f"/predict/{self.target()}", PREDICT_BODY, "/predict/[id]")


class Batch100User(_Base):
    """Batch predict, 100 points per request."""

    @tag("batch")
    @task
    def batch(self) -> None:
        self.post(
            f"/predict/{self.target()}/batch",
            BATCH_BODIES[100],
            "/predict/[id]/batch (100)",
        )


class Batch10kUser(_Base):
    """Batch predict, 10,000 points per request."""

    @tag("batch")
    @task
    def batch(self) -> None:
        self.post(
            f"/predict/{self.target()}/batch",
            BATCH_BODIES[10_000],
            "/predict/[id]/batch (10000)",
        )


class Fit100User(_Base):
    """Fit-heavy: 100-point fits, each a durable commit, to this user's series."""

    fits_own_series = True

    @tag("fit")
    @task
    def fit_100(self) -> None:
        self.refit_own(FIT_BODIES[100], "/fit/[id] (100)")


class Fit100kUser(_Base):
    """Fit-heavy: 100,000-point fits (about 2.9 MB of JSON each), to one series."""

    fits_own_series = True
    series_count = 1

    @tag("fit")
    @task
    def fit_100k(self) -> None:
        self.refit_own(FIT_BODIES[100_000], "/fit/[id] (100000)")


class MixedUser(_Base):
    """95% single-point predicts, 5% 100-point refits of this user's series."""

    fits_own_series = True

    @task(95)
    def predict(self) -> None:
        self.post(f"/predict/{self.target()}", PREDICT_BODY, "/predict/[id]")

    @task(5)
    def refit(self) -> None:
        self.refit_own(FIT_BODIES[100], "/fit/[id] (100)")


class PlotUser(_Base):
    """GET /plot?series_id=... (an SVG)."""

    @tag("plot")
    @task
    def plot(self) -> None:
        with self.client.get(
            "/plot",
            params={"series_id": self.target()},
            headers=HEADERS,
            name="/plot?series_id=[id]",
            catch_response=True,
        ) as response:
            check(response)
