from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import falcon
import numpy as np

from anomalyd import detectors, schemas
from anomalyd.api.common import check_series_id, model_out, read_body
from anomalyd.detectors import InvalidTrainingData
from anomalyd.store import Store


def decode_training_data(
    body: bytes, decoder, min_points: int
) -> tuple[object, np.ndarray, np.ndarray]:
    """Decode a fit or batch body into checked int64 timestamps and float64 values."""
    request = decoder.decode(body)
    n = len(request.values)
    if len(request.timestamps) != n:
        raise InvalidTrainingData(
            f"$.timestamps has {len(request.timestamps)} items but $.values has {n}: "
            "they must be the same length"
        )
    if n < min_points:
        raise InvalidTrainingData(
            f"$.values has {n} points; at least min_points={min_points} are needed"
        )
    timestamps = np.array(request.timestamps, dtype=np.int64)
    values = np.array(request.values, dtype=np.float64)
    detectors.check_finite(values)
    return request, timestamps, values


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
        request, timestamps, values = decode_training_data(
            body, schemas.fit_decoder, self._min_points
        )
        model = detectors.fit(values, request.detector)
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
