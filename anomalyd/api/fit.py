from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import falcon

from anomalyd import detectors, ingest, schemas
from anomalyd.api.common import check_series_id, model_out, read_body
from anomalyd.store import Store

# The request as /openapi.json shows it, with its columns decoded piece by piece.
fit_columns = ingest.columns_decoder(schemas.FitRequest)


class FitResource:
    def __init__(
        self, store: Store, min_points: int, max_body: int, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._min_points = min_points
        self._max_body = max_body
        self._clock = clock

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        body = read_body(req, self._max_body)
        request, timestamps, values = ingest.decode(body, fit_columns, self._min_points)
        params = request.detector
        del body, request  # the columns' arrays are all that is kept of the body
        model = detectors.fit(values, params)
        created_at = self._clock()
        version = self._store.add_version(
            series_id, model, timestamps, values, created_at
        )
        resp.data = schemas.encoder.encode(
            schemas.FitResponse(
                series_id,
                schemas.version_label(version),
                int(values.shape[0]),
                model_out(model),
                dt.datetime.fromtimestamp(created_at, dt.UTC),
            )
        )
