"""POST /observe/{series_id} and /observe/{series_id}/batch: learn points as they come.

The single-point observe is a hot path: one read transaction, the detector, one
operation in the group commit, and the answer the operation encoded.
"""

from __future__ import annotations

import hashlib
import math
import re

import falcon
import numpy as np

from anomalyd import csvbody, ingest, schemas
from anomalyd.api.body import CSV, media_type, read_body, release
from anomalyd.api.common import check_series_id
from anomalyd.errors import BadRequest
from anomalyd.observer import Observer
from anomalyd.stats import Stats, counter_word
from anomalyd.stream_schemas import (
    ObserveBatchRequest,
    ObserveBatchResponse,
    ObserveResponse,
    observe_decoder,
)
from anomalyd.streams import InvalidPoints, Learned

# 1 to 200 printable ASCII characters (the contract).
KEY_RE = re.compile(r"[\x20-\x7e]{1,200}")
HEADER = "Idempotency-Key"

_encode = schemas.encoder.encode
_decode_point = observe_decoder.decode
# The request as /openapi.json shows it, with its columns decoded piece by piece.
batch_columns = ingest.columns_decoder(ObserveBatchRequest)
_POINTS = counter_word("points_observed")
_EPISODES = counter_word("episodes_opened")


def idempotency_key(req: falcon.Request) -> bytes | None:
    raw = req.get_header(HEADER)
    if raw is None:
        return None
    if KEY_RE.fullmatch(raw) is None:
        raise BadRequest(
            f"the {HEADER} header must be 1 to 200 printable ASCII characters, got "
            f"{raw[:210]!r}"
        )
    return raw.encode()


def decode_batch(req: falcon.Request, body: bytes | bytearray) -> tuple:
    """A batch body (JSON, or CSV with ``Content-Type: text/csv``) as int64 timestamps
    and float64 values, checked: at least one point, equal lengths, finite values,
    every timestamp form, in time order. The columns are decoded piece by piece into
    arrays (``anomalyd.ingest``), as fits and batch predicts are."""
    if media_type(req) == CSV:
        timestamps, values = csvbody.decode(body, 1)
    else:
        _, timestamps, values = ingest.decode(body, batch_columns, 1)
    back = np.flatnonzero(timestamps[1:] < timestamps[:-1])
    if back.size:
        i = int(back[0]) + 1
        raise InvalidPoints(
            f"$.timestamps[{i}] ({timestamps[i]}) is earlier than $.timestamps[{i - 1}]"
            f" ({timestamps[i - 1]}): a batch is in time order; nothing was learned"
        )
    return timestamps, values


def _single_answer(learned: Learned) -> bytes:
    record = learned.record
    return _encode(
        ObserveResponse(
            learned.anomalies[0],
            learned.scores[0],
            learned.first_seq < record.config.warmup,
            record.points,
        )
    )


def _batch_answer(learned: Learned) -> bytes:
    return _encode(
        ObserveBatchResponse(learned.anomalies, learned.scores, learned.record.points)
    )


class ObserveResource:
    def __init__(self, observer: Observer, stats: Stats, max_body: int) -> None:
        self._observe = observer.observe
        self._add = stats.add
        self._max_body = max_body

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        key = idempotency_key(req)
        body = read_body(req, self._max_body)
        try:
            point = _decode_point(body)
            digest = b"" if key is None else _digest(b"observe", body)
        finally:
            if type(body) is bytearray:  # decompressed
                release(body)
        value = point.value
        if not math.isfinite(value):
            raise InvalidPoints("$.value must be a finite number")
        timestamp = point.timestamp
        if type(timestamp) is not int:
            try:
                timestamp = schemas.parse_timestamp(timestamp)
            except ValueError as exc:
                raise InvalidPoints(str(exc)) from None
        done = self._observe(
            series_id, (timestamp,), (value,), _single_answer, key, digest
        )
        if done.points:
            self._add(_POINTS, 1)
            if done.opened:
                self._add(_EPISODES, 1)
        resp.data = done.answer


class BatchObserveResource:
    def __init__(self, observer: Observer, stats: Stats, max_body: int) -> None:
        self._observe = observer.observe
        self._add = stats.add
        self._max_body = max_body

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        key = idempotency_key(req)
        body = read_body(req, self._max_body, csv=True)
        try:
            timestamps, values = decode_batch(req, body)
            digest = b"" if key is None else _digest(b"batch", body)
        finally:
            release(body)
        done = self._observe(series_id, timestamps, values, _batch_answer, key, digest)
        if done.points:
            self._add(_POINTS, done.points)
            if done.opened:
                self._add(_EPISODES, done.opened)
        resp.data = done.answer


def _digest(route: bytes, body: bytes) -> bytes:
    """What a keyed request asked: its route and its exact body bytes."""
    return hashlib.blake2b(body, digest_size=16, person=route).digest()
