"""Streams over real HTTP (2 workers): configuration, listing, deletion, points,
episodes, statistics, the token and the settings."""

from __future__ import annotations

import numpy as np
import pytest
from stream_client import HISTORY, T0, assert_error, batch, iso, noisy, server

__all__ = ["server"]  # the module's fixture


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
