from __future__ import annotations

import math

import falcon

from anomalyd import schemas
from anomalyd.api.common import check_series_id, parse_version, read_body
from anomalyd.api.fit import decode_training_data
from anomalyd.detectors import InvalidInput
from anomalyd.store import Store

_decode_point = schemas.predict_decoder.decode
_encode = schemas.encoder.encode
_PredictResponse = schemas.PredictResponse


class PredictResource:
    """The hot path: one store read for the latest version, the model from the LRU."""

    def __init__(self, store: Store, max_body: int) -> None:
        self._model = store.model
        self._max_body = max_body

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        point = _decode_point(read_body(req, self._max_body))
        value = point.value
        if not math.isfinite(value):
            raise InvalidInput("$.value must be a finite number")
        try:
            schemas.parse_timestamp(point.timestamp)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        version, model = self._model(series_id, parse_version(req))
        anomaly, score, threshold = model.judge(value)
        resp.data = _encode(_PredictResponse(anomaly, f"v{version}", score, threshold))


class BatchPredictResource:
    def __init__(self, store: Store, max_body: int) -> None:
        self._store = store
        self._max_body = max_body

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        body = read_body(req, self._max_body)
        _, _, values = decode_training_data(body, schemas.batch_decoder, 1)
        version, model = self._store.model(series_id, parse_version(req))
        anomalies, scores = model.judge_many(values)
        resp.data = _encode(
            schemas.BatchPredictResponse(
                schemas.version_label(version), anomalies.tolist(), scores.tolist()
            )
        )
