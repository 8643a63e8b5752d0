"""The service end to end: a real `anomalyd serve` (gunicorn, 2 workers), real LMDB."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

FIT = {"timestamps": [1694336400, 1694336460, 1694336520], "values": [42.5, 43.1, 41.8]}


def fit_body(values, start=1694336400, **detector):
    body = {
        "timestamps": [start + 60 * i for i in range(len(values))],
        "values": list(values),
    }
    if detector:
        body["detector"] = detector
    return body


def assert_error(resp, status, *words):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"title", "description"}, body
    for word in words:
        assert word in body["description"], (word, body["description"])


# -- the happy paths -----------------------------------------------------------


def test_fit_then_predict_baseline(server):
    r = server.post("/fit/sensor_01", FIT)
    assert r.status_code == 200, r.text
    body = r.json()
    values = np.array(FIT["values"])
    assert body["series_id"] == "sensor_01"
    assert body["version"] == "v1"
    assert body["points_used"] == 3
    model = body["model"]
    assert model["kind"] == "3sigma" and model["k"] == 3.0
    assert model["direction"] == "upper"
    assert model["mean"] == model["center"] == np.mean(values)
    assert model["std"] == model["scale"] == np.std(values)
    assert model["lower"] is None
    assert model["upper"] == np.mean(values) + 3 * np.std(values)

    r = server.post("/predict/sensor_01", {"timestamp": "1694336640", "value": 55.0})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["anomaly"] is True and p["model_version"] == "v1"
    assert p["threshold"] == model["upper"]
    assert p["score"] == pytest.approx((55.0 - np.mean(values)) / np.std(values))
    on_bound = server.post(
        "/predict/sensor_01", {"timestamp": 1, "value": model["upper"]}
    )
    assert on_bound.json()["anomaly"] is False
    iso = server.post(
        "/predict/sensor_01", {"timestamp": "2023-09-10T09:04:00Z", "value": 42.0}
    )
    assert iso.json()["anomaly"] is False


def test_robust_both_and_versions(server):
    values = [10, 11, 9, 10, 12, 8, 10, 50]
    r = server.post(
        "/fit/robust_1", fit_body(values, kind="robust", k=2.0, direction="both")
    )
    assert r.status_code == 200, r.text
    m = r.json()["model"]
    median = np.median(values)
    mad = np.median(np.abs(np.array(values) - median))
    assert m["center"] == median and m["scale"] == 1.4826 * mad
    assert m["lower"] == median - 2.0 * 1.4826 * mad
    assert m["upper"] == median + 2.0 * 1.4826 * mad
    low = server.post("/predict/robust_1", {"timestamp": 5, "value": -100}).json()
    assert low["anomaly"] is True and low["threshold"] == m["lower"]
    # A second version; the first still answers when asked for.
    assert (
        server.post("/fit/robust_1", fit_body([1, 2, 3, 4])).json()["version"] == "v2"
    )
    for q in ("v1", "1"):
        r = server.post(f"/predict/robust_1?version={q}", {"timestamp": 5, "value": 10})
        assert r.json()["model_version"] == "v1"
    assert (
        server.post("/predict/robust_1", {"timestamp": 5, "value": 1}).json()[
            "model_version"
        ]
        == "v2"
    )


def test_unsorted_timestamps_are_accepted_and_batch_predicts_in_order(server):
    body = {"timestamps": [30, 10, 20, 40], "values": [3.0, 1.0, 2.0, 4.0]}
    assert server.post("/fit/unsorted", body).status_code == 200
    r = server.post(
        "/predict/unsorted/batch",
        {"timestamps": [1, 2, 3], "values": [100.0, 2.5, -100.0]},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == "v1"
    assert out["anomaly"] == [True, False, False]
    mean, std = np.mean([1, 2, 3, 4]), np.std([1, 2, 3, 4])
    assert out["score"] == pytest.approx([(v - mean) / std for v in (100, 2.5, -100)])


def test_series_listing_paging_detail_and_delete(server):
    ids = [f"page.{i:02d}" for i in range(7)]
    for sid in ids:
        assert server.post(f"/fit/{sid}", FIT).status_code == 200
    seen, after = [], None
    while True:
        params = {"limit": 3} | ({"after": after} if after else {})
        page = server.get("/series", params=params).json()
        seen += [s["series_id"] for s in page["series"]]
        assert all(
            s["latest"] == "v1" and s["versions"] == 1
            for s in page["series"]
            if s["series_id"].startswith("page.")
        )
        after = page["next"]
        if after is None:
            break
    assert [s for s in seen if s.startswith("page.")] == ids
    assert seen == sorted(seen)

    server.post("/fit/page.00", FIT)
    detail = server.get("/series/page.00").json()
    assert detail["latest"] == "v2"
    assert [v["version"] for v in detail["versions"]] == ["v1", "v2"]
    assert detail["versions"][0]["points_used"] == 3
    assert detail["versions"][0]["created_at"].endswith("Z")
    assert detail["versions"][0]["model"]["mean"] == np.mean(FIT["values"])

    r = server.delete("/series/page.00")
    assert r.json() == {"series_id": "page.00", "deleted_versions": 2}
    assert_error(server.get("/series/page.00"), 404, "page.00")
    assert_error(server.post("/predict/page.00", {"timestamp": 1, "value": 1}), 404)
    assert_error(server.delete("/series/page.00"), 404)
    listed = server.get("/series", params={"limit": 1000}).json()["series"]
    assert "page.00" not in [s["series_id"] for s in listed]
    # The version counter survives: a refit continues from v3, never reusing v1/v2.
    assert server.post("/fit/page.00", FIT).json()["version"] == "v3"
    assert_error(
        server.post("/predict/page.00?version=v1", {"timestamp": 1, "value": 1}),
        404,
        "v1",
    )
    assert server.get("/series/page.00").json()["versions"][0]["version"] == "v3"


# -- every error of the contract, in the one error shape --------------------------


@pytest.mark.parametrize(
    "body, words",
    [
        (b"", ["not valid JSON"]),
        (b"{", ["not valid JSON"]),
        (b'{"timestamps": [1, 2, 3], "values": [1, NaN, 3]}', ["not valid JSON"]),
    ],
)
def test_fit_400_not_json(server, body, words):
    r = server.session.post(server.url + "/fit/bad", data=body)
    assert_error(r, 400, *words)


@pytest.mark.parametrize(
    "body, words",
    [
        ({"timestamps": [1, 2, 3], "values": [1, "x", 3]}, ["$.values[1]"]),
        ({"timestamps": [1, 2, 3]}, ["values"]),
        ({"timestamps": [1, 2, 3], "values": [1, 2, 3], "foo": 1}, ["foo"]),
        ({"timestamps": [1, 2], "values": [1, 2, 3]}, ["same length"]),
        ({"timestamps": [1, 2], "values": [1, 2]}, ["at least 3 (min_points)"]),
        ({"timestamps": [1, 2, 3], "values": [4, 4, 4]}, ["standard deviation is 0"]),
        ({"timestamps": [1, -2, 3], "values": [1, 2, 3]}, ["$.timestamps[1]"]),
        (
            {"timestamps": [1, 2, 3], "values": [1, 2, 3], "detector": {"k": 0}},
            ["$.detector.k"],
        ),
        (
            {
                "timestamps": [1, 2, 3],
                "values": [1, 2, 3],
                "detector": {"kind": "lstm"},
            },
            ["$.detector.kind"],
        ),
        (
            {
                "timestamps": [1, 2, 3],
                "values": [1, 2, 3],
                "detector": {"direction": "up"},
            },
            ["$.detector.direction"],
        ),
        (
            {
                "timestamps": [1, 2, 3, 4],
                "values": [5, 5, 5, 9],
                "detector": {"kind": "robust"},
            },
            ["median absolute deviation"],
        ),
    ],
)
def test_fit_422(server, body, words):
    assert_error(server.post("/fit/bad", body), 422, *words)


def test_fit_422_non_finite(server):
    r = server.session.post(
        server.url + "/fit/bad",
        data=b'{"timestamps": [1, 2, 3], "values": [1, 1e999, 3]}',
    )
    assert_error(r, 422, "$.values[1]")
    # Nothing was stored by any refused fit.
    assert_error(server.get("/series/bad"), 404)


def test_bad_series_id_and_version(server):
    assert server.post("/fit/okid", FIT).status_code == 200
    assert_error(server.post("/fit/" + "a" * 201, FIT), 400, "series_id")
    assert_error(server.post("/fit/bad%20id", FIT), 400, "series_id")
    for q in ("abc", "v", "-1", "", "v0", "0", "1.5"):
        r = server.post(f"/predict/okid?version={q}", {"timestamp": 1, "value": 1})
        assert_error(r, 400, "version")
    assert_error(
        server.post("/predict/okid?version=v99", {"timestamp": 1, "value": 1}),
        404,
        "v99",
    )
    assert_error(
        server.post("/predict/nope", {"timestamp": 1, "value": 1}), 404, "nope"
    )
    assert_error(
        server.post("/predict/nope/batch", {"timestamps": [1], "values": [1]}),
        404,
        "nope",
    )


def test_predict_errors(server):
    server.post("/fit/perr", FIT)
    assert_error(server.session.post(server.url + "/predict/perr", data=b"x"), 400)
    assert_error(server.post("/predict/perr", {"timestamp": 1}), 422, "value")
    assert_error(
        server.post("/predict/perr", {"timestamp": 1, "value": "hot"}), 422, "$.value"
    )
    assert_error(
        server.post("/predict/perr", {"timestamp": "soon", "value": 1}),
        422,
        "$.timestamp",
    )
    r = server.session.post(
        server.url + "/predict/perr", data=b'{"timestamp": 1, "value": 1e999}'
    )
    assert_error(r, 422, "$.value")
    assert_error(
        server.post("/predict/perr/batch", {"timestamps": [1], "values": [1, 2]}),
        422,
        "same length",
    )


def test_405_404_and_limits(server):
    r = server.get("/fit/x")
    assert_error(r, 405, "method")
    assert "POST" in r.headers["Allow"]
    assert_error(server.session.put(server.url + "/series"), 405)
    assert_error(server.get("/no/such/route"), 404, "route")
    assert_error(server.get("/series", params={"limit": 0}), 400, "limit")
    assert_error(server.get("/series", params={"limit": "x"}), 400, "limit")
    assert_error(server.get("/series", params={"after": "bad id"}), 400, "series_id")


def test_413_body_too_large(make_server):
    s = make_server(extra=["--max-body-bytes", "2048"])
    big = fit_body(range(1000))
    assert_error(s.post("/fit/big", big), 413, "max_body_bytes")

    def chunks():
        yield b'{"timestamps": ['
        for i in range(2000):
            yield b"1,"
        yield b'1], "values": [1, 2]}'

    r = requests.post(s.url + "/fit/big", data=chunks(), timeout=30)
    assert_error(r, 413, "max_body_bytes")
    assert_error(s.get("/series/big"), 404)
    assert s.get("/healthcheck").status_code == 200


def test_million_point_fit_under_default_limit(server):
    n = 1_000_000
    rng = np.random.default_rng(3)
    values = rng.normal(70, 5, n)
    ts = np.arange(1_600_000_000, 1_600_000_000 + 60 * n, 60)
    body = (
        b'{"timestamps":['
        + ",".join(map(str, ts.tolist())).encode()
        + b'],"values":['
        + ",".join(map(repr, values.tolist())).encode()
        + b"]}"
    )
    assert len(body) < 64 * 1024 * 1024
    r = server.session.post(server.url + "/fit/million", data=body, timeout=120)
    assert r.status_code == 200, r.text
    m = r.json()["model"]
    assert r.json()["points_used"] == n
    assert m["mean"] == np.mean(values) and m["std"] == np.std(values)


# -- concurrency, freshness, durability ---------------------------------------------


def test_40_concurrent_fits_get_v1_to_v40(server):
    def one(i):
        with requests.Session() as s:  # own connection: spread over both workers
            r = s.post(
                server.url + "/fit/race", json=fit_body([1, 2, 3 + i]), timeout=60
            )
            assert r.status_code == 200, r.text
            return r.json()["version"]

    with ThreadPoolExecutor(40) as pool:
        versions = list(pool.map(one, range(40)))
    assert sorted(versions, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 41)]


def test_predict_after_fit_sees_new_version_on_any_worker(server):
    fitter, predictors = requests.Session(), [requests.Session() for _ in range(4)]
    for i in range(1, 101):
        r = fitter.post(
            server.url + "/fit/fresh", json=fit_body([1, 2, 3 + i]), timeout=60
        )
        assert r.json()["version"] == f"v{i}"
        p = predictors[i % 4].post(
            server.url + "/predict/fresh", json={"timestamp": 1, "value": 1}, timeout=60
        )
        assert p.json()["model_version"] == f"v{i}"


def test_sigkill_loses_nothing_acknowledged(make_server, tmp_path):
    s = make_server()
    acknowledged: dict[tuple[str, str], dict] = {}
    stop = threading.Event()

    def storm(k):
        rng = np.random.default_rng(k)
        with requests.Session() as sess:
            while not stop.is_set():
                sid = f"dur{k}.{rng.integers(3)}"
                try:
                    r = sess.post(
                        s.url + f"/fit/{sid}",
                        json=fit_body(rng.normal(0, 1, 20).tolist()),
                        timeout=10,
                    )
                except requests.RequestException:
                    return
                if r.status_code == 200:
                    acknowledged[(sid, r.json()["version"])] = r.json()["model"]

    threads = [threading.Thread(target=storm, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    while len(acknowledged) < 60:
        threading.Event().wait(0.05)
    s.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert acknowledged

    again = make_server(data_dir=s.data_dir)
    for (sid, version), model in acknowledged.items():
        got = {
            v["version"]: v["model"]
            for v in again.get(f"/series/{sid}").json()["versions"]
        }
        assert got[version] == model


def test_map_full_gives_507_and_predicts_still_answer(make_server):
    s = make_server(extra=["--map-size", str(1024 * 1024)])
    assert s.post("/fit/small", FIT).status_code == 200
    big = fit_body(np.random.default_rng(1).normal(0, 1, 100_000).tolist())
    r = s.post("/fit/huge", big)
    assert_error(r, 507, "map_size")
    assert s.post("/predict/small", {"timestamp": 1, "value": 1}).status_code == 200
    assert s.get("/healthcheck").json()["series_trained"] == 1
    assert_error(s.get("/series/huge"), 404)


def test_non_ascii_digits_are_a_400_not_a_500(server):
    # "²".isdigit() is True in Python, int("²") is not.
    assert_error(server.get("/series", params={"limit": "²"}), 400, "limit")
    server.post("/fit/digits", FIT)
    assert_error(
        server.post("/predict/digits", {"timestamp": "²", "value": 1}),
        422,
        "$.timestamp",
    )
