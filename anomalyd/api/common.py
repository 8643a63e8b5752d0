"""What every resource shares: reading a bounded body, ids, versions, the model view."""

from __future__ import annotations

import falcon

from anomalyd.detectors import Model
from anomalyd.errors import BadRequest
from anomalyd.schemas import SERIES_ID_RE, VERSION_RE, ModelOut


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole body, or 413 once it is known to exceed ``limit`` bytes."""
    length = req.content_length
    if length is not None and length > limit:
        raise falcon.HTTPContentTooLarge(
            title="Body too large",
            description=f"the body has {length} bytes; max_body_bytes is {limit}",
        )
    data = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise falcon.HTTPContentTooLarge(
            title="Body too large",
            description=f"the body is larger than max_body_bytes ({limit} bytes)",
        )
    return data


def check_series_id(series_id: str) -> str:
    if SERIES_ID_RE.match(series_id) is None:
        raise BadRequest(
            "series_id must be 1 to 200 characters from [A-Za-z0-9._:-], "
            f"got {series_id[:210]!r}"
        )
    return series_id


def parse_version(req: falcon.Request) -> int | None:
    """``?version=v3`` or ``3``; None when absent; 400 when malformed."""
    raw = req.get_param("version")
    if raw is None:
        return None
    match = VERSION_RE.match(raw)
    if match is None:
        raise BadRequest(
            f"version must be vN or N with N a positive integer, got {raw[:40]!r}"
        )
    return int(match.group(1))


def model_out(model: Model) -> ModelOut:
    out = ModelOut(
        model.kind,
        model.k,
        model.direction,
        model.center,
        model.scale,
        model.lower,
        model.upper,
    )
    if model.kind == "3sigma":
        out.mean, out.std = model.center, model.scale
    else:
        out.median, out.mad = model.center, model.scale / 1.4826
    return out
