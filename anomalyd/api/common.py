"""What every resource shares: reading a bounded body, ids, versions, the model view."""

from __future__ import annotations

import falcon
import msgspec

from anomalyd.api.body import read_body  # noqa: F401 - importable from here too
from anomalyd.detectors import MAD_TO_SIGMA, Model
from anomalyd.errors import BadRequest
from anomalyd.schemas import SERIES_ID_RE, VERSION_RE, ModelOut, parse_timestamp

# Every pattern that validates input is applied with fullmatch: the patterns end in
# "$", which re.match also accepts before a final newline ("abc\n").


def check_series_id(series_id: str) -> str:
    if SERIES_ID_RE.fullmatch(series_id) is None:
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
    match = VERSION_RE.fullmatch(raw)
    if match is None:
        raise BadRequest(
            f"version must be vN or N with N a positive integer, got {raw[:40]!r}"
        )
    return int(match.group(1))


def model_out(model: Model) -> ModelOut:
    # ModelOut starts with Model's fields, in Model's order.
    out = ModelOut(*msgspec.structs.astuple(model))
    if model.kind == "3sigma":
        out.mean, out.std = model.center, model.scale
    else:
        out.median, out.mad = model.center, model.scale / MAD_TO_SIGMA
    return out


MAX_PAGE = 1000


def parse_limit(req: falcon.Request, default: int) -> int:
    """``?limit=`` (1..MAX_PAGE) of a paged listing. An absent ``limit`` is the
    default; an empty one (``?limit=``) is malformed: 400."""
    raw = req.get_param("limit")
    if raw is None:
        return default
    # isascii: "²".isdigit() is True but int("²") fails.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(
            f"limit must be an integer from 1 to {MAX_PAGE}, got {raw[:20]!r}"
        )
    return int(raw)


def parse_page(req: falcon.Request, default: int) -> tuple[int, str | None]:
    """``?limit=`` (``parse_limit``) and ``?after=`` (a series id) of a paged
    listing."""
    limit = parse_limit(req, default)
    after = req.get_param("after")
    if after is not None:
        check_series_id(after)
    return limit, after


def parse_time(req: falcon.Request, name: str) -> int | None:
    """``?since=`` / ``?until=``: Unix seconds or ISO-8601 (any timestamp form)."""
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise BadRequest(
            f"{name} must be Unix seconds or an ISO-8601 date-time, got {raw[:40]!r}"
        ) from None


def if_none_matches(if_none_match: list | None, etag: str) -> bool:
    """``If-None-Match`` compares weakly (RFC 9110 13.1.2): W/"x" matches "x"."""
    if not if_none_match:
        return False
    return any(tag == "*" or str(tag) == etag for tag in if_none_match)
