"""The streams' part of ``/openapi.json`` (``anomalyd.api.docs`` builds the rest).

Bodies come from ``anomalyd.stream_schemas`` through the same msgspec schema
components; the cursor patterns from the responders' own regular expressions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anomalyd.api.streams import EPISODES_CURSOR, POINTS_CURSOR
from anomalyd.schemas import MAX_TIMESTAMP

_REF = "#/components/schemas/{name}"

ERRORS = {
    409: "The first point is earlier than the stream's last point; the description "
    "gives that last timestamp. Nothing was learned.",
}

_TIMESTAMP = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP},
        {"type": "string", "pattern": "^[0-9]{1,12}$"},
        {"type": "string", "format": "date-time"},
    ],
    "description": "Unix seconds (an integer or a string of digits) or an ISO-8601 "
    "date-time (UTC when it has no offset).",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(name)}},
    }


def add_checks_made_after_decoding(components: dict[str, Any]) -> None:
    """What the responders check once msgspec has decoded a body (see docs.py)."""
    batch = components["ObserveBatchRequest"]["properties"]
    for field in ("timestamps", "values"):
        batch[field]["minItems"] = 1
    batch["timestamps"]["items"] = _TIMESTAMP
    components["ObserveRequest"]["properties"]["timestamp"] = _TIMESTAMP


def stream_paths(
    op: Callable[..., dict[str, Any]],
    series_id_path: dict[str, Any],
    limit_query: dict[str, Any],
    after_query: dict[str, Any],
) -> dict[str, Any]:
    """The paths of the streams' routes; ``op`` builds one operation (docs.py)."""
    key_header = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "1 to 200 printable ASCII characters. A repeat of one of the "
        "stream's last 1,000 answered keyed requests gets the first answer and "
        "learns nothing; the same key with another body is 422.",
        "schema": {"type": "string", "pattern": "^[\\x20-\\x7e]{1,200}$"},
    }
    since = {
        "name": "since",
        "in": "query",
        "required": False,
        "description": "Points at or after this time, episodes that start at or "
        "after it: Unix seconds or an ISO-8601 date-time.",
        "schema": {
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]{1,12}$"},
                {"type": "string", "format": "date-time"},
            ]
        },
    }
    page_limit = {
        **limit_query,
        "description": "Most items on one page (1 to 1000, default 100).",
    }

    def cursor(pattern: str) -> dict[str, Any]:
        return {
            "name": "after",
            "in": "query",
            "required": False,
            "description": "The `next` cursor of the previous page (opaque).",
            "schema": {"type": "string", "pattern": f"^{pattern}$"},
        }

    writes = (400, 404, 409, 413, 422, 503, 507)
    return {
        "/observe/{series_id}": {
            "parameters": [series_id_path],
            "post": op(
                "observe",
                "Judge one point against what the stream learned, then learn it; "
                "the first observe creates the stream. Answered after a durable "
                "commit.",
                _json("ObserveResponse", "The verdict and the points learned."),
                tuple(s for s in writes if s != 404),
                parameters=[key_header],
                body="ObserveRequest",
            ),
        },
        "/observe/{series_id}/batch": {
            "parameters": [series_id_path],
            "post": op(
                "observeBatch",
                "Judge and learn points in time order, all or none; the verdicts "
                "are those of the points sent one by one.",
                _json("ObserveBatchResponse", "One verdict per point."),
                tuple(s for s in writes if s != 404),
                parameters=[key_header],
                body="ObserveBatchRequest",
            ),
        },
        "/streams": {
            "get": op(
                "listStreams",
                "The streams in id order, paged: pass `next` as `after`.",
                _json("StreamPage", "One page of streams."),
                (400,),
                parameters=[page_limit, after_query],
            )
        },
        "/streams/{series_id}": {
            "parameters": [series_id_path],
            "put": op(
                "configureStream",
                "Create or configure a stream; omitted fields keep their value (or "
                "take the default on a new stream). An empty body is {}.",
                _json("StreamOut", "The stream."),
                (400, 413, 422, 503, 507),
                body="StreamSettings",
            ),
            "get": op(
                "getStream",
                "A stream: its counters, last point and configuration.",
                _json("StreamOut", "The stream."),
                (400, 404),
            ),
            "delete": op(
                "deleteStream",
                "Forget a stream: state, configuration, history, episodes, keys.",
                _json("StreamDeleted", "How many points it had learned."),
                (400, 404, 503, 507),
            ),
        },
        "/streams/{series_id}/points": {
            "parameters": [series_id_path],
            "get": op(
                "streamPoints",
                "The retained history (the last stream_history points), oldest "
                "first, paged.",
                _json("PointsPage", "One page of points."),
                (400, 404),
                parameters=[since, page_limit, cursor(POINTS_CURSOR.pattern)],
            ),
        },
        "/streams/{series_id}/anomalies": {
            "parameters": [series_id_path],
            "get": op(
                "streamAnomalies",
                "The anomaly episodes (runs of anomalous points), oldest first, paged.",
                _json("AnomaliesPage", "One page of episodes."),
                (400, 404),
                parameters=[since, page_limit, cursor(EPISODES_CURSOR.pattern)],
            ),
        },
    }


def add_stream_plot(plot: dict[str, Any]) -> None:
    """GET /plot's stream form, beside the version one that docs.py describes."""
    plot["summary"] = (
        "A version's training data, center and bounds drawn as SVG (series_id); or a "
        "stream's retained history, its anomalous points, its score and threshold "
        "(stream). Give one of series_id and stream."
    )
    parameters = []
    for parameter in plot["parameters"]:
        if parameter["name"] == "series_id":
            parameter = {
                **parameter,
                "required": False,
                "description": "A fitted series to draw (or give stream).",
            }
        parameters.append(parameter)
    time_schema = {
        "anyOf": [
            {"type": "string", "pattern": "^[0-9]{1,12}(\\.[0-9]+)?$"},
            {"type": "string", "format": "date-time"},
        ]
    }
    series_id = next(p for p in plot["parameters"] if p["name"] == "series_id")
    parameters += [
        {
            "name": "stream",
            "in": "query",
            "required": False,
            "description": "A stream to draw: its retained history (or give "
            "series_id).",
            "schema": series_id["schema"],
        },
        {
            "name": "since",
            "in": "query",
            "required": False,
            "description": "With stream: points at or after this time (Unix seconds "
            "or an ISO-8601 date-time).",
            "schema": time_schema,
        },
        {
            "name": "until",
            "in": "query",
            "required": False,
            "description": "With stream: points at or before this time.",
            "schema": time_schema,
        },
    ]
    plot["parameters"] = parameters
    ok = plot["responses"]["200"]
    ok["description"] = (
        "The drawing. A version's has a strong ETag and, with an explicit version, "
        "is immutable; a stream's is no-cache with a strong ETag that changes when "
        "the stream learns a point or is configured."
    )
    plot["responses"]["304"]["description"] = (
        "Not modified: the If-None-Match ETag is still the drawing of that version, "
        "or of that stream and window."
    )
