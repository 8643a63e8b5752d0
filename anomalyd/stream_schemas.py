"""Request and response types of the streams' routes (``/observe``, ``/streams``).

As in ``anomalyd.schemas``: the service decodes and encodes with these Structs, and
``/openapi.json`` is generated from them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from anomalyd.schemas import Timestamp

Direction = Literal["upper", "lower", "both"]
# Prometheus label names; names starting with "__" are Prometheus' own.
LABEL_NAME_PATTERN = r"^(?!__)[a-zA-Z_][a-zA-Z0-9_]{0,63}$"
MAX_LABELS = 20
LABEL_BYTES = 2048  # names and values together, UTF-8: the record stays small
MAX_WARMUP = 1_000_000_000

LabelName = Annotated[str, Meta(pattern=LABEL_NAME_PATTERN)]
LabelValue = Annotated[str, Meta(max_length=128)]
Labels = Annotated[dict[LabelName, LabelValue], Meta(max_length=MAX_LABELS)]
Threshold = Annotated[float, Meta(gt=0, le=1)]
Warmup = Annotated[int, Meta(ge=0, le=MAX_WARMUP)]


class ObserveRequest(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    # Any timestamp form (anomalyd.timestamps): Unix seconds, a string of them, ISO-8601.
    timestamp: Timestamp
    value: float


class ObserveBatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    # In time order; each as for ObserveRequest (forms may be mixed).
    timestamps: list[Timestamp]
    values: list[float]


class ObserveResponse(msgspec.Struct, gc=False):
    anomaly: bool
    score: float
    warming_up: bool
    points: int


class ObserveBatchResponse(msgspec.Struct):
    anomaly: list[bool]
    score: list[float]
    points: int


class StreamSettings(msgspec.Struct, forbid_unknown_fields=True):
    """PUT /streams/{id}: every field optional (omitted: kept, or the default)."""

    threshold: Threshold | UnsetType = UNSET
    direction: Direction | UnsetType = UNSET
    warmup: Warmup | UnsetType = UNSET
    labels: Labels | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.labels is not UNSET:
            size = sum(len(k) + len(v.encode()) for k, v in self.labels.items())
            if size > LABEL_BYTES:
                raise ValueError(
                    f"$.labels: {size} bytes of names and values (UTF-8), at most "
                    f"{LABEL_BYTES}"
                )


class StreamConfigOut(msgspec.Struct):
    threshold: float
    direction: Direction
    warmup: int
    labels: dict[str, str]


class StreamOut(msgspec.Struct):
    series_id: str
    points: int
    first_timestamp: dt.datetime | None
    last_timestamp: dt.datetime | None
    last_value: float | None
    last_score: float | None
    anomalies: int
    last_anomaly: dt.datetime | None
    config: StreamConfigOut
    # Beyond the contract: still in its warm-up, and an episode is in progress.
    warming_up: bool
    open_anomaly: bool


class StreamSummary(msgspec.Struct):
    series_id: str
    points: int
    last_timestamp: dt.datetime | None
    last_score: float | None
    anomalies: int
    # Beyond the contract, for lists such as the dashboard's.
    last_value: float | None
    last_anomaly: dt.datetime | None


class StreamPage(msgspec.Struct):
    streams: list[StreamSummary]
    next: str | None


class StreamDeleted(msgspec.Struct):
    series_id: str
    deleted_points: int


class PointOut(msgspec.Struct, gc=False):
    timestamp: dt.datetime
    value: float
    score: float
    anomaly: bool


class PointsPage(msgspec.Struct):
    points: list[PointOut]
    next: str | None


class EpisodeOut(msgspec.Struct):
    start: dt.datetime
    end: dt.datetime
    points: int
    peak_score: float
    peak_value: float
    open: bool
    # Beyond the contract: when the peak was.
    peak_timestamp: dt.datetime


class AnomaliesPage(msgspec.Struct):
    anomalies: list[EpisodeOut]
    next: str | None


observe_decoder = msgspec.json.Decoder(ObserveRequest)
settings_decoder = msgspec.json.Decoder(StreamSettings)

BODY_TYPES = (
    ObserveRequest,
    ObserveResponse,
    ObserveBatchRequest,
    ObserveBatchResponse,
    StreamSettings,
    StreamOut,
    StreamPage,
    StreamDeleted,
    PointsPage,
    AnomaliesPage,
)
