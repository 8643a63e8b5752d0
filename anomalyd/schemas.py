"""Request and response types, with one decoder per request type and one encoder.

These Structs are the single source of truth: the service decodes with them and
``/openapi.json`` is generated from them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import msgspec

from anomalyd.detectors import DetectorParams, Direction, Kind
from anomalyd.timestamps import MAX_TIMESTAMP, TimestampIn, seconds

__all__ = ["MAX_TIMESTAMP", "TimestampIn"]
SERIES_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,200}$"
SERIES_ID_RE = re.compile(SERIES_ID_PATTERN)
VERSION_RE = re.compile(r"^v?([1-9][0-9]{0,9})$")

# Unix seconds as an integer, a number with a fraction, or a string of digits; or an
# ISO-8601 date-time string (see anomalyd.timestamps).
Timestamp = TimestampIn
SeriesId = Annotated[str, msgspec.Meta(pattern=SERIES_ID_PATTERN)]
VersionLabel = Annotated[str, msgspec.Meta(pattern=r"^v[1-9][0-9]*$")]


class FitRequest(msgspec.Struct, forbid_unknown_fields=True):
    timestamps: list[Timestamp]
    values: list[float]
    detector: DetectorParams = DetectorParams()


class BatchPredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    timestamps: list[Timestamp]
    values: list[float]


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    timestamp: Timestamp
    value: float


class ModelOut(msgspec.Struct, omit_defaults=True):
    kind: Kind
    k: float
    direction: Direction
    center: float
    scale: float
    lower: float | None
    upper: float | None
    # 3sigma reports its center and scale under their usual names too.
    mean: float | None = None
    std: float | None = None
    # robust: median and MAD (scale = 1.4826 * mad).
    median: float | None = None
    mad: float | None = None


class FitResponse(msgspec.Struct):
    series_id: str
    version: VersionLabel
    points_used: int
    model: ModelOut
    created_at: dt.datetime


class PredictResponse(msgspec.Struct, gc=False):
    anomaly: bool
    model_version: VersionLabel
    score: float
    threshold: float


class BatchPredictResponse(msgspec.Struct):
    model_version: VersionLabel
    anomaly: list[bool]
    score: list[float]


class SeriesSummary(msgspec.Struct):
    series_id: str
    latest: VersionLabel
    versions: int


class SeriesPage(msgspec.Struct):
    series: list[SeriesSummary]
    next: str | None


class VersionOut(msgspec.Struct):
    version: VersionLabel
    points_used: int
    created_at: dt.datetime
    model: ModelOut


class SeriesDetail(msgspec.Struct):
    series_id: str
    latest: VersionLabel
    versions: list[VersionOut]


class DeleteResponse(msgspec.Struct):
    series_id: str
    deleted_versions: int


class ErrorBody(msgspec.Struct):
    title: str
    description: str


fit_decoder = msgspec.json.Decoder(FitRequest)
predict_decoder = msgspec.json.Decoder(PredictRequest)
batch_decoder = msgspec.json.Decoder(BatchPredictRequest)
encoder = msgspec.json.Encoder()


def parse_timestamp(raw: float | str) -> int:
    """Unix seconds (floored) from any accepted timestamp form; ValueError naming
    ``$.timestamp`` when it is none of them (see anomalyd.timestamps)."""
    return seconds(raw)


def version_label(version: int) -> str:
    return f"v{version}"
