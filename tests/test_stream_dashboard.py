"""The dashboard's streams over a real ``anomalyd serve`` (2 workers): the list on the
index (paged both ways, searched by prefix, beside the series' own paging), a stream's
page with its plot and recent episodes, escaping, and the errors."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from stream_client import HISTORY, assert_error, batch, noisy, server

__all__ = ["server"]  # the module's fixture

HTML = {"Accept": "text/html"}
FIT = {"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]}
STREAMS = ["s.a1", "s.a2", "s.b1", "s.c1", "s.c2", "s.c3", "s.c4", "s.d1"]


class Page(HTMLParser):
    """Tables by class (rows of cell texts, first-cell links), links by text and by
    rel ("streams next", "series prev"), images, the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.first_links: dict[str, list[str]] = {}
        self.rel: dict[str, str] = {}
        self.links: dict[str, list[str]] = {}
        self.plots: list[str] = []
        self.images: list[str] = []
        self.text = ""
        self._table: str | None = None
        self._cell: int = 0
        self._in_cell = False
        self._href: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("class", "series")
            self.tables[self._table] = []
            self.first_links[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._cell = 0
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell += 1
            self._in_cell = True
            self.tables[self._table][-1].append("")
        elif tag == "a":
            self._href = attrs["href"]
            if "rel" in attrs:
                self.rel[self._nav + attrs["rel"]] = attrs["href"]
            if "plot" in attrs.get("class", ""):
                self.plots.append(attrs["href"])
            if self._table is not None and self._cell == 1:
                self.first_links[self._table].append(attrs["href"])
        elif tag == "nav":
            self._nav = "streams " if attrs.get("class") == "streams" else "series "
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._in_cell = False
        elif tag == "a":
            self._href = None

    def handle_data(self, data):
        self.text += data
        if self._href is not None:
            self.links.setdefault(data, []).append(self._href)
        if self._table is not None and self._in_cell:
            self.tables[self._table][-1][-1] += data

    def rows(self, table: str) -> list[list[str]]:
        return self.tables.get(table, [[]])[1:]  # without the header

    def ids(self, table: str) -> list[str]:
        return [row[0] for row in self.rows(table)]


def page(server, target: str) -> Page:
    r = server.get(target, headers=HTML)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<script" not in r.text
    return Page(r.text)


def walk(server, start: str, rel: str) -> list[list[str]]:
    pages = []
    target: str | None = start
    while target is not None:
        p = page(server, target)
        pages.append(p.ids("streams"))
        target = p.rel.get("streams " + rel)
        assert len(pages) < 20
    return pages


@pytest.fixture(scope="module")
def listed(server):
    for i, name in enumerate(STREAMS):
        ts, xs = noisy(40, seed=i)
        assert batch(server, name, ts, xs).status_code == 200
    for name in ("s.a1", "s.b1", "s.c1", "zz"):
        assert server.post(f"/fit/{name}", FIT).status_code == 200
    # One stream with a known anomaly past its warm-up, and an open episode.
    assert server.session.put(
        f"{server.url}/streams/alarmed", json={"warmup": 20, "labels": {"room": "b2"}}
    ).ok
    ts, xs = noisy(100, seed=99)
    xs[-1] = 900.0
    r = batch(server, "alarmed", ts, xs)
    assert r.json()["anomaly"][-1] is True
    return server


def test_the_index_lists_streams_with_their_last_point_and_episodes(listed):
    p = page(listed, "/")
    assert "4 series trained · 9 streams" in p.text
    assert p.tables["streams"][0] == [
        "stream",
        "plot",
        "points",
        "last point",
        "value",
        "score",
        "episodes",
        "last anomaly",
    ]
    rows = {row[0]: row for row in p.rows("streams")}
    assert list(rows) == ["alarmed", *STREAMS]
    stream = listed.get("/streams/alarmed").json()
    alarmed = rows["alarmed"]
    assert alarmed[2] == "100" and alarmed[3] == stream["last_timestamp"][:16].replace(
        "T", " "
    )
    assert alarmed[4] == "900" and float(alarmed[5]) == pytest.approx(
        stream["last_score"], abs=1e-5
    )
    assert alarmed[6] == str(stream["anomalies"]) != "0"
    assert alarmed[7].endswith(" open")  # the episode goes on
    # Every stream of a default warm-up (200) is still warming up.
    assert rows["s.a1"][2] == "warming up 40"
    # Links: the stream's page and its plot.
    assert p.first_links["streams"][0] == "/?stream=alarmed"
    assert "/plot?stream=alarmed" in p.plots
    assert listed.get("/plot?stream=alarmed").status_code == 200
    # The series keep their own table above.
    assert p.ids("series") == ["s.a1", "s.b1", "s.c1", "zz"]


def test_streams_page_both_ways_on_their_own(listed):
    forwards = walk(listed, "/?limit=3", "next")
    assert forwards == [
        ["alarmed", "s.a1", "s.a2"],
        ["s.b1", "s.c1", "s.c2"],
        ["s.c3", "s.c4", "s.d1"],
    ]
    last = page(listed, "/?limit=3&streams_after=s.c2")
    assert walk(listed, last.rel["streams prev"], "prev") == [
        ["s.b1", "s.c1", "s.c2"],
        ["alarmed", "s.a1", "s.a2"],
    ]
    # A previous page that would be short is the first page, full.
    assert page(listed, "/?limit=3&streams_before=s.a2").ids("streams") == [
        "alarmed",
        "s.a1",
        "s.a2",
    ]
    # Paging the streams keeps the series where they were, and the other way round.
    p = page(listed, "/?limit=2&after=s.a1&streams_after=s.a2")
    assert p.ids("series") == ["s.b1", "s.c1"]
    assert p.ids("streams") == ["s.b1", "s.c1"]
    assert "after=s.a1" in p.links["next streams"][0]
    assert "streams_after=s.a2" in p.links["next page"][0]


def test_the_search_filters_the_streams_too(listed):
    assert walk(listed, "/?prefix=s.c&limit=3", "next") == [
        ["s.c1", "s.c2", "s.c3"],
        ["s.c4"],
    ]
    p = page(listed, "/?prefix=s.c")
    assert p.ids("series") == ["s.c1"]
    assert page(listed, "/?prefix=zz").ids("streams") == []
    assert "No stream id starts with zz" in page(listed, "/?prefix=zz").text
    assert "No stream id starts with q" in page(listed, "/?prefix=q").text


def test_a_stream_page_shows_its_plot_and_recent_episodes(listed):
    p = page(listed, "/?stream=alarmed")
    assert p.images == ["/plot?stream=alarmed"]
    assert "100 points learned" in p.text and "threshold 0.51" in p.text
    assert "labels room=b2" in p.text and "warm-up 20" in p.text
    episodes = listed.get("/streams/alarmed/anomalies").json()["anomalies"]
    rows = p.rows("episodes")
    assert len(rows) == len(episodes) >= 1
    newest = rows[0]
    assert newest[0] == episodes[-1]["start"].replace("T", " ").rstrip("Z")
    assert newest[5] == "open" and newest[4] == "900"
    # Each episode's plot is the time around it, and draws it.
    around = [link for link in p.plots if "since=" in link]
    assert len(around) == len(episodes)
    r = listed.get(around[0].replace("&amp;", "&"))
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/svg+xml"
    assert b"1 anomalous" in r.content or b"anomalous (" in r.content


def test_episodes_whose_points_left_the_history_have_no_plot(listed):
    name = "long"
    assert listed.session.put(f"{listed.url}/streams/{name}", json={"warmup": 10}).ok
    ts, xs = noisy(HISTORY * 3, seed=5)
    xs[50] = 5_000.0  # an anomaly whose points will leave the history
    xs[-5] = -5_000.0  # and one that stays
    assert batch(listed, name, ts, xs).status_code == 200
    p = page(listed, f"/?stream={name}")
    states = [row[-1] for row in p.rows("episodes")]
    assert states[0] == "plot" and states[-1] == "left the history"


def test_values_on_the_pages_are_escaped(listed):
    labels = {"note": "<b>bold</b> & \"q\" 'a'"}
    assert listed.session.put(
        f"{listed.url}/streams/escaped", json={"labels": labels}
    ).ok
    r = listed.get("/?stream=escaped", headers=HTML)
    assert "<b>bold</b>" not in r.text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;q&quot; &#x27;a&#x27;" in r.text
    assert "note=<b>bold</b> & \"q\" 'a'" in Page(r.text).text
    assert "No anomaly episode yet" in r.text


def test_a_stream_with_no_points_has_a_page(listed):
    assert listed.session.put(f"{listed.url}/streams/silent").ok
    p = page(listed, "/?stream=silent")
    assert "0 points learned" in p.text and "(warming up)" in p.text
    assert listed.get("/plot?stream=silent").status_code == 200


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("stream=nope", 404, ["stream 'nope' is not known"]),
        ("stream=a%20b", 400, ["series_id must be"]),
        ("stream=", 400, ["series_id must be"]),
        ("stream=s.a1&series_id=s.a1", 400, ["not both"]),
        ("streams_after=s.a1&streams_before=s.c1", 400, ["not both"]),
        ("streams_after=a%0A", 400, ["series_id must be"]),
        ("streams_before=", 400, ["series_id must be"]),
    ],
)
def test_bad_parameters(listed, query, status, words):
    assert_error(listed.get(f"/?{query}", headers=HTML), status, *words)


def test_the_json_description_lists_the_stream_routes(listed):
    routes = {(r["method"], r["path"]) for r in listed.get("/").json()["routes"]}
    assert ("POST", "/observe/{series_id}") in routes
    assert ("GET", "/plot?stream=X[&since=T&until=T]") in routes
