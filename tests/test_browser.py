"""The plot and the dashboard in a real browser: headless Chromium driven over its
DevTools protocol, against a real ``anomalyd serve`` fitted on the NAB sample data.

What only a browser shows: that the SVG lays out (lines with a length, dots with the
colour of their series), that the dashboard's links and embedded plot load, that the
pages fetch nothing from another origin, and what the screen ends up showing.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import websocket
from PIL import Image

from anomalyd import plot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

SAMPLE = Path(__file__).parent / "sample" / "machine_temperature_system_failure.csv"
SERIES = "machine_temperature"
TIMEOUT = 60.0


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def css_rgb(hex_colour: str) -> str:
    return "rgb({}, {}, {})".format(*rgb(hex_colour))


def load_sample() -> tuple[list[int], list[float]]:
    with SAMPLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    timestamps = [
        int(
            dt.datetime.fromisoformat(r["timestamp"]).replace(tzinfo=dt.UTC).timestamp()
        )
        for r in rows
    ]
    return timestamps, [float(r["value"]) for r in rows]


class Browser:
    """One headless Chromium and one page, spoken to over the DevTools websocket."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",  # as root (CI containers) Chromium needs it
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        try:
            port = self._wait_port()
            targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10)
            page = next(t for t in targets.json() if t["type"] == "page")
            self.ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=TIMEOUT, suppress_origin=True
            )
        except BaseException:
            self._kill()
            raise
        self._next_id = 0
        self.events: list[dict] = []
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Network.setCacheDisabled", cacheDisabled=True)

    def _wait_port(self) -> int:
        # Chromium writes the port it picked into the profile once it listens.
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            if marker.exists():
                first = marker.read_text().split("\n")[0]
                if first.isdigit():
                    return int(first)
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        ident = self._next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def open(self, url: str, width: int = 1100, height: int = 800) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.events.clear()
        result = self.call("Page.navigate", url=url)
        assert "errorText" not in result, result
        self.wait_event("Page.loadEventFired")

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def js(self, expression: str):
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def screenshot(self) -> Image.Image:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self._kill()

    def _kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def fitted(server):
    timestamps, values = load_sample()
    first = server.post(f"/fit/{SERIES}", {"timestamps": timestamps, "values": values})
    assert first.status_code == 200, first.text
    second = server.post(
        f"/fit/{SERIES}",
        {
            "timestamps": timestamps,
            "values": values,
            "detector": {"kind": "robust", "direction": "both"},
        },
    )
    assert second.status_code == 200, second.text
    # Two more series, so that a dashboard page of two has a next page.
    for name in ("alpha", "zulu"):
        r = server.post(f"/fit/{name}", {"timestamps": [1, 2, 3], "values": [1, 2, 9]})
        assert r.status_code == 200, r.text
    return server


def colour_count(
    image: Image.Image, colour: tuple[int, int, int], tolerance: int = 24
) -> int:
    return sum(
        n
        for n, c in image.getcolors(maxcolors=1 << 24)
        if all(abs(a - b) <= tolerance for a, b in zip(c, colour))
    )


def test_plot_renders_its_lines_and_marked_points(fitted, browser, tmp_path):
    browser.open(f"{fitted.url}/plot?series_id={SERIES}&version=v2", 1000, 500)
    page = browser.js(
        """(() => {
        const root = document.documentElement;
        const lines = [...document.querySelectorAll('.series path.line')].map(p => {
          const s = getComputedStyle(p), box = p.getBBox();
          return {cls: p.parentNode.getAttribute('class'), length: p.getTotalLength(),
                  width: box.width, stroke: s.stroke, dash: s.strokeDasharray};
        });
        const dots = [...document.querySelectorAll('circle.dot')].map(c => {
          const r = c.getBoundingClientRect();
          return {fill: getComputedStyle(c).fill, w: r.width, h: r.height};
        });
        const legend = [...document.querySelectorAll('.legend text')]
          .map(t => t.textContent);
        const title = [...document.querySelectorAll('.plot_title')]
          .map(t => t.textContent).join(' ');
        return {tag: root.tagName, type: document.contentType, lines, dots, legend,
                title, size: [root.getBoundingClientRect().width,
                              root.getBoundingClientRect().height]};
      })()"""
    )
    assert page["tag"] == "svg" and page["type"] == "image/svg+xml"
    assert page["size"] == [1000, 500]
    assert page["legend"] == [
        plot.TRAINING,
        plot.CENTER,
        plot.UPPER,
        plot.LOWER,
        plot.BEYOND,
    ]
    assert f"{SERIES} v2" in page["title"] and "22695 points" in page["title"]
    by_series = {line["cls"].split()[1]: line for line in page["lines"]}
    training, center = by_series["serie-0"], by_series["serie-1"]
    # The training line spans most of the plot and has the length of a busy series.
    assert training["stroke"] == css_rgb(plot.COLOURS[plot.TRAINING])
    assert training["width"] > 600 and training["length"] > 5000
    assert center["stroke"] == css_rgb(plot.COLOURS[plot.CENTER])
    assert center["dash"] not in ("", "none")
    for key, name in (("serie-2", plot.UPPER), ("serie-3", plot.LOWER)):
        assert by_series[key]["stroke"] == css_rgb(plot.COLOURS[name])
        assert by_series[key]["width"] > 600
    # The robust model marks the failure's dips: dots drawn, in their own colour.
    assert len(page["dots"]) > 50
    beyond = css_rgb(plot.COLOURS[plot.BEYOND])
    assert all(d["fill"] == beyond and d["w"] > 2 and d["h"] > 2 for d in page["dots"])
    assert all(u.startswith(fitted.url) for u in browser.requested_urls())

    shot = browser.screenshot()
    shot.save(tmp_path / "plot.png")
    assert shot.size == (1000, 500)
    assert len(shot.getcolors(maxcolors=1 << 24)) > 50, "a blank screenshot"
    assert colour_count(shot, rgb(plot.COLOURS[plot.BEYOND])) > 500
    assert colour_count(shot, rgb(plot.COLOURS[plot.TRAINING])) > 2000


def test_dashboard_lists_series_and_its_links_work(fitted, browser, tmp_path):
    browser.open(f"{fitted.url}/?limit=2")
    page = browser.js(
        """(() => ({
        type: document.contentType,
        rows: [...document.querySelectorAll('tbody tr')].map(
          tr => [...tr.cells].map(td => td.textContent)),
        series: [...document.querySelectorAll('tbody tr td:first-child a')]
          .map(a => a.href),
        plots: [...document.querySelectorAll('a.plot')].map(a => a.href),
        next: document.querySelector('a[rel=next]')?.href ?? null,
        scripts: document.scripts.length,
      }))()"""
    )
    assert page["type"] == "text/html" and page["scripts"] == 0
    assert [row[0] for row in page["rows"]] == ["alpha", SERIES]
    # The row shows the latest version, its points and bounds.
    assert page["rows"][1][1:4] == ["v2", "2", "22695"]
    assert page["rows"][1][5:7] == ["65.8287", "112.988"]
    for link in page["plots"]:
        r = requests.get(link, timeout=TIMEOUT)
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/svg+xml"
    shot = browser.screenshot()
    shot.save(tmp_path / "dashboard.png")
    assert len(shot.getcolors(maxcolors=1 << 24)) > 20, "a blank screenshot"

    # The next page holds the third series.
    assert page["next"] is not None
    browser.open(page["next"])
    rows = browser.js(
        "[...document.querySelectorAll('tbody tr')].map(r => r.cells[0].textContent)"
    )
    assert rows == ["zulu"]

    # A series' page: its latest plot embedded and loaded, every version linked.
    browser.open(page["series"][1])
    series_page = browser.js(
        """(async () => {
        const img = document.querySelector('img');
        await img.decode();
        return {natural: [img.naturalWidth, img.naturalHeight],
                src: img.src,
                versions: [...document.querySelectorAll('a.plot')].map(a => a.href)};
      })()"""
    )
    assert series_page["natural"] == [1000, 500]
    assert series_page["src"].endswith(f"series_id={SERIES}&version=v2")
    assert [v.rsplit("=", 1)[1] for v in series_page["versions"]] == ["v2", "v1"]
    assert all(u.startswith(fitted.url) for u in browser.requested_urls())
    browser.open(series_page["versions"][1], 1000, 500)
    assert browser.js("document.querySelector('.plot_title').textContent").startswith(
        f"{SERIES} v1"
    )


def test_json_clients_get_a_description_at_the_root(fitted):
    r = fitted.get("/")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["name"] == "anomalyd" and body["version"]
    assert any(route["path"].startswith("/plot") for route in body["routes"])
    html = fitted.get("/", headers={"Accept": "text/html"})
    assert html.headers["Content-Type"].startswith("text/html")
    for response in (r, html):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Vary"] == "Accept"


def test_plot_caching(fitted):
    pinned = fitted.get(f"/plot?series_id={SERIES}&version=v1")
    assert pinned.status_code == 200
    assert pinned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = pinned.headers["ETag"]
    assert etag.startswith('"v1-') and not etag.startswith("W/")
    again = fitted.get(f"/plot?series_id={SERIES}&version=1")
    assert again.headers["ETag"] == etag and again.content == pinned.content
    not_modified = fitted.get(
        f"/plot?series_id={SERIES}&version=v1", headers={"If-None-Match": etag}
    )
    assert not_modified.status_code == 304 and not not_modified.content

    latest = fitted.get(f"/plot?series_id={SERIES}")
    assert latest.headers["Cache-Control"] == "public, no-cache"
    assert latest.headers["Content-Location"].endswith("version=v2")
    assert latest.headers["ETag"] != etag
    assert (
        fitted.get(
            f"/plot?series_id={SERIES}",
            headers={"If-None-Match": latest.headers["ETag"]},
        ).status_code
        == 304
    )
    # An ETag of another version does not match.
    assert (
        fitted.get(
            f"/plot?series_id={SERIES}", headers={"If-None-Match": etag}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 400),
        ("?series_id=", 400),
        ("?series_id=a%20b", 400),
        (f"?series_id={SERIES}&version=abc", 400),
        (f"?series_id={SERIES}&version=", 400),
        (f"?series_id={SERIES}&version=-1", 400),
        ("?series_id=nope", 404),
        (f"?series_id={SERIES}&version=v99", 404),
    ],
)
def test_plot_errors(fitted, query, status):
    r = fitted.get("/plot" + query)
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"title", "description"} and body["description"]
