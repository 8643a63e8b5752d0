"""Streams over real HTTP: a real ``anomalyd serve`` (gunicorn, 2 workers), real LMDB.

Every route of the contract's Streams section but the plot, every field and every
error; bad input stores nothing and leaves the stream as it was.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
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


# -- configuration, listing, deletion ----------------------------------------------


def test_put_creates_and_configures_a_stream(server):
    r = server.session.put(f"{server.url}/streams/configured")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["points"] == 0 and body["first_timestamp"] is None
    assert body["last_score"] is None and body["last_value"] is None
    assert body["config"] == {
        "threshold": 0.51,
        "direction": "both",
        "warmup": 200,
        "labels": {},
    }
    r = server.session.put(
        f"{server.url}/streams/configured",
        json={"threshold": 0.9, "warmup": 3, "labels": {"room": "b2", "_x": ""}},
    )
    assert r.json()["config"] == {
        "threshold": 0.9,
        "direction": "both",
        "warmup": 3,
        "labels": {"room": "b2", "_x": ""},
    }
    r = server.session.put(
        f"{server.url}/streams/configured", json={"direction": "upper"}
    )
    assert r.json()["config"] == {
        "threshold": 0.9,
        "direction": "upper",
        "warmup": 3,
        "labels": {"room": "b2", "_x": ""},
    }
    assert server.get("/streams/configured").json() == r.json()


@pytest.mark.parametrize(
    "body, words",
    [
        ({"threshold": 0}, ["threshold"]),
        ({"threshold": 1.5}, ["threshold"]),
        ({"threshold": None}, ["threshold"]),
        ({"direction": "up"}, ["direction"]),
        ({"warmup": -1}, ["warmup"]),
        ({"warmup": 1.5}, ["warmup"]),
        ({"labels": {"1abc": "x"}}, ["labels"]),
        ({"labels": {"__name__": "x"}}, ["labels"]),
        ({"labels": {"a": 1}}, ["labels"]),
        ({"labels": {f"l{i}": "x" for i in range(21)}}, ["labels"]),
        ({"labels": {"a": "x" * 129}}, ["labels"]),
        ({"thresh": 0.5}, ["thresh"]),
    ],
)
def test_put_refuses_bad_settings_and_changes_nothing(server, body, words):
    server.session.put(f"{server.url}/streams/put_bad", json={"threshold": 0.7})
    before = server.get("/streams/put_bad").json()
    r = server.session.put(f"{server.url}/streams/put_bad", json=body)
    assert_error(r, 422, *words)
    assert server.get("/streams/put_bad").json() == before


def test_the_threshold_and_direction_decide_the_verdicts(server):
    ts, xs = noisy(300, seed=4)
    server.session.put(
        f"{server.url}/streams/strict", json={"warmup": 0, "threshold": 1.0}
    )
    server.session.put(
        f"{server.url}/streams/lax", json={"warmup": 0, "threshold": 0.01}
    )
    server.session.put(
        f"{server.url}/streams/lax_up",
        json={"warmup": 0, "threshold": 0.01, "direction": "upper"},
    )
    strict = batch(server, "strict", ts, xs).json()
    lax = batch(server, "lax", ts, xs).json()
    up = batch(server, "lax_up", ts, xs).json()
    assert lax["anomaly"] == [s >= 0.01 for s in lax["score"]]
    assert strict["anomaly"] == [s >= 1.0 for s in strict["score"]]
    assert sum(lax["anomaly"]) > sum(up["anomaly"]) > 0
    drop = batch(server, "lax_up", [ts[-1] + 60], [xs[-1] - 100]).json()
    assert drop["score"] == [0.0] and drop["anomaly"] == [False]


def test_list_pages_in_id_order(server):
    for name in ("list_c", "list_a", "list_b"):
        server.post(f"/observe/{name}", {"timestamp": T0, "value": 1.0})
    r = server.get("/streams", params={"limit": 2, "after": "list_"})
    body = r.json()
    assert [s["series_id"] for s in body["streams"]] == ["list_a", "list_b"]
    assert body["next"] == "list_b"
    assert body["streams"][0] == {
        "series_id": "list_a",
        "points": 1,
        "last_timestamp": iso(T0),
        "last_score": 0.0,
        "anomalies": 0,
        "last_value": 1.0,
        "last_anomaly": None,
    }
    rest = server.get("/streams", params={"limit": 1000, "after": "list_b"}).json()
    assert rest["streams"][0]["series_id"] == "list_c"
    assert rest["next"] is None or rest["next"] > "list_c"
    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"after": "a b"}):
        assert_error(server.get("/streams", params=params), 400)


def test_delete_forgets_everything(server):
    ts, xs = noisy(50, seed=5)
    batch(server, "doomed", ts, xs, headers={"Idempotency-Key": "once"})
    r = server.delete("/streams/doomed")
    assert r.status_code == 200 and r.json() == {
        "series_id": "doomed",
        "deleted_points": 50,
    }
    for path in ("", "/points", "/anomalies"):
        assert_error(server.get(f"/streams/doomed{path}"), 404, "doomed")
    assert_error(server.delete("/streams/doomed"), 404, "doomed")
    # A new stream of that id starts from nothing, its old keys forgotten too.
    again = batch(server, "doomed", ts, xs, headers={"Idempotency-Key": "once"})
    assert again.json()["points"] == 50
    # Points earlier than the old stream's last are fine now.
    assert server.post("/observe/doomed_2", {"timestamp": 1, "value": 1.0}).ok


def test_streams_and_fitted_series_are_separate(server):
    assert server.post(
        "/fit/both_kinds", {"timestamps": [1, 2, 3], "values": [1, 2, 4]}
    ).ok
    assert_error(server.get("/streams/both_kinds"), 404)
    assert server.post("/observe/both_kinds", {"timestamp": 1, "value": 1.0}).ok
    assert server.delete("/streams/both_kinds").ok
    assert server.get("/series/both_kinds").ok


# -- points and anomalies ------------------------------------------------------------


def test_points_page_with_since_limit_and_cursor(server):
    ts, xs = noisy(500, seed=6)
    batch(server, "paged", ts, xs)
    kept = ts[-HISTORY:]
    got, after = [], None
    while True:
        params = {"limit": 70, **({"after": after} if after else {})}
        body = server.get("/streams/paged/points", params=params).json()
        assert len(body["points"]) <= 70
        got += [p["timestamp"] for p in body["points"]]
        after = body["next"]
        if after is None:
            break
    assert got == [iso(t) for t in kept]
    since = kept[100]
    body = server.get(
        "/streams/paged/points", params={"since": iso(since), "limit": 5}
    ).json()
    assert [p["timestamp"] for p in body["points"]] == [iso(t) for t in kept[100:105]]
    more = server.get(
        "/streams/paged/points",
        params={"since": str(since), "limit": 5, "after": body["next"]},
    ).json()
    assert [p["timestamp"] for p in more["points"]] == [iso(t) for t in kept[105:110]]
    # since before the history: from its first point; after its end: nothing.
    assert server.get("/streams/paged/points", params={"since": T0}).json()["points"][
        0
    ]["timestamp"] == iso(kept[0])
    assert server.get("/streams/paged/points", params={"since": ts[-1] + 1}).json() == {
        "points": [],
        "next": None,
    }
    for params in (
        {"after": "12"},
        {"after": "p-1"},
        {"after": "p1\n"},
        {"after": ""},
        {"since": "tomorrow"},
        {"since": ""},
        {"limit": 0},
        {"limit": ""},
        {"limit": 1001},
    ):
        assert_error(server.get("/streams/paged/points", params=params), 400)
        assert_error(server.get("/streams/paged/anomalies", params=params), 400)


def test_anomaly_episodes(server):
    server.session.put(
        f"{server.url}/streams/episodes", json={"warmup": 0, "threshold": 0.25}
    )
    ts, xs = noisy(300, seed=7)
    base = batch(server, "episodes", ts, xs).json()
    t = ts[-1]
    # Two far excursions of three points each, with normal points between.
    r = batch(
        server,
        "episodes",
        [t + 60 * i for i in range(1, 9)],
        [500.0, 900.0, 1300.0, 50.0, 50.2, 2000.0, 3000.0, 4000.0],
    ).json()
    assert r["anomaly"] == [True, True, True, False, False, True, True, True]
    episodes = server.get("/streams/episodes/anomalies", params={"limit": 1000}).json()
    assert episodes["next"] is None
    found = episodes["anomalies"]
    assert (
        len(found)
        == sum(
            1
            for i, a in enumerate(base["anomaly"])
            if a and (i == 0 or not base["anomaly"][i - 1])
        )
        + 2
    )
    first, second = found[-2:]
    assert first == {
        "start": iso(t + 60),
        "end": iso(t + 180),
        "points": 3,
        "peak_score": max(r["score"][:3]),
        "peak_value": [500.0, 900.0, 1300.0][int(np.argmax(r["score"][:3]))],
        "open": False,
        "peak_timestamp": first["peak_timestamp"],
    }
    assert second["open"] is True and second["start"] == iso(t + 360)
    stream = server.get("/streams/episodes").json()
    assert stream["anomalies"] == len(found)
    assert stream["last_anomaly"] == iso(t + 480) and stream["open_anomaly"] is True
    # since filters on the start; paging goes on from the cursor.
    since = server.get(
        "/streams/episodes/anomalies", params={"since": iso(t + 120)}
    ).json()
    assert since["anomalies"] == [second]
    page = server.get(
        "/streams/episodes/anomalies", params={"limit": 1, "since": t}
    ).json()
    assert page["anomalies"] == [first] and page["next"] is not None
    rest = server.get(
        "/streams/episodes/anomalies",
        params={"limit": 1, "since": t, "after": page["next"]},
    ).json()
    assert rest == {"anomalies": [second], "next": None}
    # A normal point closes the open episode.
    batch(server, "episodes", [t + 540], [50.0])
    last = server.get(
        "/streams/episodes/anomalies", params={"since": iso(t + 120)}
    ).json()
    assert last["anomalies"][0]["open"] is False


# -- stats -----------------------------------------------------------------------


def test_healthcheck_and_metrics_count_streams_and_observes(server):
    def metric(text: str, name: str) -> float:
        return next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(name + " ")
        )

    health = server.get("/healthcheck").json()
    text = server.get("/metrics").text
    before = {
        "points": metric(text, "anomalyd_points_observed_total"),
        "episodes": metric(text, "anomalyd_anomaly_episodes_opened_total"),
        "observes": metric(text, "anomalyd_observe_latency_seconds_count"),
        "batches": metric(text, "anomalyd_batch_observe_latency_seconds_count"),
    }
    assert health["streams"] == metric(text, "anomalyd_streams") > 0
    assert set(health["observe_latency_ms"]) >= {"avg", "p95"}
    server.session.put(
        f"{server.url}/streams/stats_s", json={"warmup": 0, "threshold": 0.25}
    )
    ts, xs = noisy(100, seed=8)
    answer = batch(server, "stats_s", ts, xs).json()["anomaly"]
    opened = sum(1 for i, a in enumerate(answer) if a and (i == 0 or not answer[i - 1]))
    for i in range(3):
        server.post(
            "/observe/stats_s", {"timestamp": ts[-1] + 60 * (i + 1), "value": 50.0}
        )
    server.post("/observe/stats_s", {"timestamp": 0, "value": 50.0})  # 409: not timed
    health = server.get("/healthcheck").json()
    text = server.get("/metrics").text
    assert health["streams"] == metric(text, "anomalyd_streams")
    assert metric(text, "anomalyd_points_observed_total") == before["points"] + 103
    assert (
        metric(text, "anomalyd_anomaly_episodes_opened_total")
        >= before["episodes"] + opened
    )
    assert (
        metric(text, "anomalyd_observe_latency_seconds_count") == before["observes"] + 3
    )
    assert (
        metric(text, "anomalyd_batch_observe_latency_seconds_count")
        == before["batches"] + 1
    )
    assert health["observe_latency_ms"]["avg"] > 0
    assert "stats_s" not in text  # no per-stream labels


def test_a_token_guards_every_stream_route(make_server):
    s = make_server(env={"ANOMALYD_API_TOKEN": "tok"})
    auth = {"Authorization": "Bearer tok"}
    calls = [
        ("post", "/observe/g", {"timestamp": T0, "value": 1.0}),
        ("post", "/observe/g/batch", {"timestamps": [T0], "values": [1.0]}),
        ("put", "/streams/g", {}),
        ("get", "/streams/g", None),
        ("get", "/streams", None),
        ("get", "/streams/g/points", None),
        ("get", "/streams/g/anomalies", None),
        ("delete", "/streams/g", None),
    ]
    for method, path, body in calls:
        r = s.session.request(method, s.url + path, json=body)
        assert_error(r, 401, "Authorization")
    for method, path, body in calls:
        r = s.session.request(method, s.url + path, json=body, headers=auth)
        assert r.status_code == 200, (method, path, r.text)
    assert s.get("/healthcheck").json()["streams"] == 0


def test_settings_are_new_streams_defaults_and_a_stream_keeps_its_own(make_server):
    flags = ["--stream-threshold", "0.9", "--stream-warmup", "7"]
    s = make_server(extra=[*flags, "--stream-direction", "lower"])
    assert s.post("/observe/early", {"timestamp": T0, "value": 1.0}).ok
    expected = {"threshold": 0.9, "direction": "lower", "warmup": 7, "labels": {}}
    assert s.get("/streams/early").json()["config"] == expected
    s.stop()
    # Restarted with other defaults: the stream keeps the settings it was made with.
    s = make_server(data_dir=s.data_dir)
    assert s.get("/streams/early").json()["config"] == expected
    assert s.post("/observe/late", {"timestamp": T0, "value": 1.0}).ok
    assert s.get("/streams/late").json()["config"]["threshold"] == 0.51
