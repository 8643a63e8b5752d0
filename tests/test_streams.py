"""Streams over real HTTP: a real ``anomalyd serve`` (gunicorn, 2 workers), real LMDB.

Learning, every refusal (each stores nothing and leaves the stream as it was), and
Idempotency-Key. Configuration, listing, deletion, points, episodes and statistics:
tests/test_streams_manage.py.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from stream_client import (
    HISTORY,
    MAX_BODY,
    T0,
    assert_error,
    batch,
    iso,
    noisy,
    server,
    snapshot,
)

__all__ = ["server"]  # the module's fixture


# -- learning ----------------------------------------------------------------------


def test_first_observe_creates_the_stream_with_the_defaults(server):
    r = server.post("/observe/new_1", {"timestamp": T0, "value": 42.5})
    assert r.status_code == 200, r.text
    assert r.json() == {"anomaly": False, "score": 0.0, "warming_up": True, "points": 1}
    r = server.post("/observe/new_1", {"timestamp": iso(T0 + 60), "value": 43})
    assert r.json()["points"] == 2
    r = server.post("/observe/new_1", {"timestamp": str(T0 + 120), "value": 41.5})
    assert r.json()["points"] == 3
    body = server.get("/streams/new_1").json()
    assert body["series_id"] == "new_1"
    assert body["points"] == 3
    assert body["first_timestamp"] == iso(T0)
    assert body["last_timestamp"] == iso(T0 + 120)
    assert body["last_value"] == 41.5
    assert 0.0 <= body["last_score"] <= 1.0
    assert body["anomalies"] == 0 and body["last_anomaly"] is None
    assert body["config"] == {
        "threshold": 0.51,
        "direction": "both",
        "warmup": 200,
        "labels": {},
    }


def test_a_batch_answers_what_the_points_one_by_one_answer(server):
    ts, xs = noisy(700, seed=1)
    xs[400] += 30
    xs[610] -= 30
    singles = [
        server.post("/observe/one_by_one", {"timestamp": t, "value": x}).json()
        for t, x in zip(ts, xs, strict=True)
    ]
    answers = []
    for a, b in ((0, 1), (1, 250), (250, 251), (251, 700)):
        r = batch(server, "batched", ts[a:b], xs[a:b])
        assert r.status_code == 200, r.text
        assert r.json()["points"] == b
        answers.append(r.json())
    scores = [s for r in answers for s in r["score"]]
    anomalies = [a for r in answers for a in r["anomaly"]]
    assert scores == [s["score"] for s in singles]
    assert anomalies == [s["anomaly"] for s in singles]
    assert [s["warming_up"] for s in singles] == [i < 200 for i in range(700)]
    assert any(anomalies), "the two spikes after the warm-up"
    one, many = snapshot(server, "one_by_one"), snapshot(server, "batched")
    assert one[1] == many[1]
    assert {**one[0], "series_id": "x"} == {**many[0], "series_id": "x"}
    points = many[1][0]
    assert len(points) == HISTORY
    assert [p["timestamp"] for p in points] == [iso(t) for t in ts[-HISTORY:]]
    assert [p["value"] for p in points] == xs[-HISTORY:]
    assert [p["score"] for p in points] == scores[-HISTORY:]
    assert [p["anomaly"] for p in points] == anomalies[-HISTORY:]


def test_timestamp_forms_may_be_mixed_and_repeat(server):
    r = batch(
        server,
        "forms",
        [T0, str(T0 + 60), iso(T0 + 60), "2023-09-10T09:02:00+00:00"],
        [1, 2, 3, 4],
    )
    assert r.status_code == 200, r.text
    assert r.json()["points"] == 4
    points = server.get("/streams/forms/points").json()["points"]
    assert [p["timestamp"] for p in points] == [
        iso(T0),
        iso(T0 + 60),
        iso(T0 + 60),
        iso(T0 + 120),
    ]


# -- refusals: each stores nothing and leaves the stream as it was -------------------


@pytest.fixture
def settled(server, request):
    stream = f"settled_{request.node.name[-40:].strip('[]').replace('[', '_')}"
    stream = "".join(c if c.isalnum() or c in "._:-" else "_" for c in stream)
    ts, xs = noisy(260, seed=2)
    assert batch(server, stream, ts, xs).status_code == 200
    return stream, snapshot(server, stream)


LAST = T0 + 60 * 259
BAD_SINGLES = [
    ({"timestamp": LAST - 1, "value": 1.0}, 409, [str(LAST), iso(LAST)]),
    ({"timestamp": LAST, "value": "1"}, 422, ["$.value"]),
    ({"timestamp": LAST, "value": 1.0, "extra": 1}, 422, ["extra"]),
    ({"timestamp": LAST}, 422, ["value"]),
    ({"timestamp": "yesterday", "value": 1.0}, 422, ["timestamp", "yesterday"]),
    ({"timestamp": -5, "value": 1.0}, 422, ["timestamp"]),
    (b'{"timestamp": 1694352000, "value": 1e999}', 422, ["value"]),
    (b'{"timestamp": 1694352000, "value": NaN}', 400, ["JSON"]),
    (b"", 400, ["JSON"]),
    (b'{"timestamp": 1', 400, ["JSON"]),
]


@pytest.mark.parametrize("body, status, words", BAD_SINGLES)
def test_a_refused_observe_learns_nothing(server, settled, body, status, words):
    stream, before = settled
    if isinstance(body, bytes):
        r = server.session.post(f"{server.url}/observe/{stream}", data=body)
    else:
        r = server.post(f"/observe/{stream}", body)
    assert_error(r, status, *words)
    assert snapshot(server, stream) == before


BAD_BATCHES = [
    ({"timestamps": [LAST - 60, LAST + 60], "values": [1, 2]}, 409, [iso(LAST)]),
    (
        {"timestamps": [LAST, LAST + 120, LAST + 60], "values": [1, 2, 3]},
        422,
        ["$.timestamps[2]", "earlier"],
    ),
    ({"timestamps": [LAST, LAST + 60], "values": [1]}, 422, ["same length"]),
    ({"timestamps": [], "values": []}, 422, ["at least one"]),
    ({"timestamps": [LAST], "values": [1], "detector": {}}, 422, ["detector"]),
    ({"timestamps": [LAST, "soon"], "values": [1, 2]}, 422, ["$.timestamps[1]"]),
    (
        b'{"timestamps": [1694352000, 1694352060], "values": [1, 1e999]}',
        422,
        ["values[1]"],
    ),
    ({"timestamps": [LAST, LAST + 60], "values": [1, None]}, 422, ["$.values[1]"]),
]


@pytest.mark.parametrize("body, status, words", BAD_BATCHES)
def test_a_refused_batch_learns_nothing(server, settled, body, status, words):
    stream, before = settled
    if isinstance(body, bytes):
        r = server.session.post(f"{server.url}/observe/{stream}/batch", data=body)
    else:
        r = server.post(f"/observe/{stream}/batch", body)
    assert_error(r, status, *words)
    assert snapshot(server, stream) == before


def test_an_oversized_body_is_413_and_learns_nothing(server, settled):
    stream, before = settled
    n = MAX_BODY // 10
    ts = [LAST + i for i in range(n)]
    # Own connections: the server closes one whose body it did not read.
    r = requests.post(
        f"{server.url}/observe/{stream}/batch",
        json={"timestamps": ts, "values": [1.5] * n},
        timeout=60,
    )
    assert_error(r, 413, "max_body_bytes")
    assert snapshot(server, stream) == before
    # A chunked body, no Content-Length, is cut off the same way (just over the
    # limit: the server reads at most 64 KiB past it before it answers).
    n = MAX_BODY // 17
    while len(body := json.dumps({"timestamps": ts[:n], "values": [1.5] * n})) < (
        MAX_BODY + 2000
    ):
        n += 100
    assert MAX_BODY < len(body) < MAX_BODY + 5000, len(body)
    r = requests.post(
        f"{server.url}/observe/{stream}/batch",
        data=iter([body[i : i + 8192].encode() for i in range(0, len(body), 8192)]),
        timeout=60,
    )
    assert_error(r, 413)
    assert snapshot(server, stream) == before


@pytest.mark.parametrize("path", ["/observe/bad%20id", "/observe/" + "x" * 201])
def test_a_malformed_series_id_is_400(server, path):
    assert_error(server.post(path, {"timestamp": T0, "value": 1}), 400, "series_id")
    assert_error(server.get("/streams/bad%20id"), 400, "series_id")


# -- idempotency ---------------------------------------------------------------------


def test_a_keyed_retry_gets_the_first_answer_and_learns_nothing(server):
    ts, xs = noisy(3, seed=3)
    first = batch(server, "keyed", ts, xs, headers={"Idempotency-Key": "req-1"})
    assert first.status_code == 200
    again = batch(server, "keyed", ts, xs, headers={"Idempotency-Key": "req-1"})
    assert again.status_code == 200 and again.content == first.content
    assert server.get("/streams/keyed").json()["points"] == 3
    # The same key with another body, or on the other route, is 422 and learns nothing.
    other = batch(server, "keyed", ts, [1, 2, 3], headers={"Idempotency-Key": "req-1"})
    assert_error(other, 422, "req-1", "different request")
    single = server.post(
        "/observe/keyed",
        {"timestamp": ts[-1], "value": xs[-1]},
        headers={"Idempotency-Key": "req-1"},
    )
    assert_error(single, 422, "req-1")
    assert server.get("/streams/keyed").json()["points"] == 3
    # Single points keep their keys too; keys are per stream.
    point = {"timestamp": ts[-1] + 60, "value": 50.0}
    one = server.post("/observe/keyed", point, headers={"Idempotency-Key": "p 1"})
    two = server.post("/observe/keyed", point, headers={"Idempotency-Key": "p 1"})
    assert one.content == two.content and one.json()["points"] == 4
    elsewhere = server.post(
        "/observe/keyed_2", point, headers={"Idempotency-Key": "p 1"}
    )
    assert elsewhere.json()["points"] == 1


def test_a_failed_keyed_request_is_not_remembered(server):
    assert batch(server, "keyed_fail", [T0 + 60], [1.0]).status_code == 200
    late = {"timestamp": T0, "value": 1.0}
    headers = {"Idempotency-Key": "k"}
    assert_error(server.post("/observe/keyed_fail", late, headers=headers), 409)
    ok = server.post(
        "/observe/keyed_fail", {"timestamp": T0 + 60, "value": 2.0}, headers=headers
    )
    assert ok.status_code == 200 and ok.json()["points"] == 2


@pytest.mark.parametrize("key", ["", "x" * 201, "clé", "tab\there"])
def test_a_malformed_idempotency_key_is_400(server, key):
    r = server.session.post(
        f"{server.url}/observe/keyed_bad",
        data=json.dumps({"timestamp": T0, "value": 1}).encode("utf-8"),
        headers={"Idempotency-Key": key.encode("utf-8")},
    )
    assert_error(r, 400, "Idempotency-Key")
    assert server.get("/streams/keyed_bad").status_code == 404


def test_the_last_1000_keys_are_remembered(server):
    stream = "keyed_many"
    point = {"timestamp": T0, "value": 1.0}

    def send(i: int):
        return server.session.post(
            f"{server.url}/observe/{stream}",
            json=point,
            headers={"Idempotency-Key": f"key-{i}"},
            timeout=60,
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(1001)))
    assert all(a.status_code == 200 for a in answers)
    assert server.get(f"/streams/{stream}").json()["points"] == 1001
    # key-1 .. key-1000 are the last 1,000 in commit order unless key-0 came later;
    # whichever key was committed first has been forgotten, every other is known.
    by_points = sorted(range(1001), key=lambda i: answers[i].json()["points"])
    oldest = by_points[0]
    for i in by_points[1:4] + by_points[-3:]:
        again = send(i)
        assert again.content == answers[i].content
    assert server.get(f"/streams/{stream}").json()["points"] == 1001
    assert send(oldest).json()["points"] == 1002
