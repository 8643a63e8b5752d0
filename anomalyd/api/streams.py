"""/streams: create or configure, read, list and delete streams; their points and
anomaly episodes. ``add_stream_routes`` wires the streams' routes into the app."""

from __future__ import annotations

import re

import falcon
import msgspec

from anomalyd import schemas
from anomalyd.api.common import (
    check_series_id,
    parse_limit,
    parse_page,
    parse_time,
    read_body,
)
from anomalyd.api.observe import BatchObserveResource, ObserveResource
from anomalyd.errors import BadRequest
from anomalyd.observer import Alerts, Observer
from anomalyd.settings import Settings
from anomalyd.stats import Stats
from anomalyd.store.base import StoreBase
from anomalyd.store.streams import StreamTables
from anomalyd.stream_schemas import (
    AnomaliesPage,
    EpisodeOut,
    PointOut,
    PointsPage,
    StreamConfigOut,
    StreamDeleted,
    StreamOut,
    StreamPage,
    StreamSummary,
    settings_decoder,
)
from anomalyd.streams import StreamConfig, StreamRecord, utc

_encode = schemas.encoder.encode
POINTS_CURSOR = re.compile(r"p([0-9]{1,18})")
EPISODES_CURSOR = re.compile(r"e([0-9]{1,18})")


def _utc_or_none(seconds: int | None):
    return None if seconds is None else utc(seconds)


def stream_out(series_id: str, record: StreamRecord) -> StreamOut:
    config = record.config
    return StreamOut(
        series_id,
        record.points,
        _utc_or_none(record.first_timestamp),
        _utc_or_none(record.last_timestamp),
        record.last_value,
        record.last_score,
        record.episodes,
        _utc_or_none(record.last_anomaly),
        StreamConfigOut(
            config.threshold, config.direction, config.warmup, dict(config.labels)
        ),
        record.points < config.warmup,
        record.open_episode is not None,
    )


def _cursor(req: falcon.Request, pattern: re.Pattern) -> int:
    raw = req.get_param("after")
    if raw is None:
        return 0
    match = pattern.fullmatch(raw)
    if match is None:
        raise BadRequest(
            f"after must be the 'next' cursor of a previous page, got {raw[:40]!r}"
        )
    return int(match.group(1))


class StreamCollection:
    def __init__(self, tables: StreamTables) -> None:
        self._tables = tables

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page, following = self._tables.list(*parse_page(req, 100))
        resp.data = _encode(
            StreamPage(
                [
                    StreamSummary(
                        series_id,
                        r.points,
                        _utc_or_none(r.last_timestamp),
                        r.last_score,
                        r.episodes,
                        r.last_value,
                        _utc_or_none(r.last_anomaly),
                    )
                    for series_id, r in page
                ],
                following,
            )
        )


class StreamItem:
    def __init__(self, observer: Observer, tables: StreamTables, max_body: int):
        self._observer = observer
        self._tables = tables
        self._max_body = max_body

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        # No body at all creates (or leaves) the stream with its settings as they are.
        given = settings_decoder.decode(read_body(req, self._max_body) or b"{}")
        changes = {
            name: value
            for name, value in msgspec.structs.asdict(given).items()
            if value is not msgspec.UNSET
        }
        record = self._observer.configure(series_id, **changes)
        resp.data = _encode(stream_out(series_id, record))

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        resp.data = _encode(stream_out(series_id, self._tables.record(series_id)))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        points = self._observer.delete(series_id)
        resp.data = _encode(StreamDeleted(series_id, points))


class StreamPoints:
    def __init__(self, tables: StreamTables) -> None:
        self._tables = tables

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        rows, following = self._tables.points(
            series_id,
            parse_time(req, "since"),
            _cursor(req, POINTS_CURSOR),
            parse_limit(req, 100),
        )
        points = [
            PointOut(utc(t), v, s, bool(a))
            for t, v, s, a in zip(
                rows["t"].tolist(),
                rows["v"].tolist(),
                rows["s"].tolist(),
                rows["a"].tolist(),
                strict=True,
            )
        ]
        resp.data = _encode(
            PointsPage(points, None if following is None else f"p{following}")
        )


class StreamAnomalies:
    def __init__(self, tables: StreamTables) -> None:
        self._tables = tables

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        episodes, following = self._tables.episodes(
            series_id,
            parse_time(req, "since"),
            _cursor(req, EPISODES_CURSOR),
            parse_limit(req, 100),
        )
        resp.data = _encode(
            AnomaliesPage(
                [
                    EpisodeOut(
                        utc(e.start),
                        utc(e.end),
                        e.points,
                        e.peak_score,
                        e.peak_value,
                        e.open,
                        utc(e.peak_timestamp),
                    )
                    for e in episodes
                ],
                None if following is None else f"e{following}",
            )
        )


def add_stream_routes(
    app: falcon.App, settings: Settings, store: StoreBase, stats: Stats, alerts: Alerts
) -> StreamTables:
    """The streams' routes; opens their tables (once, when the app is built)."""
    tables = StreamTables(store, settings.stream_history)
    defaults = StreamConfig(
        settings.stream_threshold, settings.stream_direction, settings.stream_warmup
    )
    observer = Observer(store, tables, defaults, alerts)
    max_body = settings.max_body_bytes
    app.add_route("/observe/{series_id}", ObserveResource(observer, stats, max_body))
    app.add_route(
        "/observe/{series_id}/batch", BatchObserveResource(observer, stats, max_body)
    )
    app.add_route("/streams", StreamCollection(tables))
    app.add_route("/streams/{series_id}", StreamItem(observer, tables, max_body))
    app.add_route("/streams/{series_id}/points", StreamPoints(tables))
    app.add_route("/streams/{series_id}/anomalies", StreamAnomalies(tables))
    return tables
