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
import html
from urllib.parse import quote, urlencode

import falcon

import anomalyd
from anomalyd import schemas
from anomalyd.api.common import check_series_id, parse_page
from anomalyd.detectors import Model
from anomalyd.store import SeriesNotFound, Store

PAGE_SIZE = 50
HTML = "text/html; charset=utf-8"

ROUTES = [
    ("GET", "/", "this description; the HTML dashboard with Accept: text/html"),
    ("POST", "/fit/{series_id}", "train a new version of a series"),
    ("POST", "/predict/{series_id}[?version=vN]", "judge one point"),
    ("POST", "/predict/{series_id}/batch[?version=vN]", "judge many points"),
    ("GET", "/plot?series_id=X[&version=vN]", "a version drawn as SVG"),
    ("GET", "/series?limit=100&after=X", "the series, paged"),
    ("GET", "/series/{series_id}", "the versions of a series"),
    ("DELETE", "/series/{series_id}", "delete every version of a series"),
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

_STYLE = """
body{font-family:DejaVu Sans,Liberation Sans,Arial,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}
th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}
a{color:#1f5fa8}
nav{margin:1em 0}
img{border:1px solid #ddd;max-width:100%;height:auto}
.muted{color:#777}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def _href(path: str, **params: str) -> str:
    """An escaped href: parameters URL-encoded, then the whole HTML-escaped."""
    return _e(path + "?" + urlencode(params, quote_via=quote) if params else path)


def _detector(model: Model) -> str:
    return f"{model.kind} k={model.k:g} {model.direction}"


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n"
        f'<p class="muted">anomalyd {_e(anomalyd.__version__)} · '
        '<a href="/openapi.json">openapi.json</a> · '
        '<a href="/healthcheck">healthcheck</a> · <a href="/metrics">metrics</a></p>\n'
        "</body></html>\n"
    )


class DashboardResource:
    def __init__(self, store: Store) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.vary = ["Accept"]
        resp.cache_control = ["no-store"]
        # Browsers ask for text/html first; curl's */* and API clients get JSON.
        if req.client_prefers(["application/json", "text/html"]) != "text/html":
            resp.data = DESCRIPTION
            return
        series_id = req.get_param("series_id")
        if series_id is not None:
            text = self._series_page(check_series_id(series_id))
        else:
            text = self._index_page(req)
        resp.content_type = HTML
        resp.text = text

    def _index_page(self, req: falcon.Request) -> str:
        limit, after = parse_page(req, PAGE_SIZE)
        page, following = self._store.list_series(limit, after)
        rows = []
        for series_id, latest, count in page:
            try:
                # A series deleted since the listing is left out.
                record = self._store.record(series_id, latest)[1]
            except SeriesNotFound:
                continue
            model = record.model
            rows.append(
                "<tr>"
                f'<td><a href="{_href("/", series_id=series_id)}">{_e(series_id)}</a></td>'
                f'<td><a class="plot" href="{_href("/plot", series_id=series_id)}">'
                f"v{latest}</a></td>"
                f'<td class="num">{count}</td>'
                f'<td class="num">{record.points_used}</td>'
                f"<td>{_e(_detector(model))}</td>"
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
        else:
            table = (
                "<p>No series on this page. Train one with POST /fit/{series_id}.</p>"
            )
        nav = []
        if after is not None:
            nav.append(f'<a href="{_href("/", limit=str(limit))}">first page</a>')
        if following is not None:
            nav.append(
                f'<a rel="next" href="{_href("/", after=following, limit=str(limit))}">'
                "next page</a>"
            )
        heading = f"<h1>anomalyd</h1>\n<p>{self._store.series_trained()} series trained"
        if after is not None:
            heading += f", after {_e(after)}"
        heading += "</p>"
        return _page("anomalyd", f"{heading}\n{table}\n<nav>{' · '.join(nav)}</nav>")

    def _series_page(self, series_id: str) -> str:
        versions = self._store.versions(series_id)
        latest = versions[-1][0]
        rows = []
        for version, record in reversed(versions):
            model = record.model
            created = dt.datetime.fromtimestamp(record.created_at, dt.UTC)
            plot = _href("/plot", series_id=series_id, version=f"v{version}")
            rows.append(
                "<tr>"
                f'<td><a class="plot" href="{plot}">v{version}</a></td>'
                f"<td>{_e(created.strftime('%Y-%m-%d %H:%M:%S'))} UTC</td>"
                f'<td class="num">{record.points_used}</td>'
                f"<td>{_e(_detector(model))}</td>"
                f'<td class="num">{_num(model.center)}</td>'
                f'<td class="num">{_num(model.scale)}</td>'
                f'<td class="num">{_num(model.lower)}</td>'
                f'<td class="num">{_num(model.upper)}</td>'
                "</tr>"
            )
        latest_plot = _href("/plot", series_id=series_id, version=f"v{latest}")
        body = (
            f'<p><a href="/">all series</a></p>\n<h1>{_e(series_id)}</h1>\n'
            f"<p>latest v{latest} · {len(versions)} versions · "
            f'<a href="{_href("/series/" + quote(series_id, safe=""))}">JSON</a></p>\n'
            f'<p><img src="{latest_plot}" width="1000" height="500" '
            f'alt="{_e(series_id)} v{latest}"></p>\n'
            "<table><thead><tr><th>version (plot)</th><th>created</th><th>points</th>"
            "<th>detector</th><th>center</th><th>scale</th><th>lower</th><th>upper</th>"
            "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
        )
        return _page(f"{series_id} · anomalyd", body)
