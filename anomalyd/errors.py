"""Domain errors, and the one place that turns every error into the HTTP error body."""

from __future__ import annotations

import logging

import falcon
import msgspec

from anomalyd.csvbody import MalformedBody
from anomalyd.detectors import InvalidInput, InvalidTrainingData
from anomalyd.store import (
    CorruptRecord,
    SeriesNotFound,
    StoreFull,
    StoreUnavailable,
    VersionNotFound,
)
from anomalyd.streams import InvalidPoints, KeyReused, PointsOutOfOrder, StreamNotFound

_encode = msgspec.json.Encoder().encode
log = logging.getLogger("anomalyd")

# Descriptions for errors Falcon raises itself without one.
_DEFAULT_DESCRIPTIONS = {
    404: "no such route; see /openapi.json for the routes",
    405: "method not allowed on this route; the Allow header lists those that are",
    411: "a Content-Length header or a chunked body is required",
    415: "the body must be JSON (Content-Type: application/json)",
    503: "the service is busy: retry shortly",
    500: "an internal error; it was logged",
}


class BadRequest(falcon.HTTPBadRequest):
    def __init__(self, description: str) -> None:
        super().__init__(title="Bad request", description=description)


class Unprocessable(falcon.HTTPUnprocessableEntity):
    def __init__(self, description: str) -> None:
        super().__init__(title="Unprocessable request", description=description)


def _serialize(
    req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError
) -> None:
    description = exc.description or _DEFAULT_DESCRIPTIONS.get(
        exc.status_code, exc.title
    )
    resp.data = _encode({"title": exc.title, "description": description})
    resp.content_type = falcon.MEDIA_JSON


def _not_found(req, resp, exc, params):
    raise falcon.HTTPNotFound(title="Not found", description=str(exc))


def _conflict(req, resp, exc, params):
    raise falcon.HTTPConflict(title="Conflict", description=str(exc))


def _store_full(req, resp, exc, params):
    raise falcon.HTTPError(
        falcon.HTTP_507, title="Insufficient storage", description=str(exc)
    )


def _unavailable(req, resp, exc, params):
    # The store logged it (loudly, once) where it found it.
    raise falcon.HTTPServiceUnavailable(
        title="Store unavailable", description=str(exc), retry_after=None
    )


def _corrupt(req, resp, exc, params):
    log.error("%s", exc)
    raise falcon.HTTPInternalServerError(title="Corrupt record", description=str(exc))


def _invalid(req, resp, exc, params):
    raise Unprocessable(str(exc))


def _decode_error(req, resp, exc, params):
    # ValidationError is a subclass of DecodeError: JSON that does not fit is 422,
    # anything that is not JSON at all is 400.
    if isinstance(exc, msgspec.ValidationError):
        raise Unprocessable(str(exc))
    raise BadRequest(f"the body is not valid JSON: {exc}")


def _malformed(req, resp, exc, params):
    raise BadRequest(str(exc))


def install(app: falcon.App) -> None:
    app.set_error_serializer(_serialize)
    app.add_error_handler(msgspec.DecodeError, _decode_error)
    app.add_error_handler((SeriesNotFound, VersionNotFound, StreamNotFound), _not_found)
    app.add_error_handler(PointsOutOfOrder, _conflict)
    app.add_error_handler((InvalidPoints, KeyReused), _invalid)
    app.add_error_handler(StoreFull, _store_full)
    app.add_error_handler(StoreUnavailable, _unavailable)
    app.add_error_handler(CorruptRecord, _corrupt)
    app.add_error_handler((InvalidTrainingData, InvalidInput), _invalid)
    app.add_error_handler(MalformedBody, _malformed)
