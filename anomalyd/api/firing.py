"""The dashboard's first section: the alerts firing now, the newest first, each with
its start, its peak and a link to its stream's plot (``anomalyd.api.dashboard``)."""

from __future__ import annotations

from anomalyd.api.html import e, href, plural
from anomalyd.store import outbox_reads
from anomalyd.store.outbox import Outbox
from anomalyd.streams import utc

SHOWN = 20


def firing_section(outbox: Outbox | None) -> str:
    """HTML of the firing alerts; empty when none fires."""
    if outbox is None:
        return ""
    shown, count = outbox_reads.firing(outbox, SHOWN)
    if not count:
        return ""
    rows = [
        "<tr>"
        f'<td><a class="plot" href="{href("/plot", stream=series_id)}">'
        f"{e(series_id)}</a></td>"
        f"<td>{e(f'{utc(alert.start):%Y-%m-%d %H:%M:%S}')} UTC</td>"
        f'<td class="num">{alert.episodes}</td>'
        f'<td class="num">{alert.peak_score:.3f}</td>'
        f'<td class="num">{e(f"{alert.peak_value:.6g}")}</td>'
        f"<td>{e(' '.join(f'{k}={v}' for k, v in firing.labels.items()))}</td>"
        "</tr>"
        for series_id, firing, alert in shown
    ]
    more = f" (the {len(rows)} newest shown)" if count > len(rows) else ""
    return (
        f'<h2 class="error">{plural(count, "alert")} firing{more}</h2>\n'
        "<table><thead><tr><th>stream (plot)</th><th>since</th><th>episodes</th>"
        "<th>peak score</th><th>peak value</th><th>labels</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>\n"
    )
