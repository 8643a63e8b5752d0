"""Fuzzing: hypothesis properties of the decoders and the detector, and schemathesis
driven by the live service's own /openapi.json against a real ``anomalyd serve``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter

import msgspec
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from anomalyd import detectors, ingest, schemas
from anomalyd.api.fit import fit_columns
from anomalyd.detectors import InvalidInput, InvalidTrainingData

# Errors that errors.install maps to 4xx: DecodeError 400 (ValidationError 422),
# InvalidTrainingData and InvalidInput 422. Anything else escaping is a 500.
REFUSED = (msgspec.DecodeError, InvalidTrainingData, InvalidInput)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 1e308, -1e308, 5e-324, 1.7976931348623157e308]),
)
timestamps = st.one_of(
    st.integers(min_value=-10, max_value=2**64),
    st.integers(min_value=0, max_value=schemas.MAX_TIMESTAMP),
    st.floats(allow_nan=False),
    st.text(max_size=5),
)
valid_detector = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["3sigma", "robust"]),
        "k": st.floats(min_value=1e-300, max_value=1.8e308),
        "direction": st.sampled_from(["upper", "lower", "both"]),
    },
)
detector = valid_detector | st.fixed_dictionaries(
    {},
    optional={
        "kind": st.one_of(st.sampled_from(["3sigma", "robust"]), st.text(max_size=8)),
        "k": st.one_of(numbers, st.floats(min_value=1e300, max_value=1.8e308)),
        "direction": st.one_of(
            st.sampled_from(["upper", "lower", "both"]), st.text(max_size=6)
        ),
        "extra": st.integers(),
    },
)


@st.composite
def fit_documents(draw) -> dict:
    n = draw(st.integers(min_value=0, max_value=30))
    body: dict = {
        "timestamps": draw(
            st.lists(timestamps, min_size=n, max_size=n)
            | st.lists(timestamps, max_size=30)
            | st.lists(st.integers(0, schemas.MAX_TIMESTAMP), min_size=n, max_size=n)
        ),
        "values": draw(
            st.lists(numbers, min_size=n, max_size=n)
            | st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)
        ),
    }
    if draw(st.booleans()):
        body["detector"] = draw(detector)
    if draw(st.integers(0, 9)) == 0:
        del body[draw(st.sampled_from(["timestamps", "values"]))]
    return body


def expected_statistics(values: list, kind: str) -> tuple[float, float]:
    array = np.array([float(v) for v in values], dtype=np.float64)
    if kind == "3sigma":
        return float(np.mean(array)), float(np.std(array))
    median = float(np.median(array))
    return median, 1.4826 * float(np.median(np.abs(array - median)))


trained = [0]


@settings(max_examples=400, deadline=None)
@given(fit_documents())
def test_any_fit_json_is_trained_on_correctly_or_refused(document):
    # json.dumps writes NaN/Infinity literals: not JSON, so they must be refused (400).
    body = json.dumps(document).encode()
    try:
        request, _, values = ingest.decode(body, fit_columns, 3)
        model = detectors.fit(values, request.detector)
    except REFUSED:
        return
    trained[0] += 1
    params = document.get("detector", {})
    kind = params.get("kind", "3sigma")
    center, scale = expected_statistics(document["values"], kind)
    assert model.kind == kind
    assert model.center == center and model.scale == scale
    assert scale > 0
    k = float(params.get("k", 3.0))
    direction = params.get("direction", "upper")
    for bound in (model.lower, model.upper):
        assert bound is None or math.isfinite(bound)
    assert (model.upper is None) == (direction == "lower")
    assert (model.lower is None) == (direction == "upper")
    if model.upper is not None:
        assert model.upper == center + k * scale
    if model.lower is not None:
        assert model.lower == center - k * scale


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_decode_or_are_refused(body):
    try:
        ingest.decode(body, fit_columns, 3)
    except REFUSED:
        pass


point_timestamps = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.text(max_size=30),
    st.from_regex(
        r"\A-?[0-9]{1,6}-[0-9]{2}-[0-9]{2}([T ][0-9:.]{0,12})?"
        r"(Z|[+-][0-9]{2}:?[0-9]{2})?\Z"
    ),
    st.from_regex(r"\A[0-9\u0660-\u0669\u00b2\u2070-\u2079]{1,20}\Z"),
    st.datetimes().map(lambda d: d.isoformat()),
    st.floats(),
)


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({"timestamp": point_timestamps, "value": numbers}))
def test_any_predict_json_is_judged_or_refused(document):
    body = json.dumps(document).encode()
    try:
        point = schemas.predict_decoder.decode(body)
    except msgspec.DecodeError:
        return
    try:
        seconds = schemas.parse_timestamp(point.timestamp)
    except ValueError:  # the responder turns this into InvalidInput: 422
        return
    assert 0 <= seconds <= schemas.MAX_TIMESTAMP


finite = st.floats(allow_nan=False, allow_infinity=False)
tiny_or_huge = st.one_of(
    st.floats(min_value=-1e-150, max_value=1e-150),
    st.floats(min_value=-1e12, max_value=1e12),
    finite,
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(tiny_or_huge, min_size=3, max_size=50),
    st.floats(min_value=0.01, max_value=100),
    st.sampled_from(["3sigma", "robust"]),
    st.sampled_from(["upper", "lower", "both"]),
    finite,
)
def test_judge_agrees_with_the_bounds(values, k, kind, direction, value):
    array = np.array(values)
    try:
        model = detectors.fit(array, detectors.DetectorParams(kind, k, direction))
    except InvalidTrainingData:
        return
    anomaly, score, threshold = model.judge(value)
    expected = (model.upper is not None and value > model.upper) or (
        model.lower is not None and value < model.lower
    )
    assert anomaly == expected
    # A score is a JSON number: beyond the float range it is the largest float.
    exact = (value - model.center) / model.scale
    assert score == max(-sys.float_info.max, min(sys.float_info.max, exact))
    assert threshold in (model.lower, model.upper)
    many, scores = model.judge_many(np.array([value]))
    assert bool(many[0]) == anomaly and scores[0] == score


# -- schemathesis, from the live service's /openapi.json --------------------------


EXAMPLES_PER_OPERATION = int(
    os.environ.get("FUZZ_EXAMPLES", "100")
)  # per generation mode (valid and invalid inputs)
OPERATIONS = [
    ("GET", "/"),
    ("POST", "/fit/{series_id}"),
    ("POST", "/predict/{series_id}"),
    ("POST", "/predict/{series_id}/batch"),
    ("GET", "/series"),
    ("GET", "/series/{series_id}"),
    ("DELETE", "/series/{series_id}"),
    ("GET", "/plot"),
    ("GET", "/healthcheck"),
    ("GET", "/metrics"),
    ("POST", "/observe/{series_id}"),
    ("POST", "/observe/{series_id}/batch"),
    ("GET", "/streams"),
    ("PUT", "/streams/{series_id}"),
    ("GET", "/streams/{series_id}"),
    ("DELETE", "/streams/{series_id}"),
    ("GET", "/streams/{series_id}/points"),
    ("GET", "/streams/{series_id}/anomalies"),
    ("GET", "/alerts"),
]
# Operations without inputs have nothing to make invalid.
NO_INPUTS = {("GET", "/"), ("GET", "/healthcheck"), ("GET", "/metrics")}
calls: Counter[str] = Counter()
failures: Counter[str] = Counter()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from conftest import Server

    s = Server(tmp_path_factory.mktemp("fuzz") / "data").start()
    # Something to find: a trained series with two versions.
    for _ in range(2):
        body = {"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]}
        assert s.post("/fit/sensor_01", body).ok
    # And a stream with points and an episode.
    s.session.put(s.url + "/streams/sensor_01", json={"warmup": 0, "threshold": 0.2})
    body = {"timestamps": [1, 2, 3, 4], "values": [1.0, 2.0, 1.5, 90.0]}
    assert s.post("/observe/sensor_01/batch", body).ok
    yield s
    print(
        f"\nschemathesis: {len({label.split(' (')[0] for label in calls})} "
        f"operations, {sum(calls.values())} examples, "
        f"{sum(failures.values())} failing: {dict(calls)}"
    )
    assert s.stop() == 0


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def test_every_documented_operation_is_fuzzed(api_schema):
    found = {
        (result.ok().method.upper(), result.ok().path)
        for result in api_schema.get_all_operations()
    }
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("method, path", OPERATIONS)
def test_openapi_contract(api_schema, live, method, path, mode):
    if mode is GenerationMode.NEGATIVE and (method, path) in NO_INPUTS:
        pytest.skip("no inputs to make invalid")
    operation = api_schema[path][method]
    label = f"{method} {path}"

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        calls[label] += 1
        try:
            case.call_and_validate(
                base_url=live.url,
                session=live.session,
                checks=[
                    not_a_server_error,
                    response_schema_conformance,
                    status_code_conformance,
                ],
                timeout=30,
            )
        except BaseException:
            failures[label] += 1
            raise

    check()


@pytest.fixture(scope="module")
def guarded_live(tmp_path_factory):
    from conftest import Server

    s = Server(
        tmp_path_factory.mktemp("fuzz-guarded") / "data",
        env={"ANOMALYD_API_TOKEN": "fuzz-token"},
    ).start()
    yield s
    assert s.stop() == 0


@pytest.mark.parametrize("method, path", sorted(set(OPERATIONS) - NO_INPUTS))
def test_openapi_contract_without_the_token(guarded_live, method, path):
    """With a token configured, the document declares the 401s every route gives."""
    headers = {"Authorization": "Bearer fuzz-token"}
    document = schemathesis.openapi.from_url(
        guarded_live.url + "/openapi.json", headers=headers
    )
    operation = document[path][method]

    @settings(
        max_examples=10,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def check(case) -> None:
        calls[f"{method} {path} (no token)"] += 1
        response = case.call_and_validate(
            base_url=guarded_live.url,
            checks=[
                not_a_server_error,
                response_schema_conformance,
                status_code_conformance,
            ],
            timeout=30,
        )
        assert response.status_code == 401

    check()
