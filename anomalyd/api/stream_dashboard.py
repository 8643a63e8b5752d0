"""The dashboard's streams: a section of the index page, and a page per stream.

``anomalyd.api.dashboard`` calls these; the HTML rules are its own (plain HTML, no
JavaScript, every value escaped).

- The index lists the streams under the series, in id order, paged both ways with
  ``?streams_after=`` and ``?streams_before=`` (the series keep ``after`` and
  ``before``: each list pages on its own and the links of one keep the other's place),
  filtered by the same ``?prefix=`` search. Each row gives the last point, its value
  and score, the episodes and the last anomaly, and links to the stream's page and
  plot.
- ``/?stream=X``: the stream's plot, its settings, and its recent anomaly episodes,
  newest first, each with a link to the plot of the time around it while its points
  are still in the retained history.
"""

from __future__ import annotations

from urllib.parse import quote

import falcon

from anomalyd.api.common import check_series_id
from anomalyd.api.html import e, href, plural
from anomalyd.api.listing import page_links, prefixed_page
from anomalyd.errors import BadRequest
from anomalyd.store.streams import StreamTables
from anomalyd.streams import StreamRecord, utc

# Episodes listed on a stream's page (all of them: GET /streams/{id}/anomalies).
RECENT_EPISODES = 20
CURSORS = ("streams_after", "streams_before")
Row = tuple[str, StreamRecord]


def _when(seconds: int | None, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    """UTC, as every time on the dashboard."""
    return "–" if seconds is None else utc(seconds).strftime(form)


def _minute(seconds: int | None) -> str:
    return _when(seconds, "%Y-%m-%d %H:%M")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def _points(record: StreamRecord) -> str:
    if record.points < record.config.warmup:
        return f'<span class="muted">warming up</span> {record.points}'
    return str(record.points)


def _last_anomaly(record: StreamRecord) -> str:
    """When the last anomalous point was; in red while its episode is open."""
    if record.open_episode is not None:
        return f'<td class="error">{_minute(record.last_anomaly)} open</td>'
    return f"<td>{_minute(record.last_anomaly)}</td>"


class StreamDashboard:
    def __init__(self, tables: StreamTables) -> None:
        self._tables = tables

    def count(self) -> int:
        return self._tables.count()

    def cursors(self, req: falcon.Request) -> dict[str, str]:
        """The streams' place in the list (for the series' links to keep), checked."""
        found = {}
        for name in CURSORS:
            value = req.get_param(name)
            if value is not None:
                found[name] = check_series_id(value)
        if len(found) == 2:
            raise BadRequest("give streams_after or streams_before, not both")
        return found

    # -- the index's section -------------------------------------------------------

    def _rows(
        self, limit: int, after: str | None, before: str | None, prefix: str
    ) -> list[Row]:
        """As the series' rows (``anomalyd.api.listing.prefixed_page``)."""
        return prefixed_page(
            self._after, self._tables.list_before, limit, prefix, after, before
        )

    def _after(self, limit: int, start: str | None) -> list[Row]:
        return self._tables.list(limit, start)[0]

    def _nav(
        self, rows: list[Row], keep: dict[str, str], prefix: str, cursor: bool
    ) -> str:
        links = page_links(
            rows,
            self._after,
            self._tables.list_before,
            prefix,
            cursor,
            keep,
            CURSORS,
            ("first page of streams", "previous streams", "next streams"),
        )
        return f'<nav class="streams">{" · ".join(links)}</nav>'

    def section(
        self, req: falcon.Request, limit: int, prefix: str, keep: dict[str, str]
    ) -> str:
        """The streams' part of the index; ``keep``: the query parameters its links
        carry (limit, prefix, the series' place)."""
        cursors = self.cursors(req)
        after, before = (cursors.get(name) for name in CURSORS)
        rows = self._rows(limit, after, before, prefix)
        lines = []
        for series_id, record in rows:
            lines.append(
                "<tr>"
                f'<td><a href="{href("/", stream=series_id)}">{e(series_id)}</a></td>'
                f'<td><a class="plot" href="{href("/plot", stream=series_id)}">'
                "plot</a></td>"
                f'<td class="num">{_points(record)}</td>'
                f"<td>{_minute(record.last_timestamp)}</td>"
                f'<td class="num">{_num(record.last_value)}</td>'
                f'<td class="num">{_num(record.last_score)}</td>'
                f'<td class="num">{record.episodes}</td>'
                f"{_last_anomaly(record)}"
                "</tr>"
            )
        if lines:
            table = (
                '<table class="streams"><thead><tr><th>stream</th><th>plot</th>'
                "<th>points</th><th>last point</th><th>value</th>"
                "<th>score</th><th>episodes</th><th>last anomaly</th>"
                "</tr></thead>\n<tbody>\n" + "\n".join(lines) + "\n</tbody></table>"
            )
        elif prefix:
            table = f"<p>No stream id starts with {e(prefix)}.</p>"
        else:
            table = (
                "<p>No streams on this page. Send points with "
                "POST /observe/{series_id}.</p>"
            )
        nav = self._nav(rows, keep, prefix, bool(cursors))
        return (
            f'<h2 id="streams">Streams</h2>\n<p class="muted">Learning online; '
            f"times in UTC.</p>\n{table}\n{nav}"
        )

    # -- one stream ----------------------------------------------------------------

    def page(self, series_id: str) -> tuple[str, str]:
        """The title and body of a stream's page."""
        record = self._tables.record(series_id)
        config = record.config
        first_kept = self._tables.points(series_id, None, 0, 1)[0]
        kept_from = int(first_kept["t"][0]) if len(first_kept) else None
        facts = [
            plural(record.points, "point") + " learned",
            f"from {_when(record.first_timestamp)} to {_when(record.last_timestamp)}",
            f"last value {_num(record.last_value)}, score {_num(record.last_score)}",
            f"threshold {config.threshold:g}",
            f"direction {e(config.direction)}",
            f"warm-up {config.warmup}"
            + (" (warming up)" if record.points < config.warmup else ""),
        ]
        if config.labels:
            facts.append(
                "labels "
                + ", ".join(f"{e(k)}={e(v)}" for k, v in sorted(config.labels.items()))
            )
        quoted = quote(series_id, safe="")
        body = (
            f'<p><a href="/">dashboard</a></p>\n<h1>{e(series_id)}</h1>\n'
            f"<p>{' · '.join(facts)} · "
            f'<a href="{href("/streams/" + quoted)}">JSON</a></p>\n'
            f'<p><img src="{href("/plot", stream=series_id)}" width="1000" '
            f'height="500" alt="{e(series_id)}: values, anomalies and score"></p>\n'
            + self._episodes(series_id, record, kept_from)
        )
        return f"{series_id} · anomalyd", body

    def _episodes(
        self, series_id: str, record: StreamRecord, kept_from: int | None
    ) -> str:
        count = record.episodes
        if not count:
            return "<h2>Anomaly episodes</h2>\n<p>No anomaly episode yet.</p>"
        start = max(1, count - RECENT_EPISODES + 1)
        episodes = self._tables.episodes(series_id, None, start, RECENT_EPISODES)[0]
        span = (record.last_timestamp or 0) - (record.first_timestamp or 0)
        step = span / max(1, record.points - 1)
        rows = []
        for episode in reversed(episodes):
            # The plot of the time around it: its length, and at least 50 points
            # (at the stream's mean spacing) on each side.
            margin = max(episode.end - episode.start, int(50 * step), 60)
            if kept_from is not None and episode.end >= kept_from:
                around = href(
                    "/plot",
                    stream=series_id,
                    since=str(max(0, episode.start - margin)),
                    until=str(episode.end + margin),
                )
                plot = f'<a class="plot" href="{around}">plot</a>'
            else:
                plot = '<span class="muted">left the history</span>'
            rows.append(
                "<tr>"
                f"<td>{_when(episode.start)}</td>"
                f"<td>{_when(episode.end)}</td>"
                f'<td class="num">{episode.points}</td>'
                f'<td class="num">{_num(episode.peak_score)}</td>'
                f'<td class="num">{_num(episode.peak_value)}</td>'
                f"<td>{'open' if episode.open else 'closed'}</td>"
                f"<td>{plot}</td>"
                "</tr>"
            )
        shown = (
            f"the last {len(episodes)}, newest first"
            if len(episodes) < count
            else "newest first"
        )
        all_of_them = href(
            "/streams/" + quote(series_id, safe="") + "/anomalies", limit="1000"
        )
        return (
            f"<h2>Anomaly episodes</h2>\n<p>{plural(count, 'episode')} in all; "
            f'{shown} (<a href="{all_of_them}">JSON</a>).</p>\n'
            '<table class="episodes"><thead><tr><th>start (UTC)</th><th>end</th>'
            "<th>points</th><th>peak score</th><th>peak value</th><th>state</th>"
            "<th>around it</th></tr></thead>\n<tbody>\n"
            + "\n".join(rows)
            + "\n</tbody></table>"
        )
