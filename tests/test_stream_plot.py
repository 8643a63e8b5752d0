"""GET /plot?stream=ID: the drawing of a stream (unit tests of anomalyd.stream_plot)
and the route over a real ``anomalyd serve`` with 2 workers: what is drawn, errors,
caching with 304s, since/until, and streams with odd histories."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import requests
from conftest import Server
from stream_client import HISTORY, T0, assert_error, batch, iso, noisy, server

from anomalyd import stream_plot
from anomalyd.streams import StreamConfig

__all__ = ["server"]  # the module's fixture

SVG_NS = "{http://www.w3.org/2000/svg}"
CONFIG = StreamConfig(0.51, "both", 20)
NAMES = [
    stream_plot.VALUES,
    stream_plot.ANOMALY,
    stream_plot.SCORE,
    stream_plot.THRESHOLD,
]


class Drawing:
    """What a stream's SVG shows: legend, title, the points of each line, the dots
    of each series, the labels of the left and right axes."""

    def __init__(self, svg: bytes) -> None:
        assert svg.startswith(b"<?xml")
        root = ET.fromstring(svg)
        self.root = root
        self.legend = [
            t.text
            for g in root.iter(SVG_NS + "g")
            if "legend" in (g.get("class") or "").split()
            for t in g.iter(SVG_NS + "text")
        ]
        self.title = " ".join(
            t.text
            for t in root.iter(SVG_NS + "text")
            if "plot_title" in t.get("class", "")
        )
        self.lines: dict[int, int] = {}
        self.dots: dict[int, int] = {}
        for g in root.iter(SVG_NS + "g"):
            match = re.fullmatch(r"series serie-(\d+) color-\d+", g.get("class") or "")
            if match is None:
                continue
            k = int(match.group(1))
            for p in g.iter(SVG_NS + "path"):
                if "line" in p.get("class", ""):
                    count = len(re.findall(r"-?[0-9.]+", p.get("d"))) // 2
                    self.lines[k] = max(self.lines.get(k, 0), count)
            self.dots[k] = max(
                self.dots.get(k, 0), len(list(g.iter(SVG_NS + "circle")))
            )
        self.left = self._labels("axis y ")
        self.right = self._labels("axis y2")

    def _labels(self, cls: str) -> list[str]:
        return [
            t.text or ""
            for g in self.root.iter(SVG_NS + "g")
            if ((g.get("class") or "") + " ").startswith(cls)
            for t in g.iter(SVG_NS + "text")
        ]


def render(values, scores=None, anomalies=None, timestamps=None, **kw) -> Drawing:
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if timestamps is None:
        timestamps = T0 + 60 * np.arange(n, dtype=np.int64)
    scores = np.zeros(n) if scores is None else np.asarray(scores, dtype=np.float64)
    anomalies = (
        np.zeros(n, bool) if anomalies is None else np.asarray(anomalies, dtype=bool)
    )
    svg = stream_plot.render_stream(
        "s",
        CONFIG,
        n,
        np.asarray(timestamps, np.int64),
        values,
        scores,
        anomalies,
        **kw,
    )
    return Drawing(svg)


# -- the drawing ----------------------------------------------------------------------


def test_values_anomalies_score_and_threshold_are_drawn():
    rng = np.random.default_rng(3)
    values = 50 + rng.normal(0, 1, 500)
    scores = rng.uniform(0, 0.3, 500)
    anomalies = np.zeros(500, bool)
    anomalies[[100, 300, 301]] = True
    scores[anomalies] = 0.9
    d = render(values, scores, anomalies)
    assert d.legend == NAMES
    assert "s · 500 points learned · threshold 0.51 · direction both" in d.title
    assert "500 retained points (500 drawn) · 3 anomalous (3 marked)" in d.title
    # values, score: a line each; anomalous points: dots; threshold: a line of 2.
    assert d.lines[0] == 500 and d.lines[2] == 500 and d.lines[3] == 2
    assert d.dots[1] == 3
    # The score's own axis on the right, 0 to 1; the values' labels on the left.
    assert [x for x in d.right if x] == ["0", "0.25", "0.5", "0.75", "1"]
    assert [x for x in d.left if x] == ["46", "48", "50", "52", "54", "56"]


def test_the_warm_up_is_a_bar_up_to_the_first_point_after_it():
    d = render(np.arange(100.0), warming=30)
    assert d.legend == [*NAMES, stream_plot.WARMUP]
    assert d.lines[4] == 2
    whole = render(np.arange(100.0), warming=100)
    assert whole.legend == [*NAMES, stream_plot.WARMUP]
    assert render(np.arange(100.0)).legend == NAMES  # none: no bar, no legend


def test_time_labels_are_round():
    day = 86_400
    ticks, form = stream_plot.time_ticks(T0 + 17, T0 + 79 * day)
    assert form == "%Y-%m-%d" and len(ticks) <= stream_plot.TIME_LABELS
    assert all(t % (14 * day) == 0 for t in ticks) and ticks[0] >= T0 + 17
    ticks, form = stream_plot.time_ticks(T0 + 5, T0 + 3000)
    assert form == "%Y-%m-%d %H:%M" and all(t % 900 == 0 for t in ticks)
    ticks, form = stream_plot.time_ticks(T0, T0 + 20)
    assert form.endswith(":%S") and ticks == [T0, T0 + 5, T0 + 10, T0 + 15, T0 + 20]
    ticks, _ = stream_plot.time_ticks(0, 200 * 364 * day)  # past the steps: years
    assert 2 <= len(ticks) <= stream_plot.TIME_LABELS


def test_big_histories_are_reduced_with_every_extreme_kept():
    rng = np.random.default_rng(5)
    n = 200_000
    values = np.cumsum(rng.normal(0, 1, n))
    values[123_456] = 10_000.0
    anomalies = np.zeros(n, bool)
    anomalies[::97] = True
    svg = stream_plot.render_stream(
        "big",
        CONFIG,
        n,
        T0 + 60 * np.arange(n),
        values,
        rng.uniform(0, 1, n),
        anomalies,
    )
    assert len(svg) < 1_000_000
    d = Drawing(svg)
    assert d.lines[0] <= 2000 and d.lines[2] <= 2000
    assert 400 < d.dots[1] <= stream_plot.MAX_MARKED
    assert f"{anomalies.sum()} anomalous ({d.dots[1]} marked)" in d.title
    assert float(d.left[-1]) >= 10_000  # the spike is kept: the axis reaches it


def test_the_same_points_draw_the_same_bytes_and_fetch_nothing():
    values = np.sin(np.arange(300) / 10)
    one = stream_plot.render_stream(
        "s", CONFIG, 300, T0 + np.arange(300), values, values**2, values > 0.99
    )
    two = stream_plot.render_stream(
        "s", CONFIG, 300, T0 + np.arange(300), values, values**2, values > 0.99
    )
    assert one == two
    root = ET.fromstring(one)
    assert not list(root.iter(SVG_NS + "script"))
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("href") or name == "src":
                assert not value.startswith(("http", "//")), (name, value)
    assert b"kozea.github.io" not in one and b"<?xml-stylesheet" not in one


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([42.0], ["1 point learned", "1 retained point"]),
        ([7.0] * 50, ["50 retained points"]),
        ([0.0] * 50, ["50 retained points"]),
        ([1e300, -1e300, 5e299, 1.7e308, -1.7e308], ["5 retained points"]),
        ([1e-300, 2e-300, 0.0, 5e-301], ["4 retained points"]),
        (-1000 + 1e-9 * np.sin(np.arange(100)), ["100 retained points"]),
    ],
    ids=["one point", "constant", "zeros", "huge", "tiny", "tiny spread"],
)
def test_odd_histories_draw(values, words):
    d = render(values)
    assert d.legend == NAMES
    for word in words:
        assert word in d.title
    assert d.lines.get(0, 0) >= 2 or d.dots[0] == 1  # one point: a dot
    labels = [x for x in d.left if x]
    assert len(labels) == stream_plot.VALUE_STEPS + 1
    assert len(set(labels)) == len(labels), labels  # the ticks are told apart
    assert not any("inf" in x or "nan" in x for x in labels), labels


def test_huge_values_are_labelled_with_their_true_magnitude():
    d = render([1e300, -1e300, 1.7e308])
    assert any(x.endswith("e+308") for x in d.left), d.left


def test_no_points_draws_a_titled_empty_chart():
    d = render([])
    assert "no points yet in the retained history" in d.title
    assert b"no points to draw" in ET.tostring(d.root)
    d = render([], window=(T0, None))
    assert f"none in the retained history from {iso(T0)[:16].replace('T', ' ')}" in (
        d.title
    )


def test_all_points_at_one_instant_draw():
    d = render([1.0, 2.0, 100.0], [0, 0, 1.0], [False, False, True], [T0] * 3)
    assert d.dots[1] == 1 and d.lines[3] == 2


def test_ticks_are_round_and_cover_the_values():
    for low, high in [(0.1, 0.37), (46.2, 55.9), (-3e7, 2e7), (5.0, 5.0), (0, 0)]:
        start, step = stream_plot.value_ticks(low, high)
        assert start <= low and start + stream_plot.VALUE_STEPS * step >= high
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert round(mantissa, 9) in (1.0, 2.0, 2.5, 5.0)


# -- what the plot reads --------------------------------------------------------------


def test_the_plot_reads_the_retained_history_in_one_walk(tmp_path):
    from anomalyd.delivery import AlertService
    from anomalyd.observer import Observer
    from anomalyd.settings import Settings
    from anomalyd.store import CorruptRecord, Store
    from anomalyd.store.stream_reads import numbered
    from anomalyd.store.streams import StreamTables

    store = Store(str(tmp_path / "data"), map_size=64 << 20)
    tables = StreamTables(store, 1000)
    alerts = AlertService(Settings(), store).alerts
    observer = Observer(store, tables, CONFIG, alerts)
    ts, xs = noisy(2500, seed=21)
    for start in range(0, 2500, 700):  # blocks left part-full between batches
        observer.observe(
            "r", ts[start : start + 700], xs[start : start + 700], lambda _: b""
        )
    record, rows, first = tables.retained("r", None, None)
    assert record.points == 2500 and first == 1500 and len(rows) == 1000
    paged = np.concatenate(
        [tables.points("r", None, seq, 100)[0] for seq in range(1500, 2500, 100)]
    )
    assert np.array_equal(rows, paged)
    assert rows["t"].tolist() == ts[1500:]
    # A window: both ends included, the seq of its first point.
    _, window, first = tables.retained("r", ts[1700] - 1, ts[1733])
    assert first == 1700 and window["t"].tolist() == ts[1700:1734]
    assert len(tables.retained("r", ts[-1] + 1, None)[1]) == 0
    assert len(tables.retained("r", None, ts[0])[1]) == 0  # before the history
    # A block missing from the middle is a corrupt history, not a short drawing.
    with store.env.begin(write=True) as txn:
        assert txn.delete(numbered(b"r", 60), db=tables.points_db)
    with pytest.raises(CorruptRecord, match="stream 'r' is corrupt or short"):
        tables.retained("r", None, None)
    store.close()


# -- the route --------------------------------------------------------------------


def plot(s: Server, query: str, **kw) -> requests.Response:
    return s.get("/plot?" + query, **kw)


def test_the_route_draws_the_retained_history(server):
    stream = "plotted"
    assert server.session.put(f"{server.url}/streams/{stream}", json={"warmup": 20}).ok
    ts, xs = noisy(400, seed=11)
    xs[350] = 500.0  # a spike past warm-up: an anomaly
    r = batch(server, stream, ts, xs)
    assert r.status_code == 200, r.text
    flagged = sum(r.json()["anomaly"][-HISTORY:])
    assert flagged >= 1
    got = plot(server, f"stream={stream}")
    assert got.status_code == 200, got.text
    assert got.headers["Content-Type"] == "image/svg+xml"
    d = Drawing(got.content)
    assert d.legend == NAMES
    assert f"{stream} · 400 points learned · threshold 0.51" in d.title
    assert f"{HISTORY} retained points ({HISTORY} drawn) · {flagged} anomalous" in (
        d.title
    )
    assert d.dots[1] == flagged and d.lines[0] == HISTORY


def test_since_and_until_choose_the_points(server):
    stream = "windowed"
    ts, xs = noisy(250, seed=12)
    assert batch(server, stream, ts, xs).status_code == 200
    cases = [
        (f"since={ts[100]}&until={ts[149]}", 50),
        (f"since={iso(ts[200])}", 50),
        (f"until={iso(ts[9])}", 10),
        # NAB's form, and a fraction of a second (cut to the second).
        (f"since={iso(ts[240]).replace('T', '%20').rstrip('Z')}", 10),
        (f"since={ts[240] - 1}.5", 10),
        (f"since={ts[-1] + 1}", 0),
        ("since=0", 250),
    ]
    for query, count in cases:
        r = plot(server, f"stream={stream}&{query}")
        assert r.status_code == 200, (query, r.text)
        title = Drawing(r.content).title
        if count:
            assert f"{count} retained points" in title, (query, title)
        else:
            assert "none in the retained history" in title, (query, title)
    # The window is in the validator: another window is another drawing.
    tags = {
        plot(server, f"stream={stream}&{q}").headers["ETag"]
        for q in ("since=0", "until=9999999999", f"since={ts[5]}")
    }
    assert len(tags) == 3


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("", 400, ["series_id or stream is required"]),
        ("stream=a&series_id=a", 400, ["not both"]),
        ("stream=", 400, ["series_id must be"]),
        ("stream=a%20b", 400, ["series_id must be"]),
        ("stream=nope", 404, ["stream 'nope' is not known"]),
        ("stream=windowed&since=yesterday", 400, ["since must be"]),
        ("stream=windowed&until=", 400, ["until must be"]),
        ("stream=windowed&until=1%0A", 400, ["until must be"]),
        ("stream=windowed&since=10&until=9", 400, ["later than until"]),
        ("stream=windowed&version=v1", 400, ["a stream has no versions"]),
        ("series_id=windowed&since=10", 400, ["since is for the plot of a stream"]),
    ],
)
def test_errors(server, query, status, words):
    if "windowed" in query:
        server.session.put(f"{server.url}/streams/windowed")  # whichever runs first
    assert_error(plot(server, query), status, *words)


def test_a_browser_revalidates_and_gets_304_until_the_stream_moves(server):
    stream = "cached"
    ts, xs = noisy(30, seed=13)
    assert batch(server, stream, ts, xs).status_code == 200
    first = plot(server, f"stream={stream}")
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"s30-[0-9a-f]{24}"', etag)
    assert first.headers["Cache-Control"] == "public, no-cache"
    # Fresh connections land on either worker: the same tag and the same bytes.
    for _ in range(6):
        again = requests.get(f"{server.url}/plot?stream={stream}", timeout=60)
        assert again.headers["ETag"] == etag and again.content == first.content
        r = requests.get(
            f"{server.url}/plot?stream={stream}",
            headers={"If-None-Match": etag},
            timeout=60,
        )
        assert r.status_code == 304 and not r.content
        assert r.headers["ETag"] == etag
    head = server.session.head(f"{server.url}/plot?stream={stream}", timeout=60)
    assert head.status_code == 200 and head.headers["ETag"] == etag
    assert not head.content
    # A new point: the old tag no longer matches, and the new one does.
    assert server.post(f"/observe/{stream}", {"timestamp": ts[-1], "value": 50}).ok
    moved = plot(server, f"stream={stream}", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"].startswith('"s31-')
    assert "31 points learned" in Drawing(moved.content).title
    tag = moved.headers["ETag"]
    assert (
        plot(server, f"stream={stream}", headers={"If-None-Match": tag}).status_code
        == 304
    )
    # A new threshold is drawn too: configuring a stream moves its tag.
    assert server.session.put(
        f"{server.url}/streams/{stream}", json={"threshold": 0.8}
    ).ok
    redrawn = plot(server, f"stream={stream}", headers={"If-None-Match": tag})
    assert redrawn.status_code == 200
    assert "threshold 0.8" in Drawing(redrawn.content).title
    # A stream deleted: 404, not a stale 304.
    assert server.delete(f"/streams/{stream}").ok
    gone = plot(server, f"stream={stream}", headers={"If-None-Match": tag})
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("lone", [3.5]),
        ("flat", [7.25] * 40),
        ("calm", list(np.round(20 + np.sin(np.arange(60) / 5), 3))),
        ("huge", [1e300, -1e300, 1.7e308, 5.0, -1.7e308]),
    ],
)
def test_odd_streams_draw_over_http(server, name, values):
    ts = [T0 + 60 * i for i in range(len(values))]
    r = batch(server, f"odd_{name}", ts, values)
    assert r.status_code == 200, r.text
    got = plot(server, f"stream=odd_{name}")
    assert got.status_code == 200, got.text
    d = Drawing(got.content)
    assert d.legend == [*NAMES, stream_plot.WARMUP]  # all in the default warm-up
    assert f"{len(values)} retained point" in d.title
    assert not any("inf" in x or "nan" in x for x in d.left + d.right)


def test_a_stream_with_no_points_yet_draws(server):
    assert server.session.put(f"{server.url}/streams/unfed").ok
    got = plot(server, "stream=unfed")
    assert got.status_code == 200
    assert "unfed · 0 points learned" in Drawing(got.content).title


def test_with_a_token_the_plot_needs_it_and_is_private(make_server):
    token = "plot-token"
    s = make_server(env={"ANOMALYD_API_TOKEN": token})
    auth = {"Authorization": f"Bearer {token}"}
    assert batch(s, "guarded", [T0, T0 + 60], [1.0, 2.0], headers=auth).ok
    assert_error(plot(s, "stream=guarded"), 401, "Authorization")
    r = plot(s, "stream=guarded", headers=auth)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "private, no-cache"
    # The browser's session from the login page opens it too.
    login = requests.post(
        s.url + "/login",
        data={"token": token, "next": "/"},
        allow_redirects=False,
        timeout=60,
    )
    assert login.status_code == 303
    cookie = login.headers["Set-Cookie"].split(";")[0]
    r = plot(s, "stream=guarded", headers={"Cookie": cookie})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/svg+xml"
    # And the stream's page on the dashboard; never the API with the cookie alone.
    page = s.get("/?stream=guarded", headers={"Cookie": cookie, "Accept": "text/html"})
    assert page.status_code == 200 and "guarded" in page.text
    assert s.get("/streams/guarded", headers={"Cookie": cookie}).status_code == 401


def test_openapi_describes_the_stream_form_of_plot(server):
    document = server.get("/openapi.json").json()
    plot_op = document["paths"]["/plot"]["get"]
    parameters = {p["name"]: p for p in plot_op["parameters"]}
    assert set(parameters) == {"series_id", "version", "stream", "since", "until"}
    assert not parameters["series_id"]["required"]
    assert parameters["stream"]["schema"] == parameters["series_id"]["schema"]
    assert {"200", "304", "400", "404"} <= set(plot_op["responses"])
