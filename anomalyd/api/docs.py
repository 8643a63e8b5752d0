"""GET /openapi.json: the OpenAPI 3.1 document of every route.

The schemas of bodies come from the msgspec types the service decodes and encodes with
(``anomalyd.schemas``, ``anomalyd.api.health``), through ``msgspec.json.schema_components``;
the patterns of ids and versions and the page bounds come from the constants the
responders check with. Nothing here is written twice, so the document cannot drift from
what the service accepts. It is built once per worker, when the app is created.
"""

from __future__ import annotations

from typing import Any

import falcon
import msgspec

import anomalyd
from anomalyd import alert_schemas, schemas, stream_schemas
from anomalyd.api import alert_docs, stream_docs
from anomalyd.api.common import MAX_PAGE
from anomalyd.api.docs_bodies import (
    CSV_BODY,
    add_checks_made_after_decoding,
    detector_query,
)
from anomalyd.api.health import Health
from anomalyd.api.login_docs import add_login_paths
from anomalyd.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

_REF = "#/components/schemas/{name}"
_BODY_TYPES = (
    schemas.FitRequest,
    schemas.FitResponse,
    schemas.PredictRequest,
    schemas.PredictResponse,
    schemas.BatchPredictRequest,
    schemas.BatchPredictResponse,
    schemas.SeriesPage,
    schemas.SeriesDetail,
    schemas.DeleteResponse,
    Health,
    schemas.ErrorBody,
    *stream_schemas.BODY_TYPES,
    *alert_schemas.BODY_TYPES,
)

# The short description GET / gives to clients that do not ask for HTML.
_SERVICE_DESCRIPTION = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "description": {"type": "string"},
        "routes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "method": {"type": "string"},
                    "path": {"type": "string"},
                    "summary": {"type": "string"},
                },
                "required": ["method", "path", "summary"],
            },
        },
    },
    "required": ["name", "version", "routes"],
}

# What each error status means on the routes that can answer it.
_ERRORS = {
    400: "Bad request: the body is not JSON at all, or a series_id, version, limit "
    "or after parameter is malformed. The description says which.",
    401: "No valid 'Authorization: Bearer <token>' header (only when a token is "
    "configured).",
    404: "Unknown series, or a version the series does not have (the description "
    "says which); or a path that names no route.",
    413: "The body is larger than max_body_bytes (once decompressed, for a gzip body).",
    415: "A Content-Type or Content-Encoding the route does not take (JSON, CSV "
    "where stated; gzip or identity). The description says which.",
    422: "JSON that does not fit: a wrong type, a missing or unknown field (with its "
    "path, such as $.values[2]); or data that cannot be trained on or judged: "
    "timestamps and values of different lengths, a value not finite, all values "
    "equal (no spread), a timestamp out of range. The description says which.",
    503: "The worker already runs max_large_requests requests with bodies over "
    "1 MiB, or its memory for request bodies is in use (retry after the Retry-After "
    "seconds); or the store cannot be used safely: its data file or lock file was "
    "removed or replaced under the running service. The description says which.",
    507: "No room: the store is (nearly) full, map_size reached, or the disk holding "
    "it is full. The description says which; existing models still answer.",
    **stream_docs.ERRORS,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _error(status: int) -> dict[str, Any]:
    response = _json(_ref("ErrorBody"), _ERRORS[status])
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "required": True}
        }
    return response


def _operation(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    token_required: bool,
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    csv: bool = False,
    open_route: bool = False,
    extra: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    for status, response in (extra or {}).items():
        responses[str(status)] = response
    if token_required and not open_route:
        errors = tuple(sorted((*errors, 401)))
    for status in errors:
        responses[str(status)] = _error(status)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        content: dict[str, Any] = {"application/json": {"schema": _ref(body)}}
        if csv:
            content["text/csv"] = {"schema": CSV_BODY}
        operation["requestBody"] = {
            "required": True,
            "description": "May be sent with Content-Encoding: gzip; "
            "max_body_bytes bounds it once decompressed.",
            "content": content,
        }
    if open_route:
        operation["security"] = []
    return operation


def build_document(token_required: bool, min_points: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a service with these settings: ``token_required``
    when an api_token is configured, ``min_points`` the fewest points a fit takes."""
    _, components = msgspec.json.schema_components(_BODY_TYPES, ref_template=_REF)
    add_checks_made_after_decoding(components, min_points)
    stream_docs.add_checks_made_after_decoding(components)
    components["ServiceDescription"] = _SERVICE_DESCRIPTION
    series_id_schema = msgspec.json.schema(schemas.SeriesId)
    version_schema = {"type": "string", "pattern": schemas.VERSION_RE.pattern}

    series_id_path = {
        "name": "series_id",
        "in": "path",
        "required": True,
        "description": "1 to 200 characters from [A-Za-z0-9._:-].",
        "schema": series_id_schema,
    }
    version_query = {
        "name": "version",
        "in": "query",
        "required": False,
        "description": "A version of the series, as vN or N (default: the latest).",
        "schema": version_schema,
    }
    limit_query = {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"Most series on one page, 1 to {MAX_PAGE} (absent: 100; "
        "empty or anything else: 400).",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    }
    after_query = {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "Start after this series_id: the `next` of the previous page.",
        "schema": series_id_schema,
    }
    series_id_query = {**series_id_path, "in": "query"}

    def op(*args, **kw) -> dict[str, Any]:
        return _operation(*args, token_required=token_required, **kw)

    paths = {
        "/": {
            "get": op(
                "describe",
                "A short JSON description of the service. Browsers (Accept: text/html) "
                "get the dashboard instead: the series paged with ?limit= and ?after=, "
                "or one series with ?series_id=; those parameters are the dashboard's "
                "and the JSON description ignores them.",
                {
                    "description": "The description, or the dashboard page.",
                    "content": {
                        "application/json": {"schema": _ref("ServiceDescription")},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                (400, 404),
            )
        },
        "/fit/{series_id}": {
            "parameters": [series_id_path],
            "post": op(
                "fit",
                "Train a new version of a series; answered after a durable commit.",
                _json(_ref("FitResponse"), "The new version and its model."),
                (400, 404, 413, 415, 422, 503, 507),
                parameters=detector_query(),
                body="FitRequest",
                csv=True,
            ),
        },
        "/predict/{series_id}": {
            "parameters": [series_id_path],
            "post": op(
                "predict",
                "Judge one point against a version (default: the latest).",
                _json(_ref("PredictResponse"), "The verdict."),
                (400, 404, 413, 415, 422, 503),
                parameters=[version_query],
                body="PredictRequest",
            ),
        },
        "/predict/{series_id}/batch": {
            "parameters": [series_id_path],
            "post": op(
                "predictBatch",
                "Judge many points against a version, in request order.",
                _json(_ref("BatchPredictResponse"), "One verdict per point."),
                (400, 404, 413, 415, 422, 503),
                parameters=[version_query],
                body="BatchPredictRequest",
                csv=True,
            ),
        },
        "/series": {
            "get": op(
                "listSeries",
                "The series in id order, paged: pass `next` as `after`.",
                _json(_ref("SeriesPage"), "One page of series."),
                (400,),
                parameters=[limit_query, after_query],
            )
        },
        "/series/{series_id}": {
            "parameters": [series_id_path],
            "get": op(
                "getSeries",
                "The live versions of a series, with their models.",
                _json(_ref("SeriesDetail"), "The series and its versions."),
                (400, 404),
            ),
            "delete": op(
                "deleteSeries",
                "Remove every version of a series; its version counter survives.",
                _json(_ref("DeleteResponse"), "How many versions were removed."),
                (400, 404, 503, 507),
            ),
        },
        "/plot": {
            "get": op(
                "plot",
                "A version's training data, center and bounds drawn as SVG.",
                {
                    "description": "The drawing.",
                    "headers": {
                        "ETag": {"schema": {"type": "string"}},
                        "Cache-Control": {"schema": {"type": "string"}},
                    },
                    "content": {"image/svg+xml": {"schema": {"type": "string"}}},
                },
                (400, 404),
                parameters=[series_id_query, version_query],
                extra={
                    304: {
                        "description": "Not modified: the If-None-Match ETag is "
                        "still the drawing of that version."
                    }
                },
            )
        },
        "/healthcheck": {
            "get": op(
                "healthcheck",
                "Status, series trained, and inference and training latencies over "
                "every worker since the service started.",
                _json(_ref("Health"), "The service is up and its store readable."),
                (503,),
                open_route=True,
            )
        },
        "/metrics": {
            "get": op(
                "metrics",
                "Prometheus text exposition (format 0.0.4); names start anomalyd_.",
                {
                    "description": "The metrics.",
                    "content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}},
                },
                (),
                open_route=True,
            )
        },
        "/openapi.json": {
            "get": op(
                "openapi",
                "This document.",
                _json({"type": "object"}, "The OpenAPI 3.1 document."),
                (),
            )
        },
    }
    paths.update(stream_docs.stream_paths(op, series_id_path, limit_query, after_query))
    stream_docs.add_stream_plot(paths["/plot"]["get"])
    paths.update(alert_docs.alert_paths(op, limit_query))
    if token_required:
        add_login_paths(paths)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "anomalyd",
            "version": anomalyd.__version__,
            "summary": "Self-hosted anomaly detection for time series.",
            "description": (
                "Every error carries the body ErrorBody. Every route with GET also "
                "answers HEAD (GET's status and headers, no body). A method a route "
                "does not have is answered 405 with an Allow header. Bodies are JSON "
                "(UTF-8); fit and batch predict also take CSV (text/csv). Every POST "
                "body may be sent with Content-Encoding: gzip."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "webhooks": alert_docs.webhooks(),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The api_token setting; required on every route "
                    "but /healthcheck and /metrics when a token is configured.",
                }
            },
        },
    }
    if token_required:
        document["security"] = [{"bearerAuth": []}]
    return document


class OpenAPIResource:
    def __init__(self, token_required: bool, min_points: int) -> None:
        self._document = schemas.encoder.encode(
            build_document(token_required, min_points)
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self._document
        resp.content_type = falcon.MEDIA_JSON
