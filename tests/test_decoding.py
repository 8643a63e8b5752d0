"""Decoding: msgspec's messages keep the JSON path; 400 vs 422 is decided by type."""

import msgspec
import pytest

from anomalyd import ingest, schemas
from anomalyd.api.fit import fit_columns


def test_fit_request_decodes_with_default_detector():
    req = schemas.fit_decoder.decode(b'{"timestamps": [1, 2], "values": [1, 2.5]}')
    assert req.values == [1.0, 2.5]
    assert req.detector.kind == "3sigma" and req.detector.k == 3.0
    assert req.detector.direction == "upper"


@pytest.mark.parametrize(
    "body, message",
    [
        (
            b'{"timestamps": [1], "values": ["a"]}',
            r"Expected `float`, got `str` - at `\$.values\[0\]`",
        ),
        (
            b'{"timestamps": [1, -2], "values": [1, 2]}',
            r">= 0 - at `\$.timestamps\[1\]`",
        ),
        (
            b'{"timestamps": [1], "values": [1e999]}',
            r"Number out of range - at `\$.values\[0\]`",
        ),
        (b'{"timestamps": [1], "values": [1], "extra": 1}', "unknown field `extra`"),
        (b'{"timestamps": [1]}', "missing required field `values`"),
        (
            b'{"timestamps": [1], "values": [1], "detector": {"kind": "x"}}',
            r"\$.detector.kind",
        ),
        (
            b'{"timestamps": [1], "values": [1], "detector": {"direction": 1}}',
            r"\$.detector.direction",
        ),
        (
            b'{"timestamps": [true], "values": [1]}',
            r"Expected `int \| float \| str`, got `bool` - at `\$.timestamps\[0\]`",
        ),
        (
            b'{"timestamps": [-0.5], "values": [1]}',
            r"Expected `float` >= 0.0 - at `\$.timestamps\[0\]`",
        ),
        (b'{"timestamps": 5, "values": [1]}', r"got `int` - at `\$.timestamps`$"),
    ],
)
@pytest.mark.parametrize("how", ["documented type", "ingest"])
def test_fit_validation_errors_name_the_path(body, message, how):
    # The service decodes with anomalyd.ingest; its errors are those of the type
    # /openapi.json documents, decoded whole.
    with pytest.raises(msgspec.ValidationError, match=message):
        if how == "ingest":
            ingest.decode(body, fit_columns, 1)
        else:
            schemas.fit_decoder.decode(body)


@pytest.mark.parametrize("body", [b"", b"{", b"NaN", b'{"values": [NaN]}', b"nope"])
def test_not_json_is_a_plain_decode_error(body):
    with pytest.raises(msgspec.DecodeError) as info:
        schemas.fit_decoder.decode(body)
    assert not isinstance(info.value, msgspec.ValidationError)


@pytest.mark.parametrize(
    "raw, seconds",
    [
        ("1694336640", 1694336640),
        (1694336640, 1694336640),
        ("2023-09-10T09:04:00Z", 1694336640),
        ("2023-09-10T11:04:00+02:00", 1694336640),
        ("2023-09-10 09:04:00", 1694336640),  # naive: UTC
    ],
)
def test_predict_timestamp_forms(raw, seconds):
    assert schemas.parse_timestamp(raw) == seconds


@pytest.mark.parametrize("raw", ["yesterday", "-5", "", -1, "99999999999999"])
def test_bad_timestamps_are_refused(raw):
    with pytest.raises(ValueError, match=r"\$.timestamp"):
        schemas.parse_timestamp(raw)


def test_predict_needs_both_fields():
    with pytest.raises(msgspec.ValidationError, match="missing required field `value`"):
        schemas.predict_decoder.decode(b'{"timestamp": 1}')
    with pytest.raises(msgspec.ValidationError, match=r"\$.timestamp"):
        schemas.predict_decoder.decode(b'{"timestamp": [1], "value": 1}')


@pytest.mark.parametrize(
    "raw, seconds",
    [
        (1694336640.999, 1694336640),  # float seconds: the fraction is cut
        ("1694336640.5", 1694336640),
        ("2023-09-10T09:04:00.999999Z", 1694336640),
        (0.0, 0),
        (253402300799.99, 253402300799),
        ("9999-12-31T23:59:59Z", 253402300799),
    ],
)
def test_every_form_is_floored_to_whole_seconds(raw, seconds):
    assert schemas.parse_timestamp(raw) == seconds


@pytest.mark.parametrize(
    "raw", [-0.5, 253402300800.0, " 12", "1_0", "1.", ".5", "1e9", "0001-01-01"]
)
def test_forms_outside_the_rules_are_refused(raw):
    with pytest.raises(ValueError, match=r"\$.timestamp"):
        schemas.parse_timestamp(raw)


def test_pieces_cut_inside_strings_keep_msgspec_errors(monkeypatch):
    # Pieces of a few bytes: every cut lands inside some element.
    monkeypatch.setattr(ingest, "CHUNK_BYTES", 3)
    body = (
        b'{"timestamps": [1, "2023-09-10 09:04:00", "a,b,c", 4], "values": [1,2,3,4]}'
    )
    with pytest.raises(ValueError, match=r"\$.timestamps\[2\] must be .* 'a,b,c'"):
        ingest.decode(body, fit_columns, 1)
    body = b'{"timestamps": [1, 2, 3], "values": [1, 2, "x,\\",y"]}'
    with pytest.raises(
        msgspec.ValidationError, match=r"got `str` - at `\$.values\[2\]`"
    ):
        ingest.decode(body, fit_columns, 1)
    _, stamps, values = ingest.decode(
        b'{"values": [1.5, 2, 3e2], "timestamps": ["7", 8.9, "1970-01-01 00:00:09"]}',
        fit_columns,
        1,
    )
    assert stamps.tolist() == [7, 8, 9] and values.tolist() == [1.5, 2.0, 300.0]
