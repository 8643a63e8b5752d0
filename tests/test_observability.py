"""/healthcheck, /metrics and /openapi.json against a real ``anomalyd serve`` (2 workers)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest
import requests
from conftest import Server
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FIT_BODY = {"timestamps": [1, 2, 3, 4], "values": [10.0, 11.0, 9.5, 10.5]}
POINT = {"timestamp": 5, "value": 10.2}


def scrape(server: Server) -> dict:
    """/metrics parsed by prometheus_client: {(sample name, sorted labels): value}."""
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == METRICS_CONTENT_TYPE
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def predicts_counted(samples: dict) -> float:
    key = (
        "anomalyd_requests_total",
        (("method", "POST"), ("route", "/predict/{series_id}"), ("status", "200")),
    )
    return samples.get(key, 0.0)


def per_worker(samples: dict) -> dict[str, float]:
    return {
        dict(labels)["worker"]: value
        for (name, labels), value in samples.items()
        if name == "anomalyd_worker_requests_total"
    }


def predict_on_new_connections(server: Server, series_id: str, n: int) -> None:
    """``n`` predicts, each on its own connection, four at a time: both workers accept."""

    def one(_: int) -> None:
        response = requests.post(
            f"{server.url}/predict/{series_id}",
            json=POINT,
            headers={"Connection": "close"},
            timeout=60,
        )
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))


def predict_until_both_workers_served(server: Server, series_id: str) -> int:
    """Predict in rounds until each worker slot has answered some; return how many.

    Between two scrapes the only other request is the first scrape itself, so a slot
    that grew by 2 or more answered at least one predict.
    """
    sent = 0
    grown = {"0": 0.0, "1": 0.0}
    for _ in range(40):
        before = per_worker(scrape(server))
        predict_on_new_connections(server, series_id, 25)
        sent += 25
        after = per_worker(scrape(server))
        for slot, most in grown.items():
            grown[slot] = max(most, after.get(slot, 0) - before.get(slot, 0))
        if all(g >= 2 for g in grown.values()):
            return sent
    pytest.fail(f"the predicts never reached both workers: {grown}")


def wait_for_respawn(server: Server, victim: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == server.workers and victim not in pids:
            return
        time.sleep(0.1)
    pytest.fail(f"worker {victim} was not replaced: {server.worker_pids()}")


def test_every_worker_counts_and_a_killed_worker_loses_nothing(tmp_path, make_server):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    server = make_server(env={"RUNTIME_DIRECTORY": str(run_dir)})
    regions = list(run_dir.glob("stats-*.bin"))
    assert len(regions) == 1

    health = server.get("/healthcheck").json()
    zero = {"avg": 0.0, "p95": 0.0, "p50": 0.0, "p99": 0.0}
    assert health == {
        "status": "ok",
        "series_trained": 0,
        "inference_latency_ms": zero,
        "training_latency_ms": zero,
        "streams": 0,
        "observe_latency_ms": zero,
    }

    for series_id in ("a", "b", "a"):
        assert server.post(f"/fit/{series_id}", FIT_BODY).status_code == 200
    n = predict_until_both_workers_served(server, "a")

    samples = scrape(server)
    assert predicts_counted(samples) == n
    assert samples[("anomalyd_inference_latency_seconds_count", ())] == n
    assert samples[("anomalyd_training_latency_seconds_count", ())] == 3
    assert samples[("anomalyd_series_trained", ())] == 2
    assert samples[("anomalyd_worker_restarts_total", ())] == 0
    inference_sum = samples[("anomalyd_inference_latency_seconds_sum", ())]

    # Whichever worker answers, healthcheck reads the same totals of both workers.
    answers = [
        requests.get(f"{server.url}/healthcheck", timeout=60).json() for _ in range(8)
    ]
    assert all(a == answers[0] for a in answers)
    health = answers[0]
    assert health["series_trained"] == 2
    inference = health["inference_latency_ms"]
    assert inference["avg"] == pytest.approx(inference_sum / n * 1000, abs=2e-6)
    assert 0 < inference["avg"] and 0 < inference["p95"]
    assert health["training_latency_ms"]["p95"] > 0

    before_kill = per_worker(samples)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for_respawn(server, victim)

    samples = scrape(server)
    assert predicts_counted(samples) == n
    assert samples[("anomalyd_inference_latency_seconds_count", ())] == n
    assert samples[("anomalyd_inference_latency_seconds_sum", ())] == inference_sum
    assert samples[("anomalyd_worker_restarts_total", ())] == 1
    assert all(
        per_worker(samples)[slot] >= count for slot, count in before_kill.items()
    )

    # The new worker takes over the slot it replaces: counting goes on there, and no
    # third slot appears.
    m = predict_until_both_workers_served(server, "a")
    samples = scrape(server)
    assert predicts_counted(samples) == n + m
    assert samples[("anomalyd_inference_latency_seconds_count", ())] == n + m
    assert set(per_worker(samples)) == {"0", "1"}
    assert samples[("anomalyd_worker_restarts_total", ())] == 1

    assert server.stop() == 0
    assert list(run_dir.glob("stats-*.bin")) == []


def test_metrics_are_valid_prometheus_text(make_server):
    server = make_server()
    assert server.post("/fit/m", FIT_BODY).status_code == 200
    assert server.post("/predict/m", POINT).status_code == 200
    assert server.post("/predict/m/batch", FIT_BODY).status_code == 200
    assert server.post("/predict/nope", POINT).status_code == 404
    response = server.get("/metrics")
    assert response.headers["Content-Type"] == METRICS_CONTENT_TYPE
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert all(name.startswith("anomalyd_") for name in families)
    assert families["anomalyd_requests"].type == "counter"
    labels = {
        tuple(sorted(s.labels.items())) for s in families["anomalyd_requests"].samples
    }
    assert (
        ("method", "POST"),
        ("route", "/predict/{series_id}"),
        ("status", "404"),
    ) in labels
    # Only answered (2xx) requests are timed: the 404 is counted, not timed.
    expected = {"inference": 1, "batch_inference": 1, "training": 1}
    for name, n in expected.items():
        family = families[f"anomalyd_{name}_latency_seconds"]
        assert family.type == "histogram"
        buckets = [s for s in family.samples if s.name.endswith("_bucket")]
        values = [s.value for s in buckets]
        assert values == sorted(values)
        assert buckets[-1].labels["le"] == "+Inf"
        count = next(s.value for s in family.samples if s.name.endswith("_count"))
        assert values[-1] == count == n
    for gauge in ("anomalyd_series_trained", "anomalyd_store_size_bytes"):
        assert families[gauge].type == "gauge"
        assert families[gauge].samples[0].value > 0
    assert families["anomalyd_worker_restarts"].type == "counter"


# -- /openapi.json ----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory):
    server = Server(
        tmp_path_factory.mktemp("openapi") / "data", extra=["--max-body-bytes", "4096"]
    ).start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def document(small_body_server):
    response = small_body_server.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


CONTRACT = {
    "/": {"get"},
    "/fit/{series_id}": {"post"},
    "/predict/{series_id}": {"post"},
    "/predict/{series_id}/batch": {"post"},
    "/series": {"get"},
    "/series/{series_id}": {"get", "delete"},
    "/healthcheck": {"get"},
    "/metrics": {"get"},
    "/openapi.json": {"get"},
    "/plot": {"get"},
    "/observe/{series_id}": {"post"},
    "/observe/{series_id}/batch": {"post"},
    "/streams": {"get"},
    "/streams/{series_id}": {"put", "get", "delete"},
    "/streams/{series_id}/points": {"get"},
    "/streams/{series_id}/anomalies": {"get"},
    "/alerts": {"get"},
}


def test_openapi_document_is_valid_and_names_every_route(document):
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == {"episode_opened", "episode_resolved"}
    assert {
        path: {m for m in item if m != "parameters"}
        for path, item in document["paths"].items()
    } == CONTRACT
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        **schemes["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    for path in ("/healthcheck", "/metrics"):
        assert document["paths"][path]["get"]["security"] == []
    fit = document["paths"]["/fit/{series_id}"]["post"]
    assert {"200", "400", "413", "422", "507"} <= set(fit["responses"])
    predict = document["paths"]["/predict/{series_id}"]["post"]
    assert {"200", "400", "404", "413", "422"} <= set(predict["responses"])
    version = next(p for p in predict["parameters"] if p["name"] == "version")
    assert version["in"] == "query"
    series_id = document["paths"]["/fit/{series_id}"]["parameters"][0]
    assert series_id["schema"]["pattern"] == "^[A-Za-z0-9._:-]{1,200}$"
    # The request schemas are msgspec's: unknown fields are refused, as the decoder does.
    fit_request = document["components"]["schemas"]["FitRequest"]
    assert fit_request["additionalProperties"] is False
    assert set(fit_request["required"]) == {"timestamps", "values"}


def test_openapi_requires_the_token_only_when_one_is_configured(make_server):
    server = make_server(env={"ANOMALYD_API_TOKEN": "s3cret-token"})
    document = server.get(
        "/openapi.json", headers={"Authorization": "Bearer s3cret-token"}
    ).json()
    validate(document)
    assert document["security"] == [{"bearerAuth": []}]
    assert "401" in document["paths"]["/fit/{series_id}"]["post"]["responses"]
    assert "401" not in document["paths"]["/healthcheck"]["get"]["responses"]


def _media_type(value: str) -> str:
    return value.split(";")[0].strip().lower()


def check_against_document(document: dict, path: str, method: str, response) -> None:
    """The status is documented for the operation and the body fits its schema."""
    operation = document["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (path, method, status, response.text)
    documented = operation["responses"][status]
    content = documented.get("content")
    if content is None:
        assert response.content == b""
        return
    given = response.headers["Content-Type"]
    matching = [m for m in content if _media_type(m) == _media_type(given)]
    assert matching, (path, method, status, given, list(content))
    if path == "/metrics":
        assert given == matching[0]
    if _media_type(given) == "application/json":
        schema = {
            **content[matching[0]]["schema"],
            "components": document["components"],
        }
        jsonschema.validate(
            response.json(), schema, cls=jsonschema.Draft202012Validator
        )


def test_real_responses_match_the_document(small_body_server, document):
    s = small_body_server
    big = {"timestamps": list(range(600)), "values": [1.5] * 600}
    calls = [
        ("/fit/{series_id}", "post", lambda: s.post("/fit/doc", FIT_BODY)),
        (
            "/fit/{series_id}",
            "post",
            lambda: s.post(
                "/fit/doc",
                {**FIT_BODY, "detector": {"kind": "robust", "direction": "both"}},
            ),
        ),
        (
            "/fit/{series_id}",
            "post",
            lambda: s.session.post(s.url + "/fit/doc", data=b"{nope"),
        ),
        (
            "/fit/{series_id}",
            "post",
            lambda: s.post("/fit/doc", {"timestamps": [1], "values": ["x"]}),
        ),
        (
            "/fit/{series_id}",
            "post",
            lambda: s.post("/fit/doc", {**FIT_BODY, "extra": 1}),
        ),
        ("/fit/{series_id}", "post", lambda: s.post("/fit/doc", big)),
        ("/fit/{series_id}", "post", lambda: s.post("/fit/bad!id", FIT_BODY)),
        ("/predict/{series_id}", "post", lambda: s.post("/predict/doc", POINT)),
        (
            "/predict/{series_id}",
            "post",
            lambda: s.post(
                "/predict/doc?version=v1",
                {"timestamp": "2024-01-01T00:00:00Z", "value": 99.0},
            ),
        ),
        (
            "/predict/{series_id}",
            "post",
            lambda: s.post("/predict/doc?version=abc", POINT),
        ),
        (
            "/predict/{series_id}",
            "post",
            lambda: s.post("/predict/doc?version=v99", POINT),
        ),
        ("/predict/{series_id}", "post", lambda: s.post("/predict/unknown", POINT)),
        (
            "/predict/{series_id}",
            "post",
            lambda: s.post("/predict/doc", {"value": 1.0}),
        ),
        (
            "/predict/{series_id}/batch",
            "post",
            lambda: s.post("/predict/doc/batch", FIT_BODY),
        ),
        (
            "/predict/{series_id}/batch",
            "post",
            lambda: s.post("/predict/doc/batch", {"timestamps": [1], "values": []}),
        ),
        ("/series", "get", lambda: s.get("/series?limit=1")),
        ("/series", "get", lambda: s.get("/series?limit=0")),
        ("/series/{series_id}", "get", lambda: s.get("/series/doc")),
        ("/series/{series_id}", "get", lambda: s.get("/series/unknown")),
        ("/healthcheck", "get", lambda: s.get("/healthcheck")),
        ("/metrics", "get", lambda: s.get("/metrics")),
        ("/openapi.json", "get", lambda: s.get("/openapi.json")),
        ("/", "get", lambda: s.get("/", headers={"Accept": "application/json"})),
        ("/", "get", lambda: s.get("/", headers={"Accept": "text/html"})),
        ("/plot", "get", lambda: s.get("/plot?series_id=doc")),
        ("/plot", "get", lambda: s.get("/plot")),
        ("/plot", "get", lambda: s.get("/plot?series_id=unknown")),
        ("/series/{series_id}", "delete", lambda: s.delete("/series/doc")),
        ("/series/{series_id}", "delete", lambda: s.delete("/series/doc")),
    ]
    seen = set()
    for path, method, call in calls:
        response = call()
        check_against_document(document, path, method, response)
        seen.add(response.status_code)
    assert {200, 400, 404, 413, 422} <= seen

    # A method a route does not have: 405, with the same error body.
    response = s.post("/healthcheck", {})
    assert response.status_code == 405
    jsonschema.validate(
        response.json(),
        {**document["components"]["schemas"]["ErrorBody"]},
        cls=jsonschema.Draft202012Validator,
    )
