"""GET /plot?stream=ID[&since=&until=]: a stream's retained history drawn as SVG.

``anomalyd.api.plot`` hands requests that name a stream to ``StreamPlot``.

Caching: a stream changes at every observe, so the answer is ``no-cache`` (a browser
keeps it but asks again each time) with a strong ETag made from the stream's record
(its points learned, configuration, last point, detector state), the ``since`` and
``until`` asked for, the ``stream_history`` setting and the anomalyd and pygal
releases. Everything drawn follows from those, and the same points draw the same bytes.
A revalidation costs one read of the record: until the stream learns a point (or is
configured) the answer is a 304 that reads no history and draws nothing.
"""

from __future__ import annotations

import hashlib

import falcon
import msgspec
import pygal

import anomalyd
from anomalyd.api.common import check_series_id, if_none_matches, parse_time
from anomalyd.errors import BadRequest
from anomalyd.store.streams import StreamTables
from anomalyd.stream_plot import render_stream
from anomalyd.streams import StreamRecord

SVG = "image/svg+xml"
_encode_record = msgspec.msgpack.Encoder().encode


def stream_plot_etag(
    series_id: str,
    record: StreamRecord,
    since: int | None,
    until: int | None,
    history: int,
) -> str:
    """The strong validator of a stream's drawing (see the module's docstring)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(
        repr(
            (anomalyd.__version__, pygal.__version__, series_id, since, until, history)
        ).encode()
    )
    digest.update(_encode_record(record))
    return f"s{record.points}-{digest.hexdigest()}"


class StreamPlot:
    def __init__(self, tables: StreamTables, shared_cache: bool = True) -> None:
        self._tables = tables
        # With an API token configured, a shared cache must not keep what needed it.
        self._scope = "public" if shared_cache else "private"

    def on_get(self, req: falcon.Request, resp: falcon.Response, stream: str) -> None:
        check_series_id(stream)
        if req.get_param("version") is not None:
            raise BadRequest(
                "version is for the plot of a fitted series (?series_id=X&version=vN); "
                "a stream has no versions"
            )
        since, until = parse_time(req, "since"), parse_time(req, "until")
        if since is not None and until is not None and since > until:
            raise BadRequest(f"since ({since}) is later than until ({until})")
        resp.cache_control = [self._scope, "no-cache"]
        if req.if_none_match:
            record = self._tables.record(stream)
            etag = stream_plot_etag(stream, record, since, until, self._tables.history)
            if if_none_matches(req.if_none_match, etag):
                resp.etag = etag
                resp.status = falcon.HTTP_304
                return
        record, rows, first = self._tables.retained(stream, since, until)
        resp.etag = stream_plot_etag(stream, record, since, until, self._tables.history)
        resp.content_type = SVG
        resp.data = render_stream(
            stream,
            record.config,
            record.points,
            rows["t"],
            rows["v"],
            rows["s"],
            rows["a"].astype(bool),
            (since, until),
            # The first points of the stream are its warm-up: never anomalies.
            warming=max(0, min(len(rows), record.config.warmup - first)),
        )
