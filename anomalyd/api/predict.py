from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import falcon
import numpy as np

from anomalyd import csvbody, ingest, schemas
from anomalyd.api.body import CSV, media_type, read_body, release
from anomalyd.api.common import check_series_id, parse_version
from anomalyd.api.large import LargeRequests
from anomalyd.detectors import InvalidInput, Model
from anomalyd.store import Store

_decode_point = schemas.predict_decoder.decode
_encode = schemas.encoder.encode
_PredictResponse = schemas.PredictResponse

# The request as /openapi.json shows it, with its columns decoded piece by piece.
batch_columns = ingest.columns_decoder(schemas.BatchPredictRequest)
# Points per piece of a large answer: each piece is one short encode (the GIL changes
# hands between pieces) and the answer is never whole in memory.
ANSWER_PIECE = 32 * 1024


class PredictResource:
    """The hot path: one store read for the latest version, the model from the LRU."""

    def __init__(self, store: Store, max_body: int) -> None:
        self._model = store.model
        self._max_body = max_body

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        body = read_body(req, self._max_body)
        try:
            point = _decode_point(body)
        finally:
            if type(body) is bytearray:  # decompressed
                release(body)
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
    def __init__(
        self, store: Store, max_body: int, large: LargeRequests | None = None
    ) -> None:
        self._store = store
        self._max_body = max_body
        self._large = large or LargeRequests(0)

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
                values = self._values(req, body)
            finally:
                release(body)
            del body
            version, model = self._store.model(series_id, parse_version(req))
            label = schemas.version_label(version)
            if values.shape[0] <= ANSWER_PIECE:
                anomalies, scores = model.judge_many(values)
                resp.data = _encode(
                    schemas.BatchPredictResponse(
                        label, anomalies.tolist(), scores.tolist()
                    )
                )
                return
            # Sent as it is encoded (chunked transfer coding), piece by piece; the
            # answer keeps the slot until it is sent.
            resp.content_type = falcon.MEDIA_JSON
            resp.stream = StreamedAnswer(
                batch_answer(label, model, values), self._large.leave if held else None
            )
            held = False  # handed over to the answer
        finally:
            if held:
                self._large.leave()

    def _values(self, req: falcon.Request, body: bytes | bytearray) -> np.ndarray:
        # The timestamps are checked, not kept: a verdict does not need them.
        if media_type(req) == CSV:
            return csvbody.decode(body, 1, keep_timestamps=False)[1]
        return ingest.decode(body, batch_columns, 1, keep_timestamps=False)[2]


class StreamedAnswer:
    """A WSGI body that calls ``done`` once when closed: the server closes the body
    it was given whether it sent it all, part of it, or none (a plain generator
    that never started would skip its ``finally``)."""

    def __init__(self, pieces: Iterator[bytes], done: Callable[[], None] | None):
        self._pieces = pieces
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def close(self) -> None:
        done, self._done = self._done, None
        try:
            close = getattr(self._pieces, "close", None)
            if close is not None:
                close()
        finally:
            if done is not None:
                done()


def batch_answer(label: str, model: Model, values: np.ndarray) -> Iterator[bytes]:
    """The bytes of ``BatchPredictResponse`` for ``values``, in pieces: exactly what
    encoding it whole gives, without the lists of every verdict and score."""
    yield b'{"model_version":' + _encode(label) + b',"anomaly":['
    for which, close in ((0, b'],"score":['), (1, b"]}")):
        for start in range(0, values.shape[0], ANSWER_PIECE):
            part = model.judge_many(values[start : start + ANSWER_PIECE])[which]
            piece = _encode(part.tolist())
            yield piece[1:-1] if start == 0 else b"," + piece[1:-1]
        yield close
