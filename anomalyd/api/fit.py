from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import falcon
import msgspec

from anomalyd import csvbody, detectors, ingest, schemas
from anomalyd.api.body import CSV, media_type, read_body, release
from anomalyd.api.common import check_series_id, model_out
from anomalyd.api.large import LargeRequests
from anomalyd.errors import BadRequest, Unprocessable
from anomalyd.store import Store

# The request as /openapi.json shows it, with its columns decoded piece by piece.
fit_columns = ingest.columns_decoder(schemas.FitRequest)
# A CSV body has no room for the detector: it comes in the query, ?kind=&k=&direction=.
DETECTOR_PARAMS = tuple(msgspec.structs.fields(detectors.DetectorParams))


def detector_from_query(req: falcon.Request) -> detectors.DetectorParams:
    """The detector of a CSV fit from ``?kind=&k=&direction=`` (each optional)."""
    given = {}
    for field in DETECTOR_PARAMS:
        raw = req.get_param(field.name)
        if raw is not None:
            given[field.name] = raw
    try:
        return msgspec.convert(given, detectors.DetectorParams, strict=False)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$.")
        name = path.rstrip("`") or "detector"
        raise Unprocessable(f"query parameter {name}: {message}") from None


class FitResource:
    def __init__(
        self,
        store: Store,
        min_points: int,
        max_body: int,
        clock: Callable[[], float],
        large: LargeRequests | None = None,
    ) -> None:
        self._large = large or LargeRequests(0)
        self._store = store
        self._min_points = min_points
        self._max_body = max_body
        self._clock = clock

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        held = self._large.enter(req.content_length)
        try:
            body = read_body(req, self._max_body, csv=True)
            try:
                # A gzip or chunked body is known to be large only once read.
                held = held or self._large.enter(len(body))
                params, timestamps, values = self._decode(req, body)
            finally:
                release(body)
            del body  # the columns' arrays are all that is kept of the body
            model = detectors.fit(values, params)
            created_at = self._clock()
            version = self._store.add_version(
                series_id, model, timestamps, values, created_at
            )
        finally:
            if held:
                self._large.leave()
        resp.data = schemas.encoder.encode(
            schemas.FitResponse(
                series_id,
                schemas.version_label(version),
                int(values.shape[0]),
                model_out(model),
                dt.datetime.fromtimestamp(created_at, dt.UTC),
            )
        )

    def _decode(self, req: falcon.Request, body: bytes | bytearray):
        """(detector params, timestamps, values) of a JSON or CSV body."""
        if media_type(req) == CSV:
            params = detector_from_query(req)
            return params, *csvbody.decode(body, self._min_points)
        if any(req.get_param(f.name) is not None for f in DETECTOR_PARAMS):
            raise BadRequest(
                "?kind=, ?k= and ?direction= are for CSV bodies; a JSON body "
                'gives its detector in the body: {"detector": {...}}'
            )
        request, timestamps, values = ingest.decode(body, fit_columns, self._min_points)
        return request.detector, timestamps, values
