"""GET /: a plain-HTML dashboard for browsers, a short JSON description for the rest.

The dashboard is server-rendered HTML with an inline stylesheet and the /plot SVGs: no
JavaScript, nothing fetched from another origin. Every value that reaches the page is
escaped, even the series ids whose alphabet cannot break HTML today.

- ``/`` lists the series (paged with ``?after=`` and ``?limit=``, like ``/series``), each
  with its latest version, its points and bounds, and links to its plot and versions.
- ``/?series_id=X`` shows the latest plot of one series and lists all its versions,
  each linking to its own plot.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from urllib.parse import quote

import falcon

import anomalyd
from anomalyd import schemas
from anomalyd.api.common import check_series_id, parse_page
from anomalyd.api.firing import firing_section
from anomalyd.api.html import HTML, e, href, page, plural
from anomalyd.api.listing import below, page_links, prefixed_page
from anomalyd.detectors import Model
from anomalyd.errors import BadRequest
from anomalyd.schemas import SERIES_ID_RE
from anomalyd.store import SeriesNotFound, Store, VersionNotFound

if TYPE_CHECKING:  # it imports this module
    from anomalyd.api.stream_dashboard import StreamDashboard

PAGE_SIZE = 50

ROUTES = [
    ("GET", "/", "this description; the HTML dashboard with Accept: text/html"),
    ("POST", "/fit/{series_id}", "train a new version of a series"),
    ("POST", "/predict/{series_id}[?version=vN]", "judge one point"),
    ("POST", "/predict/{series_id}/batch[?version=vN]", "judge many points"),
    ("GET", "/plot?series_id=X[&version=vN]", "a version drawn as SVG"),
    ("GET", "/plot?stream=X[&since=T&until=T]", "a stream's history drawn as SVG"),
    ("GET", "/series?limit=100&after=X", "the series, paged"),
    ("GET", "/series/{series_id}", "the versions of a series"),
    ("DELETE", "/series/{series_id}", "delete every version of a series"),
    ("POST", "/observe/{series_id}", "judge and learn one point of a stream"),
    ("POST", "/observe/{series_id}/batch", "judge and learn points of a stream"),
    ("GET", "/streams?limit=100&after=X", "the streams, paged"),
    ("PUT", "/streams/{series_id}", "create or configure a stream"),
    ("GET", "/streams/{series_id}", "a stream"),
    ("DELETE", "/streams/{series_id}", "forget a stream"),
    ("GET", "/streams/{series_id}/points", "a stream's retained history"),
    ("GET", "/streams/{series_id}/anomalies", "a stream's anomaly episodes"),
    ("GET", "/healthcheck", "status, series trained, latencies"),
    ("GET", "/metrics", "Prometheus metrics"),
    ("GET", "/openapi.json", "the OpenAPI document"),
]

DESCRIPTION = schemas.encoder.encode(
    {
        "name": "anomalyd",
        "version": anomalyd.__version__,
        "description": "self-hosted anomaly detection for time series",
        "routes": [
            {"method": method, "path": path, "summary": summary}
            for method, path, summary in ROUTES
        ],
    }
)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def _detector(model: Model) -> str:
    return f"{model.kind} k={model.k:g} {model.direction}"


def parse_prefix(req: falcon.Request) -> str:
    """``?prefix=`` of the search box: empty (the whole list) or the start of an id."""
    prefix = req.get_param("prefix") or ""
    if prefix and SERIES_ID_RE.fullmatch(prefix) is None:
        raise BadRequest(
            "prefix must be up to 200 characters from [A-Za-z0-9._:-] (the start of "
            f"a series_id), got {prefix[:210]!r}"
        )
    return prefix


class DashboardResource:
    def __init__(
        self, store: Store, streams: StreamDashboard | None = None, outbox=None
    ) -> None:
        self._store = store
        self._streams = streams
        self._outbox = outbox  # the alerts firing are shown first

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.vary = ["Accept"]
        resp.cache_control = ["no-store"]
        # Browsers ask for text/html first; curl's */* and API clients get JSON.
        if req.client_prefers(["application/json", "text/html"]) != "text/html":
            resp.data = DESCRIPTION
            return
        series_id = req.get_param("series_id")
        stream = req.get_param("stream") if self._streams is not None else None
        if series_id is not None and stream is not None:
            raise BadRequest("give series_id or stream, not both")
        if series_id is not None:
            text = self._series_page(check_series_id(series_id), req)
        elif stream is not None:
            title, body = self._streams.page(check_series_id(stream))
            text = page(title, body, _logout(req))
        else:
            text = self._index_page(req)
        resp.content_type = HTML
        resp.text = text

    # -- the list of series ------------------------------------------------------

    def _rows(
        self, limit: int, after: str | None, before: str | None, prefix: str
    ) -> list[tuple[str, int, int]]:
        """One page of live series whose id starts with ``prefix``."""
        return prefixed_page(self._after, self._before, limit, prefix, after, before)

    def _after(self, limit: int, start: str | None) -> list[tuple[str, int, int]]:
        return self._store.list_series(limit, start)[0]

    def _before(self, limit: int, end: str) -> list[tuple[str, int, int]]:
        return self._store.list_series_before(limit, end)[0]

    def _latest(self, series_id: str, latest: int, count: int):
        """The listed series' latest record, or None once it is deleted.

        Between the listing and this read the series may have been deleted (gone) or
        deleted and fitted again (the listed version is gone, a newer one is there):
        read its row again and try once more, a few times at most.
        """
        for _ in range(3):
            try:
                return latest, count, self._store.record(series_id, latest)[1]
            except SeriesNotFound:
                return None
            except VersionNotFound:
                again = self._store.list_series(1, below(series_id))[0]
                if not again or again[0][0] != series_id:
                    return None
                _, latest, count = again[0]
        return None

    def _index_page(self, req: falcon.Request) -> str:
        limit, after = parse_page(req, PAGE_SIZE)
        before = req.get_param("before")
        if before is not None:
            check_series_id(before)
            if after is not None:
                raise BadRequest("give after or before, not both")
        prefix = parse_prefix(req)
        # The streams' place in their own list, kept by the series' links.
        streams_at = self._streams.cursors(req) if self._streams else {}
        listed = self._rows(limit, after, before, prefix)
        rows = []
        for series_id, latest, count in listed:
            found = self._latest(series_id, latest, count)
            if found is None:
                continue  # deleted since the listing
            latest, count, record = found
            model = record.model
            rows.append(
                "<tr>"
                f'<td><a href="{href("/", series_id=series_id)}">{e(series_id)}</a></td>'
                f'<td><a class="plot" href="{href("/plot", series_id=series_id)}">'
                f"v{latest}</a></td>"
                f'<td class="num">{count}</td>'
                f'<td class="num">{record.points_used}</td>'
                f"<td>{e(_detector(model))}</td>"
                f'<td class="num">{_num(model.lower)}</td>'
                f'<td class="num">{_num(model.upper)}</td>'
                "</tr>"
            )
        if rows:
            table = (
                "<table><thead><tr><th>series</th><th>latest (plot)</th>"
                "<th>versions</th><th>points</th><th>detector</th><th>lower</th>"
                "<th>upper</th></tr></thead>\n<tbody>\n"
                + "\n".join(rows)
                + "\n</tbody></table>"
            )
        elif prefix:
            table = f"<p>No series id starts with {e(prefix)}.</p>"
        else:
            table = (
                "<p>No series on this page. Train one with POST /fit/{series_id}.</p>"
            )
        nav = self._nav(listed, limit, prefix, bool(after or before), streams_at)
        streams = ""
        if self._streams is not None:
            keep = {"limit": str(limit)} | ({"prefix": prefix} if prefix else {})
            at = {"after": after} if after else {"before": before} if before else {}
            streams = "\n" + self._streams.section(req, limit, prefix, keep | at)
        if streams:
            table = f"<h2>Series</h2>\n{table}"
        return page(
            "anomalyd",
            f"{self._heading(prefix)}\n{firing_section(self._outbox)}{table}\n"
            f"{nav}{streams}",
            _logout(req),
        )

    def _heading(self, prefix: str) -> str:
        search = (
            '<form method="get" action="/" role="search">'
            f"<label>{'id' if self._streams else 'series id'} starts with "
            '<input type="search" name="prefix" '
            f'value="{e(prefix)}" maxlength="200" pattern="[A-Za-z0-9._:\\-]*"></label> '
            "<button>search</button>"
            + (' <a href="/">show all</a>' if prefix else "")
            + "</form>"
        )
        trained = plural(self._store.series_trained(), "series", "series")
        streams = (
            f" · {plural(self._streams.count(), 'stream')}" if self._streams else ""
        )
        return f"<h1>anomalyd</h1>\n<p>{trained} trained{streams}</p>\n{search}"

    def _nav(
        self,
        listed: list[tuple[str, int, int]],
        limit: int,
        prefix: str,
        cursor: bool,
        streams_at: dict[str, str],
    ) -> str:
        links = page_links(
            listed,
            self._after,
            self._before,
            prefix,
            cursor,
            {"limit": str(limit)} | ({"prefix": prefix} if prefix else {}) | streams_at,
            ("after", "before"),
            ("first page", "previous page", "next page"),
        )
        return f"<nav>{' · '.join(links)}</nav>"

    # -- one series --------------------------------------------------------------

    def _series_page(self, series_id: str, req: falcon.Request) -> str:
        versions = self._store.versions(series_id)
        latest = versions[-1][0]
        rows = []
        for version, record in reversed(versions):
            model = record.model
            created = dt.datetime.fromtimestamp(record.created_at, dt.UTC)
            plot = href("/plot", series_id=series_id, version=f"v{version}")
            rows.append(
                "<tr>"
                f'<td><a class="plot" href="{plot}">v{version}</a></td>'
                f"<td>{e(created.strftime('%Y-%m-%d %H:%M:%S'))} UTC</td>"
                f'<td class="num">{record.points_used}</td>'
                f"<td>{e(_detector(model))}</td>"
                f'<td class="num">{_num(model.center)}</td>'
                f'<td class="num">{_num(model.scale)}</td>'
                f'<td class="num">{_num(model.lower)}</td>'
                f'<td class="num">{_num(model.upper)}</td>'
                "</tr>"
            )
        latest_plot = href("/plot", series_id=series_id, version=f"v{latest}")
        body = (
            f'<p><a href="/">all series</a></p>\n<h1>{e(series_id)}</h1>\n'
            f"<p>latest v{latest} · {plural(len(versions), 'version')} · "
            f'<a href="{href("/series/" + quote(series_id, safe=""))}">JSON</a></p>\n'
            f'<p><img src="{latest_plot}" width="1000" height="500" '
            f'alt="{e(series_id)} v{latest}"></p>\n'
            "<table><thead><tr><th>version (plot)</th><th>created</th><th>points</th>"
            "<th>detector</th><th>center</th><th>scale</th><th>lower</th><th>upper</th>"
            "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
        )
        return page(f"{series_id} · anomalyd", body, _logout(req))


def _logout(req: falcon.Request) -> str:
    """A log-out button in the footer when the page was opened with a session."""
    if not getattr(req.context, "session", False):
        return ""
    return (
        ' · <form class="inline" method="post" action="/logout">'
        "<button>log out</button></form>"
    )
