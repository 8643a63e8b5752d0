"""What the streams' HTTP tests share: a 2-worker service with a small history and
body limit, points to send, and a snapshot of all a client can read of a stream."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from conftest import Server

T0 = 1_694_336_400
HISTORY = 300
MAX_BODY = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(
        tmp_path_factory.mktemp("streams") / "data",
        extra=["--max-body-bytes", str(MAX_BODY), "--stream-history", str(HISTORY)],
    ).start()
    yield s
    assert s.stop() == 0


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def noisy(n: int, seed: int = 0, start: int = T0, step: int = 60):
    rng = np.random.default_rng(seed)
    return [start + step * i for i in range(n)], np.round(
        50 + rng.normal(0, 1, n), 3
    ).tolist()


def assert_error(resp, status, *words):
    assert resp.status_code == status, resp.text[:500]
    body = resp.json()
    assert set(body) == {"title", "description"}, body
    for word in words:
        assert word in body["description"], (word, body["description"])


def snapshot(server, stream: str) -> tuple:
    """Everything a client can read of a stream."""
    pages = []
    for route in ("points", "anomalies"):
        after = None
        while True:
            params = {"limit": 1000, **({"after": after} if after else {})}
            r = server.get(f"/streams/{stream}/{route}", params=params)
            assert r.status_code == 200, r.text
            pages.append(r.json()[route])
            after = r.json()["next"]
            if after is None:
                break
    return server.get(f"/streams/{stream}").json(), pages


def batch(server, stream, ts, xs, **kw):
    return server.post(
        f"/observe/{stream}/batch", {"timestamps": ts, "values": xs}, **kw
    )
