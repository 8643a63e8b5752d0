"""Regressions: each case a fuzzer (or a hostile client) found, as a plain test.

Found by tests/test_fuzz.py (hypothesis properties) unless noted.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from anomalyd import detectors
from anomalyd.detectors import DetectorParams, InvalidTrainingData

FLOAT_MAX = sys.float_info.max


def test_huge_k_is_refused_instead_of_infinite_bounds(server):
    # Was 200 with "lower": null, "upper": null for direction "both": bounds of
    # +-inf, encoded as null, and a model that never flags anything.
    r = server.post(
        "/fit/huge_k",
        {
            "timestamps": [1, 2, 3],
            "values": [1, 2, 4],
            "detector": {"k": 1.7e308, "direction": "both"},
        },
    )
    assert r.status_code == 422, r.text
    assert "$.detector.k" in r.json()["description"]
    with pytest.raises(InvalidTrainingData, match=r"\$\.detector\.k"):
        detectors.fit(np.array([1e150, 0.0, -1e150]), DetectorParams(k=1e300))


def test_score_beyond_the_float_range_is_a_number_not_null(server):
    # Was {"score": null}: (value - center) / scale overflowed to inf, which JSON
    # cannot carry, against a schema that says the score is a number.
    fit = {"timestamps": [1, 2, 3], "values": [0.0, 1e-150, 2e-150]}
    assert server.post("/fit/tiny_scale", fit).status_code == 200
    r = server.post("/predict/tiny_scale", {"timestamp": 4, "value": 1e308})
    assert r.status_code == 200, r.text
    assert r.json()["score"] == FLOAT_MAX and r.json()["anomaly"] is True
    r = server.post(
        "/predict/tiny_scale/batch",
        {"timestamps": [4, 5, 6], "values": [-1e308, 1e308, 0.0]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["score"][:2] == [-FLOAT_MAX, FLOAT_MAX]
    assert None not in r.json()["score"]


def test_chunked_body_is_read(server):
    # Found by hand: Falcon's bounded_stream reads a body without Content-Length as
    # empty, so every chunked request was "not valid JSON" (400).
    body = json.dumps({"timestamps": [1, 2, 3], "values": [1, 2, 4]}).encode()
    r = server.session.post(
        server.url + "/fit/chunked",
        data=iter([body[:10], body[10:]]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    assert r.status_code == 200, r.text
