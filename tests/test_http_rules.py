"""HTTP rules every route keeps, against a real ``anomalyd serve`` (2 workers):
ids and versions validated whole (no trailing newline), malformed paging parameters,
HEAD on every GET route, and latency histograms that time only answered requests."""

from __future__ import annotations

import socket

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

FIT = {"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]}
POINT = {"timestamp": 2, "value": 3.0}
HTML = {"Accept": "text/html"}


def assert_error(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.request.url, resp.text)
    body = resp.json()
    assert set(body) == {"title", "description"} and body["description"], body
    return body


@pytest.fixture(scope="module")
def fitted(server):
    for series_id in ("abc", "s"):
        assert server.post(f"/fit/{series_id}", FIT).status_code == 200
    return server


# -- ids, versions and cursors are matched whole ------------------------------------


def test_a_trailing_newline_is_refused_on_every_route(fitted):
    s = fitted
    nl = "%0A"
    calls = [
        lambda: s.post(f"/fit/abc{nl}", FIT),
        lambda: s.post(f"/predict/abc{nl}", POINT),
        lambda: s.post(f"/predict/abc{nl}/batch", FIT),
        lambda: s.get(f"/series/abc{nl}"),
        lambda: s.delete(f"/series/abc{nl}"),
        lambda: s.get(f"/plot?series_id=abc{nl}"),
        lambda: s.get(f"/?series_id=abc{nl}", headers=HTML),
        lambda: s.get(f"/series?after=abc{nl}"),
        lambda: s.get(f"/?after=abc{nl}", headers=HTML),
        lambda: s.post(f"/predict/abc?version=1{nl}", POINT),
        lambda: s.post(f"/predict/abc?version=v1{nl}", POINT),
        lambda: s.post(f"/predict/abc/batch?version=1{nl}", FIT),
        lambda: s.get(f"/plot?series_id=abc&version=v1{nl}"),
    ]
    for call in calls:
        body = assert_error(call(), 400)
        assert "series_id" in body["description"] or "version" in body["description"], (
            body
        )
    # Nothing was stored under the id with a newline, and abc itself is untouched.
    listed = [x["series_id"] for x in s.get("/series").json()["series"]]
    assert listed == ["abc", "s"]
    assert s.get("/series/abc").json()["latest"] == "v1"
    # The same ids and versions without the newline are fine.
    assert s.post("/predict/abc?version=1", POINT).status_code == 200
    assert s.get("/series?after=abc").json()["series"][0]["series_id"] == "s"


def test_an_empty_limit_is_a_400_and_the_document_says_so(fitted):
    s = fitted
    body = assert_error(s.get("/series?limit="), 400)
    assert "limit" in body["description"]
    assert_error(s.get("/series?limit=&after=abc"), 400)
    assert_error(s.get("/?limit=", headers=HTML), 400)
    assert s.get("/series").json()["series"]  # absent: the default page
    parameter = next(
        p
        for p in s.get("/openapi.json").json()["paths"]["/series"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("", parameter["schema"])
    jsonschema.validate(100, parameter["schema"])


# -- HEAD ------------------------------------------------------------------------

GET_ROUTES = [
    ("/", {}),
    ("/", HTML),
    ("/?series_id=s", HTML),
    ("/healthcheck", {}),
    ("/metrics", {}),
    ("/openapi.json", {}),
    ("/series", {}),
    ("/series/s", {}),
    ("/plot?series_id=s", {}),
    ("/plot?series_id=s&version=v1", {}),
    ("/plot?series_id=nope", {}),
    ("/series/nope", {}),
]
# Bodies that change from one request to the next (counters, latencies).
LIVE = {"/healthcheck", "/metrics"}


@pytest.mark.parametrize(("path", "headers"), GET_ROUTES)
def test_every_get_route_answers_head_with_the_headers_of_get(fitted, path, headers):
    get = fitted.get(path, headers=headers)
    head = fitted.session.head(fitted.url + path, headers=headers, timeout=60)
    assert head.status_code == get.status_code, head.text
    assert head.content == b""
    ignore = {"date"} | ({"content-length"} if path in LIVE else set())
    assert {
        k.lower(): v for k, v in head.headers.items() if k.lower() not in ignore
    } == {k.lower(): v for k, v in get.headers.items() if k.lower() not in ignore}
    assert int(head.headers["Content-Length"]) > 0
    if path not in LIVE:
        assert int(head.headers["Content-Length"]) == len(get.content)


def test_head_sends_no_body_on_the_wire(fitted):
    """A HEAD answer that carried its body would corrupt the next answer on the same
    keep-alive connection: send HEAD then GET and read both."""
    with socket.create_connection(("127.0.0.1", fitted.port), timeout=30) as sock:
        sock.sendall(b"HEAD /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head
        assert b"content-length: " in head.lower()
        sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: t\r\n\r\n")
        following = sock.recv(65536)
        assert following.startswith(b"HTTP/1.1 200"), following[:200]


def test_the_allow_header_of_a_405_lists_head_where_get_is(fitted):
    for path in ("/healthcheck", "/plot", "/series", "/openapi.json"):
        r = fitted.post(path, {})
        assert_error(r, 405)
        allowed = {m.strip() for m in r.headers["Allow"].split(",")}
        assert {"GET", "HEAD"} <= allowed, (path, allowed)
    # A route without GET has no HEAD either.
    r = fitted.session.head(fitted.url + "/fit/abc", timeout=60)
    assert r.status_code == 405 and "HEAD" not in r.headers["Allow"]
    allowed = fitted.delete("/healthcheck").headers["Allow"]
    assert "HEAD" in allowed


# -- latency histograms time answered requests only ---------------------------------


def scrape(server) -> dict:
    samples = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def count(samples: dict, name: str) -> float:
    return samples[(f"anomalyd_{name}_latency_seconds_count", ())]


def requests_of(samples: dict, route: str, status: int) -> float:
    labels = (("method", "POST"), ("route", route), ("status", str(status)))
    return samples.get(("anomalyd_requests_total", labels), 0.0)


def test_failed_requests_do_not_move_the_latency_figures(make_server):
    s = make_server()
    assert s.post("/fit/t", FIT).status_code == 200
    for _ in range(20):
        assert s.post("/predict/t", POINT).status_code == 200
    assert s.post("/predict/t/batch", FIT).status_code == 200
    before = scrape(s)
    health_before = s.get("/healthcheck").json()

    # A burst of refused requests on every timed route.
    for _ in range(30):
        assert s.post("/predict/nope", POINT).status_code == 404
    for _ in range(10):
        assert s.post("/predict/t?version=v9", POINT).status_code == 404
        assert s.post("/predict/t", {"timestamp": 1}).status_code == 422
        assert (
            s.post("/predict/t/batch", {"timestamps": [1], "values": []}).status_code
            == 422
        )
        assert s.post("/fit/t", {"timestamps": [1], "values": [1.0]}).status_code == 422
        assert s.session.post(s.url + "/fit/t", data=b"{").status_code == 400

    after = scrape(s)
    for name, n in (("inference", 20), ("batch_inference", 1), ("training", 1)):
        assert count(before, name) == count(after, name) == n, name
    health_after = s.get("/healthcheck").json()
    for figure in ("inference_latency_ms", "training_latency_ms"):
        assert health_after[figure] == health_before[figure], figure
    # The request counters still count every one of them.
    assert requests_of(after, "/predict/{series_id}", 404) == 40
    assert requests_of(after, "/predict/{series_id}", 422) == 10
    assert requests_of(after, "/predict/{series_id}/batch", 422) == 10
    assert requests_of(after, "/fit/{series_id}", 422) == 10
    assert requests_of(after, "/fit/{series_id}", 400) == 10
