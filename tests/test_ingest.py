"""Bodies as data really comes, against a real `anomalyd serve` (2 workers, real LMDB):
every timestamp form, CSV, gzip, media types, the all-equal contract rule, plots of
far-off bounds, and what a large body costs a worker in memory."""

from __future__ import annotations

import csv
import gzip
import json
import socket
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from test_service import assert_error

from anomalyd import ingest, schemas, timestamps
from anomalyd.api import body as body_module
from anomalyd.api.fit import fit_columns
from anomalyd.api.large import LargeRequests
from anomalyd.api.predict import StreamedAnswer
from anomalyd.store import Store

SAMPLE = Path(__file__).parent / "sample" / "machine_temperature_system_failure.csv"
CSV_HEADERS = {"Content-Type": "text/csv"}


def post_raw(server, path, data, **headers) -> requests.Response:
    return server.session.post(
        server.url + path, data=data, headers=headers, timeout=120
    )


def stored(server, series_id, version):
    """A version's training data, read from the service's LMDB directory."""
    store = Store(str(server.data_dir), map_size=1 << 30)
    try:
        return store.training_data(series_id, version)
    finally:
        store.close()


# -- the contract: all-equal values ----------------------------------------------


@pytest.mark.parametrize(
    "values, detector, words",
    [
        ([0.1, 0.1, 0.1], {}, ["all equal", "0.1", "standard deviation is 0"]),
        ([0.3] * 7, {"direction": "both"}, ["all equal"]),
        (
            [0.1, 0.1, 0.1, 0.2],
            {"kind": "robust"},
            ["median absolute deviation of 0", "3 of 4"],
        ),
    ],
)
def test_all_equal_values_are_refused(server, values, detector, words):
    # numpy.std([0.1, 0.1, 0.1]) is 1.39e-17: this was a 200 with that std.
    body = {"timestamps": list(range(1, len(values) + 1)), "values": values}
    if detector:
        body["detector"] = detector
    assert_error(server.post("/fit/equal", body), 422, *words)
    assert_error(server.get("/series/equal"), 404)


def test_robust_with_half_equal_to_the_median_is_accepted(server):
    body = {
        "timestamps": [1, 2, 3, 4],
        "values": [5, 5, 9, 9],
        "detector": {"kind": "robust"},
    }
    r = server.post("/fit/halfequal", body)
    assert r.status_code == 200, r.text
    assert r.json()["model"]["mad"] == 2.0


# -- /plot of any accepted model -----------------------------------------------


@pytest.mark.parametrize(
    "series_id, values, detector",
    [
        ("farbound", [1.0, 2.0, 4.0, 3.0], {"k": 1e200, "direction": "both"}),
        ("hugevalues", [1e300, -1e300, 5e299, 2e300], {"kind": "robust"}),
        ("tinyvalues", [1e-320, 3e-320, 2e-320, 5e-320], {"kind": "robust"}),
    ],
)
def test_plot_of_any_accepted_model(server, series_id, values, detector):
    body = {"timestamps": [1, 2, 3, 4], "values": values, "detector": detector}
    fitted = server.post(f"/fit/{series_id}", body)
    assert fitted.status_code == 200, fitted.text
    r = server.get("/plot", params={"series_id": series_id})
    assert r.status_code == 200, r.text  # pygal overflowed: 500
    assert r.headers["Content-Type"].startswith("image/svg+xml")
    if detector.get("k") == 1e200:
        assert b"off the chart" in r.content
        upper = fitted.json()["model"]["upper"]
        assert f"upper bound ({upper:.6g}, off the chart)".encode() in r.content


# -- every timestamp form ---------------------------------------------------------

FORMS = [
    1694336400,  # integer seconds
    1694336460.75,  # float seconds, as time.time() gives: the fraction is cut
    "1694336520",  # a string of digits
    "1694336580.5",  # ... with a fraction
    "2023-09-10T09:04:00Z",  # ISO-8601 with Z
    "2023-09-10T11:05:00+02:00",  # with an offset
    "2023-09-10 09:06:00",  # NAB's form, no offset: UTC
    "2023-09-10T09:07:00.999",  # a fraction of a second, cut
]
SECONDS = [1694336400 + 60 * i for i in range(len(FORMS))]


def test_every_timestamp_form_in_one_fit_and_batch(server):
    values = [10.0, 11.0, 9.0, 10.5, 12.0, 8.0, 10.0, 11.5]
    r = server.post("/fit/forms", {"timestamps": FORMS, "values": values})
    assert r.status_code == 200, r.text
    _, _, timestamps, stored_values = stored(server, "forms", 1)
    assert timestamps.tolist() == SECONDS
    assert stored_values.tolist() == values
    r = server.post("/predict/forms/batch", {"timestamps": FORMS, "values": values})
    assert r.status_code == 200, r.text
    assert len(r.json()["score"]) == len(FORMS)
    for form in FORMS:
        r = server.post("/predict/forms", {"timestamp": form, "value": 10.0})
        assert r.status_code == 200, (form, r.text)


@pytest.mark.parametrize(
    "timestamps, words",
    [
        ([1, 2, "yesterday"], ["$.timestamps[2]", "ISO-8601", "yesterday"]),
        ([1, -2.5, 3], ["$.timestamps[1]", ">= 0"]),
        ([1, 2, "0001-01-01T00:00:00"], ["$.timestamps[2]", "between 0 and"]),
        ([1, 2, 253402300800.5], ["$.timestamps[2]"]),
        ([1, 2, "12,5"], ["$.timestamps[2]", "'12,5'"]),
        ([1, True, 3], ["$.timestamps[1]", "got `bool`"]),
    ],
)
def test_bad_timestamps_are_named(server, timestamps, words):
    body = {"timestamps": timestamps, "values": [1.0, 2.0, 4.0]}
    assert_error(server.post("/fit/badtime", body), 422, *words)
    assert_error(server.post("/predict/forms/batch", body), 422, *words)


def test_errors_far_into_a_large_body_name_the_global_index(server):
    n = 300_000  # several pieces of ingest.CHUNK_BYTES
    values = [1.5] * n
    values[123_456] = "hot"
    body = json.dumps({"timestamps": list(range(n)), "values": values}).encode()
    assert len(body) > 4 * ingest.CHUNK_BYTES
    r = post_raw(server, "/fit/far", body)
    assert_error(r, 422, "Expected `float`, got `str` - at `$.values[123456]`")
    values[123_456] = 1e999
    body = json.dumps({"timestamps": list(range(n)), "values": values}).encode()
    body = body.replace(b"Infinity", b"1e999")
    r = post_raw(server, "/predict/forms/batch", body)
    assert_error(r, 422, "Number out of range - at `$.values[123456]`")


# -- CSV bodies -------------------------------------------------------------------


def nab_sample() -> tuple[list[int], list[float]]:
    with SAMPLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = [
        int(np.datetime64(row["timestamp"].replace(" ", "T"), "s").astype(np.int64))
        for row in rows
    ]
    return seconds, [float(row["value"]) for row in rows]


def test_csv_fit_of_the_nab_sample_equals_the_json_fit(server):
    query = "?kind=robust&k=4&direction=both"
    r = post_raw(server, "/fit/nabcsv" + query, SAMPLE.read_bytes(), **CSV_HEADERS)
    assert r.status_code == 200, r.text
    seconds, values = nab_sample()
    body = {"timestamps": seconds, "values": values}
    body["detector"] = {"kind": "robust", "k": 4, "direction": "both"}
    as_json = server.post("/fit/nabjson", body)
    assert as_json.status_code == 200
    assert r.json()["model"] == as_json.json()["model"]
    assert r.json()["points_used"] == len(values) == 22695
    _, _, timestamps, _ = stored(server, "nabcsv", 1)
    assert timestamps.tolist() == sorted(seconds)
    # A batch in CSV answers as the same points in JSON.
    batch = post_raw(
        server, "/predict/nabcsv/batch", SAMPLE.read_bytes(), **CSV_HEADERS
    )
    assert batch.status_code == 200, batch.text
    same = server.post(
        "/predict/nabcsv/batch", {"timestamps": seconds, "values": values}
    )
    assert batch.json() == same.json()
    assert any(batch.json()["anomaly"])


def test_csv_forms_defaults_and_errors(server):
    text = (
        "\ufeffValue, Timestamp\r\n"  # any order and case, a spreadsheet's BOM
        "1.5,1694336400\r\n\r\n"  # a blank line is skipped
        '2.5,"2023-09-10 09:01:00"\r\n'
        "4.0,1694336520.9\r\n"
    )
    r = post_raw(server, "/fit/csvforms", text.encode(), **CSV_HEADERS)
    assert r.status_code == 200, r.text
    assert r.json()["model"]["kind"] == "3sigma"  # no query: the default detector
    _, _, timestamps, _ = stored(server, "csvforms", 1)
    assert timestamps.tolist() == [1694336400, 1694336460, 1694336520]
    bad = [
        (b"", 422, ["header"]),
        (b"time,value\n1,2\n", 422, ["line 1", "header"]),
        (b"timestamp,value\n1,2\n2,3\n3,hot\n", 422, ["line 4", "column value", "hot"]),
        (b"timestamp,value\n1,2\n2,nan\n3,4\n", 422, ["line 3", "finite"]),
        (b"timestamp,value\n1,2\nsoon,3\n3,4\n", 422, ["line 3, column timestamp"]),
        (b"timestamp,value\n1,2\n2,3,4\n3,4\n", 422, ["line 3", "3 fields"]),
        (b"timestamp,value\n1,2\n", 422, ["1 rows", "at least 3 (min_points)"]),
        (b"timestamp,value\n1,2\n2,\xff\n", 400, ["UTF-8", "byte 22"]),
    ]
    for data, status, words in bad:
        assert_error(
            post_raw(server, "/fit/csvbad", data, **CSV_HEADERS), status, *words
        )
    assert_error(server.get("/series/csvbad"), 404)


def test_csv_detector_from_the_query(server):
    data = b"timestamp,value\n1,1\n2,2\n3,4\n"
    r = post_raw(server, "/fit/csvq?kind=robust&k=2.5", data, **CSV_HEADERS)
    assert r.status_code == 200, r.text
    assert (r.json()["model"]["kind"], r.json()["model"]["k"]) == ("robust", 2.5)
    for query, words in [
        ("?k=abc", ["query parameter k"]),
        ("?kind=lstm", ["query parameter kind"]),
        ("?direction=up", ["query parameter direction"]),
    ]:
        assert_error(
            post_raw(server, "/fit/csvq" + query, data, **CSV_HEADERS), 422, *words
        )
    assert_error(post_raw(server, "/fit/csvq?k=0", data, **CSV_HEADERS), 422, "k")
    # A JSON body gives its detector in the body, never in the query.
    r = server.post("/fit/csvq?k=2", {"timestamps": [1, 2, 3], "values": [1, 2, 4]})
    assert_error(r, 400, "CSV")


def test_csv_body_limit_applies(make_server):
    s = make_server(extra=["--max-body-bytes", "2048"])
    data = b"timestamp,value\n" + b"".join(b"%d,%d\n" % (i, i % 7) for i in range(500))
    assert_error(post_raw(s, "/fit/big", data, **CSV_HEADERS), 413, "max_body_bytes")


# -- media types --------------------------------------------------------------


def test_media_types(server):
    body = b'{"timestamps": [1, 2, 3], "values": [1, 2, 4]}'
    # curl -d sends application/x-www-form-urlencoded: the README's examples use it.
    for content_type in (
        None,
        "application/x-www-form-urlencoded",
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.example+json",
    ):
        headers = {"Content-Type": content_type} if content_type else {}
        r = requests.post(
            server.url + "/fit/media", data=body, headers=headers, timeout=30
        )
        assert r.status_code == 200, (content_type, r.text)
    for path in ("/fit/media", "/predict/media/batch", "/predict/media"):
        r = post_raw(server, path, body, **{"Content-Type": "application/xml"})
        assert_error(r, 415, "application/xml", "application/json")
    # CSV only where a body has columns.
    r = post_raw(server, "/predict/media", b"timestamp,value\n1,2\n", **CSV_HEADERS)
    assert_error(r, 415, "text/csv")
    r = post_raw(
        server,
        "/fit/media",
        b"timestamp,value\n1,2\n",
        **{"Content-Type": "text/csv; charset=latin-1"},
    )
    assert_error(r, 415, "UTF-8")


# -- gzip ---------------------------------------------------------------------------


def test_gzip_bodies_on_every_post(server):
    body = {"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]}
    gz = {"Content-Encoding": "gzip"}
    r = post_raw(server, "/fit/gz", gzip.compress(json.dumps(body).encode()), **gz)
    assert r.status_code == 200, r.text
    point = gzip.compress(b'{"timestamp": 5, "value": 100}')
    assert post_raw(server, "/predict/gz", point, **gz).json()["anomaly"] is True
    r = post_raw(
        server, "/predict/gz/batch", gzip.compress(json.dumps(body).encode()), **gz
    )
    assert r.json()["anomaly"] == [False, False, False]
    data = gzip.compress(SAMPLE.read_bytes())
    r = post_raw(server, "/fit/gzcsv", data, **gz, **CSV_HEADERS)
    assert r.status_code == 200 and r.json()["points_used"] == 22695
    # Two gzip members are one body (as gzip -c a b > ab makes).
    two = gzip.compress(b'{"timestamp": 5,') + gzip.compress(b' "value": 1}')
    assert post_raw(server, "/predict/gz", two, **gz).status_code == 200
    assert post_raw(
        server,
        "/predict/gz",
        b'{"timestamp": 5, "value": 1}',
        **{"Content-Encoding": "identity"},
    ).ok


def test_gzip_errors(server):
    server.post("/fit/gzerr", {"timestamps": [1, 2, 3], "values": [1, 2, 4]})
    point = b'{"timestamp": 5, "value": 1}'
    r = post_raw(server, "/predict/gzerr", point, **{"Content-Encoding": "br"})
    assert_error(r, 415, "Content-Encoding", "br", "gzip")
    r = post_raw(server, "/predict/gzerr", point, **{"Content-Encoding": "gzip"})
    assert_error(r, 400, "gzip")
    r = post_raw(
        server,
        "/predict/gzerr",
        gzip.compress(point)[:-12],
        **{"Content-Encoding": "gzip"},
    )
    assert_error(r, 400, "truncated")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_gzip_bomb_is_413_before_it_costs_memory(make_server):
    s = make_server(extra=["--max-body-bytes", str(1 << 20)])
    bomb = gzip.compress(b"\0" * (100 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 200_000
    before = {pid: status_kib(pid, "VmHWM") for pid in s.worker_pids()}
    r = post_raw(s, "/fit/bomb", bomb, **{"Content-Encoding": "gzip"})
    assert_error(r, 413, "max_body_bytes", "decompressed")
    grown = max(status_kib(pid, "VmHWM") - kib for pid, kib in before.items())
    assert grown < 16 * 1024, f"a worker's peak grew by {grown} KiB"
    assert s.get("/healthcheck").status_code == 200


class CountingBudget:
    def __init__(self, limit: int) -> None:
        self.limit, self.held, self.most = limit, 0, 0

    def try_take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        self.most = max(self.most, self.held)
        return True

    def give_back(self, n: int) -> None:
        self.held -= n


def test_decompressed_bytes_are_charged_and_given_back():
    budget = CountingBudget(3 * body_module.STEP)
    body_module.use_budget(budget)
    try:
        out = body_module.gunzip(
            gzip.compress(b"x" * (2 * body_module.STEP + 5)), 1 << 30
        )
        assert budget.held == len(out) == 2 * body_module.STEP + 5
        body_module.release(out)
        assert budget.held == 0
        # Over the budget: 503 with Retry-After, and nothing stays charged.
        with pytest.raises(Exception) as info:
            body_module.gunzip(gzip.compress(b"x" * (4 * body_module.STEP)), 1 << 30)
        assert (
            info.value.status_code == 503 and info.value.headers["Retry-After"] == "1"
        )
        assert budget.held == 0 and budget.most <= budget.limit
        # Past the body limit: 413, nothing stays charged.
        with pytest.raises(Exception) as info:
            body_module.gunzip(gzip.compress(b"x" * 5000), 4096)
        assert info.value.status_code == 413 and budget.held == 0
    finally:
        body_module.use_budget(None)


# -- memory: peak worker memory per body byte ---------------------------------------


def tiny_body(points: int) -> bytes:
    """The worst case per byte: one-digit numbers, 4 bytes of JSON per point."""
    return (
        b'{"timestamps":['
        + b"1," * (points - 1)
        + b'1],"values":['
        + b"1,2," * (points // 2 - 1)
        + b"1,2]}"
    )


def peak_growth(server, path: str, body: bytes) -> tuple[requests.Response, float]:
    """The answer, and the growth of the peak RSS of the worker that served it per
    body byte (a fresh server: each worker's peak is its first request's)."""
    pids = server.worker_pids()
    before = {pid: status_kib(pid, "VmHWM") for pid in pids}
    r = post_raw(server, path, body)
    grown = max(status_kib(pid, "VmHWM") - before[pid] for pid in pids)
    return r, grown * 1024 / len(body)


@pytest.mark.parametrize("kind", ["fit", "batch"])
def test_peak_memory_per_body_byte(make_server, tmp_path, kind):
    points = 4 * 1024 * 1024  # 16 MiB of JSON
    body = tiny_body(points)
    if kind == "batch":
        first = make_server(data_dir=tmp_path / "d")
        first.post("/fit/m", {"timestamps": [1, 2, 3], "values": [1, 2, 4]})
        first.stop()
    s = make_server(data_dir=tmp_path / "d")
    r, per_byte = peak_growth(
        s, "/fit/m" if kind == "fit" else "/predict/m/batch", body
    )
    assert r.status_code == 200, r.text[:300]
    if kind == "batch":
        answer = r.json()
        assert len(answer["anomaly"]) == len(answer["score"]) == points
        assert answer["score"][:2] == [
            (1 - 7 / 3) / np.std([1, 2, 4]),
            (2 - 7 / 3) / np.std([1, 2, 4]),
        ]
    # Before: 27 bytes per body byte for a fit, 26 for a batch (lists of Python
    # numbers, a whole answer encoded at once, five copies of the points to store).
    # Now about 9.6 for a fit (the body, 16 bytes a point, LMDB's dirty pages of as
    # much until the commit) and 3.8 for a batch.
    limit = 12 if kind == "fit" else 6
    assert per_byte < limit, f"{kind}: {per_byte:.1f} bytes per body byte"


# -- large requests leave threads to small ones -----------------------------------


def test_large_requests_never_take_every_thread(make_server):
    """Three large batch requests whose clients do not read their (13 MB) answers
    hold their threads until the timeout. With one large-request slot per worker,
    at most one per worker runs, the rest get 503 at once, and predicts answer."""
    s = make_server(extra=["--max-large-requests", "1", "--timeout", "20"])
    assert s.post("/fit/m", {"timestamps": [1, 2, 3], "values": [1, 2, 4]}).ok
    body = tiny_body(512 * 1024)  # 2 MiB: large
    head = (
        f"POST /predict/m/batch HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    clients = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(head + body)
        clients.append(sock)
    try:
        statuses = []
        for sock in clients:
            sock.settimeout(15)
            statuses.append(sock.recv(12)[9:12])
        assert b"503" in statuses and b"200" in statuses, statuses
        for _ in range(20):  # each on a new connection: both workers are asked
            r = requests.post(
                s.url + "/predict/m", json={"timestamp": 1, "value": 2}, timeout=5
            )
            assert r.status_code == 200
        refused = post_raw(s, "/predict/m/batch", body)
        if refused.status_code == 503:
            assert refused.headers["Retry-After"] == "1"
            assert_error(refused, 503, "max_large_requests")
    finally:
        for sock in clients:
            sock.close()
    # Slots come back when the answers are abandoned: large requests work again.
    for _ in range(40):
        r = post_raw(s, "/predict/m/batch", body)
        if r.status_code == 200:
            break
        time.sleep(0.5)
    assert r.status_code == 200 and len(r.json()["score"]) == 512 * 1024


def test_streamed_answer_gives_its_slot_back_however_it_ends():
    gate = LargeRequests(1)
    for consume in (0, 1, 10):  # never started, partly sent, sent whole
        assert gate.enter(2 * 1024 * 1024) is True
        with pytest.raises(Exception) as info:
            gate.enter(2 * 1024 * 1024)
        assert info.value.status_code == 503
        answer = StreamedAnswer(iter([b"a", b"b", b"c"]), gate.leave)
        for _, _ in zip(range(consume), answer, strict=False):
            pass
        answer.close()
        answer.close()  # a second close gives nothing back twice
    assert gate.enter(1024) is False  # small: no slot taken


# -- decoding in pieces is decoding whole -------------------------------------------

_reference = msgspec.json.Decoder(schemas.FitRequest)


def decoded_whole(body: bytes):
    """What /openapi.json's FitRequest promises, decoded at once: the reference."""
    request = _reference.decode(body)
    assert request.detector is not None
    stamps = [
        timestamps.seconds(t, f"$.timestamps[{i}]")
        for i, t in enumerate(request.timestamps)
    ]
    ingest.check_lengths(len(stamps), len(request.values), 0)
    return stamps, request.values


def outcome(decode, body: bytes):
    try:
        stamps, values = decode(body)
        return "ok", list(stamps), list(values)
    except msgspec.ValidationError as exc:
        return "422 msgspec", str(exc)
    except msgspec.DecodeError as exc:
        return "400", str(exc)
    except ValueError as exc:  # InvalidTrainingData is one
        return "422", str(exc)


stamp_elements = st.one_of(
    st.integers(-5, 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["17", "17.9", "2023-09-10 09:04:00", "a,b", 'x",]y', "[1,2]"]),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.none(),
    st.booleans(),
)
value_elements = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["s,t", "1", "]"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


numbers_only = st.lists(
    st.one_of(st.integers(0, 2**34), st.floats(0, 1e11), st.integers(-3, -1)),
    max_size=12,
)


@settings(max_examples=800, deadline=None)
@given(
    st.one_of(st.lists(stamp_elements, max_size=12), numbers_only),
    st.one_of(st.lists(value_elements, max_size=12), numbers_only),
    st.sampled_from([1, 2, 3, 7, 64]),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " : ")]),
    st.sampled_from([None, {"k": 2}, {"kind": "x"}, {"extra": 1}]),
    st.booleans(),
    st.sampled_from([1, 5, 64]),
)
def test_decoding_in_pieces_answers_as_decoding_whole(
    stamps, values, chunk, seps, detector, values_first, step
):
    # Pieces of a few bytes cut inside every kind of element, columns found in steps
    # of a few bytes; the answer (arrays, or the error with its global path) must be
    # the whole decode's.
    document = {"timestamps": stamps, "values": values}
    if values_first:
        document = {"values": values, "timestamps": stamps}
    if detector is not None:
        document["detector"] = detector
    body = json.dumps(document, separators=seps).encode()
    saved = ingest.CHUNK_BYTES, ingest.FAST_MIN_BYTES, ingest.STEP
    ingest.CHUNK_BYTES, ingest.FAST_MIN_BYTES, ingest.STEP = chunk, 0, step
    try:
        ours = outcome(lambda b: ingest.decode(b, fit_columns, 0)[1:], body)
    finally:
        ingest.CHUNK_BYTES, ingest.FAST_MIN_BYTES, ingest.STEP = saved
    whole = outcome(decoded_whole, body)
    if detector in ({"kind": "x"}, {"extra": 1}):
        # Two faults: each decode names one of them, with the same status.
        assert ours[0] == whole[0] == "422 msgspec"
    else:
        assert ours == whole


def test_decompressed_bytes_count_against_the_workers_body_budget(make_server):
    """anomalyd.budget (max_inflight_bytes) bounds what gzip bodies grow into."""
    s = make_server(
        extra=["--max-inflight-bytes", str(3 << 20), "--max-body-bytes", str(8 << 20)]
    )
    gz = {"Content-Encoding": "gzip"}
    # 4 MiB once decompressed (a few KiB sent): over the 3 MiB budget.
    big = gzip.compress(b'{"timestamps": [' + b" " * (4 << 20) + b"1]}")
    r = post_raw(s, "/fit/budget", big, **gz)
    assert_error(r, 503, "max_inflight_bytes")
    assert r.headers["Retry-After"] == "1"
    # What the refused body had taken (2 MiB) was given back: 2.5 MiB bodies fit, on
    # every worker (each on a new connection).
    fits = gzip.compress(
        b'{"timestamps": [1, 2, 3],' + b" " * (5 << 19) + b'"values": [1, 2, 4]}'
    )
    for _ in range(10):
        r = requests.post(s.url + "/fit/budget", data=fits, headers=gz, timeout=30)
        assert r.status_code == 200, r.text


def test_refused_large_bodies_give_their_slot_back(make_server):
    """A gzip body is known to be large only once decompressed: the slot it then
    takes must come back when the body is refused, or the worker would answer every
    later large request 503."""
    s = make_server(extra=["--max-large-requests", "1"])
    assert s.post("/fit/m", {"timestamps": [1, 2, 3], "values": [1, 2, 4]}).ok
    gz = {"Content-Encoding": "gzip"}
    bad = gzip.compress(b'{"timestamps": [1], "values": [' + b"1," * (1 << 20) + b"x]}")
    good = gzip.compress(tiny_body(1 << 19))  # 2 MiB once decompressed: large
    for path in ("/predict/m/batch", "/fit/m"):
        for _ in range(6):  # each on a new connection: both workers are asked
            r = requests.post(s.url + path, data=bad, headers=gz, timeout=60)
            assert r.status_code == 400, r.text
        for _ in range(6):
            r = requests.post(s.url + path, data=good, headers=gz, timeout=60)
            assert r.status_code == 200, r.text
