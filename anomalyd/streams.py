"""Streams: series learned online, point by point (the domain: no LMDB, no HTTP).

A stream's whole durable record is one ``StreamRecord``: its configuration, counters,
its last point, the anomaly episode in progress (if any) and the detector's state
(``anomalyd.online``). ``learn(record, timestamps, values)`` judges and learns points
and works out what the store must write: the new record, the verdicts, and the
episodes opened, extended or closed. It is pure, so "a batch answers exactly what the
same points sent one by one answer" holds here and is tested here.

A point is an anomaly when its score is at or above the stream's threshold and the
stream had learned at least ``warmup`` points before it (the first ``warmup`` points
are the warm-up). An episode is a run of anomalous points with no normal point
between them; it is open until a normal point follows it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal, NamedTuple

import msgspec
import numpy as np

from anomalyd import online
from anomalyd.alerting import Alert

Direction = Literal["upper", "lower", "both"]

# Episodes kept per stream (the oldest go first); the count of episodes is kept whole.
EPISODES_KEPT = 10_000
# Answered keyed requests remembered per stream (the contract's last 1,000).
KEYS_KEPT = 1_000


class StreamNotFound(LookupError):
    """No stream of that id (404)."""


class PointsOutOfOrder(ValueError):
    """A point earlier than the stream's last point (409): nothing was learned."""


class InvalidPoints(ValueError):
    """Points that decoded but cannot be learned (422); the message names the field."""


class KeyReused(ValueError):
    """An Idempotency-Key answered before for a different request (422)."""


class StreamConfig(msgspec.Struct, array_like=True, frozen=True):
    threshold: float
    direction: Direction
    warmup: int
    labels: dict[str, str] = {}


class Episode(msgspec.Struct, array_like=True):
    """A run of anomalous points; ``number`` counts a stream's episodes from 1."""

    number: int
    start: int  # Unix seconds of its first point
    end: int  # ... of its last point so far
    points: int
    peak_score: float
    peak_value: float
    peak_timestamp: int
    open: bool
    first_seq: int  # learn order (from 0) of its first point


class StreamRecord(msgspec.Struct, array_like=True):
    config: StreamConfig
    state: bytes  # the detector's (online.STATE_SIZE bytes)
    points: int = 0
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    last_value: float | None = None
    last_score: float | None = None
    episodes: int = 0  # episodes ever opened (also the number of the last one)
    last_anomaly: int | None = None  # Unix seconds of the last anomalous point
    open_episode: Episode | None = None
    # Storage bookkeeping (anomalyd.store.streams): the oldest history block kept,
    # and how many keyed answers were ever stored.
    history_from: int = 0
    keys: int = 0
    # The alert firing (anomalyd.alerting): episodes grouped until the stream is
    # quiet for alert_resolve_after seconds of stream time. Appended last, so
    # records stored before alerts existed still decode.
    alert: Alert | None = None


class Learned(NamedTuple):
    record: StreamRecord  # the stream after these points
    first_seq: int  # learn order of the first point
    timestamps: list[int]
    values: list[float]
    scores: list[float]
    anomalies: list[bool]
    episodes: list[Episode]  # opened, extended or closed, in order (copies)
    opened: int  # how many of them were opened by these points


def new_record(config: StreamConfig) -> StreamRecord:
    """A stream that has learned nothing."""
    return StreamRecord(config, online.new_state())


def utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def learn(
    record: StreamRecord,
    timestamps: Sequence[int] | np.ndarray,
    values: Sequence[float] | np.ndarray,
) -> Learned:
    """Judge then learn the points in order. Raises (and learns nothing) when the
    first point is earlier than the stream's last (``PointsOutOfOrder``) or the points
    cannot be learned (``InvalidPoints``: unsorted, not finite, lengths differ)."""
    ts = timestamps.tolist() if isinstance(timestamps, np.ndarray) else timestamps
    xs = values.tolist() if isinstance(values, np.ndarray) else values
    if not xs:
        raise InvalidPoints("$.values: at least one point is needed")
    last = record.last_timestamp
    if last is not None and ts[0] < last:
        raise PointsOutOfOrder(
            f"$.timestamp{'s[0]' if len(ts) > 1 else ''} {ts[0]} "
            f"({utc(ts[0]):%Y-%m-%dT%H:%M:%SZ}) is earlier than the stream's last "
            f"point, {last} ({utc(last):%Y-%m-%dT%H:%M:%SZ}): a stream never goes "
            "back in time; nothing was learned"
        )
    config = record.config
    try:
        state, scored = online.observe(record.state, ts, xs, config.direction)
    except online.InvalidPoints as exc:
        raise InvalidPoints(f"$.{exc}") from None
    scores = scored.tolist()

    threshold = config.threshold
    warmup = config.warmup
    first_seq = seq = record.points
    number = record.episodes
    last_anomaly = record.last_anomaly
    episode = record.open_episode
    if episode is not None:
        episode = msgspec.structs.replace(episode)  # the record given stays as it was
    touched: list[Episode] = []
    anomalies: list[bool] = []
    opened = 0
    for t, x, s in zip(ts, xs, scores, strict=True):
        if s >= threshold and seq >= warmup:
            if episode is None:
                number += 1
                opened += 1
                episode = Episode(number, t, t, 1, s, x, t, True, seq)
                touched.append(episode)
            else:
                episode.end = t
                episode.points += 1
                if s > episode.peak_score:
                    episode.peak_score = s
                    episode.peak_value = x
                    episode.peak_timestamp = t
                if not touched or touched[-1] is not episode:
                    touched.append(episode)
            last_anomaly = t
            anomalies.append(True)
        else:
            if episode is not None:
                episode.open = False
                if not touched or touched[-1] is not episode:
                    touched.append(episode)
                episode = None
            anomalies.append(False)
        seq += 1

    after = msgspec.structs.replace(
        record,
        state=state,
        points=seq,
        first_timestamp=ts[0]
        if record.first_timestamp is None
        else record.first_timestamp,
        last_timestamp=ts[-1],
        last_value=xs[-1],
        last_score=scores[-1],
        episodes=number,
        last_anomaly=last_anomaly,
        open_episode=None if episode is None else msgspec.structs.replace(episode),
    )
    return Learned(after, first_seq, ts, xs, scores, anomalies, touched, opened)


def configure(
    record: StreamRecord,
    threshold: float | None = None,
    direction: Direction | None = None,
    warmup: int | None = None,
    labels: dict[str, str] | None = None,
) -> StreamRecord:
    """The stream with the given settings changed (None: kept). The learned state is
    kept; verdicts already given are not revised."""
    old = record.config
    config = StreamConfig(
        old.threshold if threshold is None else threshold,
        old.direction if direction is None else direction,
        old.warmup if warmup is None else warmup,
        old.labels if labels is None else labels,
    )
    return msgspec.structs.replace(record, config=config)
