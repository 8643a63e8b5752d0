"""The stream plot and the dashboard's streams in headless Chromium (the DevTools
protocol, as tests/test_browser.py), against a real ``anomalyd serve`` that learned
the NAB machine-temperature sample as a stream.

What only a browser shows: that the anomalous points are drawn as dots where the
values are, that the threshold is a dashed line at its height on the score's own
axis, that the pages and their embedded plots load and fetch nothing from elsewhere.
"""

from __future__ import annotations

import datetime as dt

import pytest
from alert_client import STEP, calm, post_batch, spike
from conftest import Server
from test_browser import colour_count, css_rgb, load_sample, rgb

from anomalyd import stream_plot

STREAM = "machine_temperature"


def utc(t: int) -> str:
    return f"{dt.datetime.fromtimestamp(t, dt.UTC):%Y-%m-%d %H:%M:%S}"


POINTS = 22_695


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    # Every point retained, so the plot shows the failure in February.
    s = Server(
        tmp_path_factory.mktemp("stream-browser") / "data",
        extra=["--stream-history", "30000"],
    ).start()
    timestamps, values = load_sample()
    # The one step back in time of NAB's file, sent with the time of the row before.
    for i in range(1, len(timestamps)):
        timestamps[i] = max(timestamps[i], timestamps[i - 1])
    for start in range(0, len(values), 5000):
        r = s.post(
            f"/observe/{STREAM}/batch",
            {
                "timestamps": timestamps[start : start + 5000],
                "values": values[start : start + 5000],
            },
        )
        assert r.status_code == 200, r.text
    for name in ("boiler_1", "boiler_2"):
        r = s.post(f"/observe/{name}/batch", {"timestamps": [1, 2], "values": [1, 2]})
        assert r.status_code == 200
    yield s
    assert s.stop() == 0


# Where things are drawn, read from the laid-out SVG.
DRAWN = """(() => {
  // pygal writes each series' group in its overlays too: the one that has content.
  const series = k => [...document.querySelectorAll(`.series.serie-${k}`)]
    .find(g => g.childElementCount);
  const box = el => { const r = el.getBoundingClientRect();
                      return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const line = k => { const p = series(k).querySelector('path.line');
                      const s = getComputedStyle(p);
                      return {...box(p), stroke: s.stroke, dash: s.strokeDasharray,
                              length: p.getTotalLength()}; };
  const labels = cls => [...document.querySelectorAll(`.axis.${cls} text`)]
    .filter(t => t.textContent).map(t => {
      const b = box(t); return {text: t.textContent, y: b.y + b.h / 2}; });
  return {
    type: document.contentType,
    size: [document.documentElement.getBoundingClientRect().width,
           document.documentElement.getBoundingClientRect().height],
    title: [...document.querySelectorAll('.plot_title')].map(t => t.textContent)
      .join(' '),
    legend: [...document.querySelectorAll('.legend text')].map(t => t.textContent),
    values: line(0), score: line(2), threshold: line(3),
    dots: [...(series(1)?.querySelectorAll('circle.dot') ?? [])].map(c => ({
      ...box(c), fill: getComputedStyle(c).fill})),
    left: labels('y'), right: labels('y2'),
    scripts: document.querySelectorAll('script').length,
  };
})()"""


def test_the_stream_plot_marks_anomalies_and_draws_the_threshold(
    learned, browser, tmp_path
):
    episodes = learned.get(f"/streams/{STREAM}/anomalies?limit=1000").json()
    anomalous = sum(e["points"] for e in episodes["anomalies"])
    assert anomalous > 5
    browser.open(f"{learned.url}/plot?stream={STREAM}", 1000, 500)
    page = browser.js(DRAWN)
    assert page["type"] == "image/svg+xml" and page["size"] == [1000, 500]
    assert page["scripts"] == 0
    assert page["legend"] == [
        stream_plot.VALUES,
        stream_plot.ANOMALY,
        stream_plot.SCORE,
        stream_plot.THRESHOLD,
        stream_plot.WARMUP,
    ]
    assert f"{STREAM} · {POINTS} points learned · threshold 0.51" in page["title"]
    assert f"{anomalous} anomalous ({anomalous} marked)" in page["title"]

    values, score, threshold = page["values"], page["score"], page["threshold"]
    assert values["stroke"] == css_rgb(stream_plot.COLOURS[stream_plot.VALUES])
    assert values["w"] > 700 and values["length"] > 5000
    assert score["stroke"] == css_rgb(stream_plot.COLOURS[stream_plot.SCORE])
    assert score["w"] > 700
    # Every anomalous point is a red dot, in the values' band above the score's.
    dots = page["dots"]
    assert len(dots) == anomalous
    red = css_rgb(stream_plot.COLOURS[stream_plot.ANOMALY])
    assert all(d["fill"] == red and d["w"] > 2 for d in dots)
    assert max(d["y"] + d["h"] / 2 for d in dots) < score["y"]
    # The threshold: a dashed orange line across the plot, at 0.51 on the right axis.
    assert threshold["stroke"] == css_rgb(stream_plot.COLOURS[stream_plot.THRESHOLD])
    assert threshold["dash"] not in ("", "none") and threshold["w"] > 700
    right = {label["text"]: label["y"] for label in page["right"]}
    assert list(right) == ["0", "0.25", "0.5", "0.75", "1"]
    at = right["0.5"] + (right["0.75"] - right["0.5"]) * (0.51 - 0.5) / 0.25
    assert abs(threshold["y"] + threshold["h"] / 2 - at) < 2, (threshold, right)
    # The score spans its band: its peaks reach 1, its floor 0.
    assert (
        abs(score["y"] - right["1"]) < 3
        and abs(score["y"] + score["h"] - right["0"]) < 3
    )
    # The values' axis on the left, above the score's band.
    assert min(label["y"] for label in page["left"]) < values["y"] + 5
    assert max(label["y"] for label in page["left"]) < right["1"]
    assert all(u.startswith(learned.url) for u in browser.requested_urls())

    shot = browser.screenshot()
    shot.save(tmp_path / "stream.png")
    assert shot.size == (1000, 500)
    assert colour_count(shot, rgb(stream_plot.COLOURS[stream_plot.ANOMALY])) > 100
    assert colour_count(shot, rgb(stream_plot.COLOURS[stream_plot.THRESHOLD])) > 300


def test_a_window_draws_only_its_points(learned, browser):
    # The failure's window in NAB's labels, and the day after.
    browser.open(
        f"{learned.url}/plot?stream={STREAM}&since=2014-02-07T14:55:00Z"
        "&until=2014-02-10",
        1000,
        500,
    )
    page = browser.js(DRAWN)
    # 2014-02-07 14:55 to 2014-02-10 00:00 (both included), every 5 minutes.
    assert (
        "686 retained points from 2014-02-07 14:55 to 2014-02-10 00:00"
        in (page["title"])
    )
    assert len(page["dots"]) >= 5  # the failure's episodes


def test_the_dashboard_lists_streams_and_opens_a_streams_page(learned, browser):
    browser.open(f"{learned.url}/")
    page = browser.js(
        """(() => ({
        rows: [...document.querySelectorAll('table.streams tbody tr')].map(
          tr => [...tr.cells].map(td => td.textContent)),
        pages: [...document.querySelectorAll('table.streams tbody td:first-child a')]
          .map(a => a.href),
        plots: [...document.querySelectorAll('table.streams a.plot')].map(a => a.href),
        scripts: document.scripts.length,
      }))()"""
    )
    assert page["scripts"] == 0
    assert [row[0] for row in page["rows"]] == ["boiler_1", "boiler_2", STREAM]
    row = page["rows"][2]
    assert row[2] == str(POINTS) and row[3] == "2014-02-19 15:25"
    assert page["plots"][2] == f"{learned.url}/plot?stream={STREAM}"

    browser.open(page["pages"][2])
    stream_page = browser.js(
        """(async () => {
        const img = document.querySelector('img');
        await img.decode();
        return {natural: [img.naturalWidth, img.naturalHeight], src: img.src,
                episodes: [...document.querySelectorAll('table.episodes tbody tr')]
                  .map(tr => tr.cells[0].textContent),
                around: [...document.querySelectorAll('table.episodes a.plot')]
                  .map(a => a.href)};
      })()"""
    )
    assert stream_page["natural"] == [1000, 500]
    assert stream_page["src"] == f"{learned.url}/plot?stream={STREAM}"
    episodes = learned.get(f"/streams/{STREAM}/anomalies?limit=1000").json()
    starts = [e["start"][:19].replace("T", " ") for e in episodes["anomalies"]]
    assert stream_page["episodes"] == starts[::-1][:20]
    assert len(stream_page["around"]) == len(stream_page["episodes"])
    assert all(u.startswith(learned.url) for u in browser.requested_urls())

    # The newest episode's plot: the time around it, its point marked.
    browser.open(stream_page["around"][0], 1000, 500)
    around = browser.js(DRAWN)
    assert " from " in around["title"] and len(around["dots"]) >= 1


def test_a_firing_alert_is_shown_first_in_red(learned, browser):
    # An alert fires with no receiver configured: the outbox keeps it all the same.
    ts, xs = calm(260)
    post_batch(learned, "kiln", ts, xs)
    spike(learned, "kiln", ts[-1] + STEP, 500.0)
    browser.open(f"{learned.url}/")
    page = browser.js(
        """(() => {
        const headings = [...document.querySelectorAll('h2')];
        const firing = headings[0], table = firing.nextElementSibling;
        return {
          headings: headings.map(h => h.textContent),
          colour: getComputedStyle(firing).color,
          above: firing.getBoundingClientRect().bottom <=
            headings[1].getBoundingClientRect().top,
          rows: [...table.querySelectorAll('tbody tr')].map(
            tr => [...tr.cells].map(td => td.textContent)),
          link: table.querySelector('a.plot').href,
        };
      })()"""
    )
    assert page["headings"][:2] == ["1 alert firing", "Series"]
    assert page["colour"] == css_rgb("#aa1111")  # .error{color:#a11} and page["above"]
    assert [row[:5] for row in page["rows"]] == [
        ["kiln", f"{utc(ts[-1] + STEP)} UTC", "1", "1.000", "500"]
    ]
    assert page["link"] == f"{learned.url}/plot?stream=kiln"
    browser.open(page["link"], 1000, 500)
    assert "kiln · 261 points learned" in browser.js(DRAWN)["title"]
