"""Browser access with a token: the login page, its session cookie and what the cookie
may not do, in headless Chromium against a real ``anomalyd serve`` (2 workers)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
import requests
from conftest import Server
from test_browser import Browser

from anomalyd.session import Sessions

TOKEN = "s3cret-dashboard-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIT = {"timestamps": [1, 2, 3, 4], "values": [1.0, 2.0, 4.0, 3.0]}


# -- the signed cookie -------------------------------------------------------------


def test_a_session_is_a_signed_expiry_that_no_other_token_accepts():
    now = [1_000_000.0]
    sessions = Sessions("token-a", 3600, clock=lambda: now[0])
    value, expiry = sessions.issue()
    assert expiry == 1_003_600 and value.startswith("1003600.")
    assert sessions.valid(value)
    # Any worker, any process: the same token gives the same key.
    assert Sessions("token-a", 3600, clock=lambda: now[0]).valid(value)
    # Another token (a changed one) accepts nothing issued under the old one.
    other = Sessions("token-b", 3600, clock=lambda: now[0])
    assert not other.valid(value) and other.cookie_name != sessions.cookie_name
    # Tampered, malformed, or expired.
    later = value.replace("1003600.", "1003601.")
    assert not sessions.valid(later)
    for bad in (None, "", ".", "abc.def", value + "0", "1" * 200, "１２.x"):
        assert not sessions.valid(bad), bad
    now[0] += 3600
    assert not sessions.valid(value)
    # A shorter session setting shortens the sessions already given.
    now[0] = 1_000_000.0
    assert not Sessions("token-a", 60, clock=lambda: now[0]).valid(value)


# -- over HTTP ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    s = Server(
        tmp_path_factory.mktemp("login") / "data", env={"ANOMALYD_API_TOKEN": TOKEN}
    ).start()
    assert s.post("/fit/sensor_01", FIT, headers=AUTH).status_code == 200
    assert s.post("/fit/sensor_01", FIT, headers=AUTH).status_code == 200
    yield s
    assert s.stop() == 0


def login(s: Server, **headers) -> requests.Response:
    return requests.post(
        s.url + "/login",
        data={"token": TOKEN, "next": "/?limit=5"},
        headers=headers,
        allow_redirects=False,
        timeout=60,
    )


def test_the_cookie_is_httponly_strict_and_secure_over_tls(guarded):
    r = login(guarded)
    assert r.status_code == 303 and r.headers["Location"] == "/?limit=5"
    cookie = r.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never return
    # Behind a TLS proxy on this host (gunicorn trusts X-Forwarded-Proto from it).
    tls = login(guarded, **{"X-Forwarded-Proto": "https"})
    assert "Secure" in tls.headers["Set-Cookie"]
    # A redirect target elsewhere is not followed.
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        r = requests.post(
            guarded.url + "/login",
            data={"token": TOKEN, "next": target},
            allow_redirects=False,
            timeout=60,
        )
        assert r.headers["Location"] == "/", target


def test_every_worker_takes_the_session(guarded):
    name, _, value = login(guarded).headers["Set-Cookie"].split(";")[0].partition("=")
    for _ in range(20):  # new connections: both workers answer some
        r = requests.get(
            guarded.url + "/",
            headers={"Accept": "text/html", "Connection": "close"},
            cookies={name: value},
            allow_redirects=False,
            timeout=60,
        )
        assert r.status_code == 200, r.headers


def test_the_login_form_refuses_other_sites(guarded):
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        r = login(guarded, **headers)
        assert r.status_code == 403 and "Set-Cookie" not in r.headers, headers
        assert r.json()["description"]
    assert login(guarded, Origin=guarded.url).status_code == 303
    assert login(guarded, **{"Sec-Fetch-Site": "same-origin"}).status_code == 303


# -- in Chromium -------------------------------------------------------------------


def type_and_enter(browser: Browser, text: str) -> None:
    """Type into the focused field and press Enter, as a person would."""
    browser.events.clear()
    browser.call("Input.insertText", text=text)
    for kind in ("keyDown", "keyUp"):
        browser.call(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            text="\r" if kind == "keyDown" else "",
        )
    browser.wait_event("Page.loadEventFired")


def session_cookies(browser: Browser, url: str) -> list[dict]:
    cookies = browser.call("Network.getCookies", urls=[url])["cookies"]
    return [c for c in cookies if c["name"].startswith("anomalyd_session")]


def test_log_in_see_the_dashboard_and_a_plot_and_log_out(guarded, browser):
    url = guarded.url
    browser.call("Network.clearBrowserCookies")
    # The dashboard without a session: the login page, with the field focused.
    browser.open(url + "/?limit=5")
    assert browser.js("location.pathname + location.search") == (
        "/login?next=%2F%3Flimit%3D5"
    )
    assert browser.js("document.activeElement.name") == "token"

    # A wrong token does not get in.
    type_and_enter(browser, "not-the-token")
    assert browser.js("location.pathname") == "/login"
    assert "not the api_token" in browser.js("document.body.innerText")
    assert session_cookies(browser, url) == []

    # The right one: on to the page first asked for.
    browser.js("document.querySelector('input[name=token]').focus()")
    type_and_enter(browser, TOKEN)
    assert browser.js("location.pathname + location.search") == "/?limit=5"
    rows = browser.js(
        "[...document.querySelectorAll('tbody tr')].map(r => r.cells[0].textContent)"
    )
    assert rows == ["sensor_01"]
    (cookie,) = session_cookies(browser, url)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]
    assert 11 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
    assert browser.js("document.cookie") == ""  # no script can read it

    # A series page with its plot embedded, and a plot opened on its own.
    browser.open(url + "/?series_id=sensor_01")
    natural = browser.js(
        "(async () => { const i = document.querySelector('img'); await i.decode();"
        " return [i.naturalWidth, i.naturalHeight]; })()"
    )
    assert natural == [1000, 500]
    browser.open(url + "/plot?series_id=sensor_01&version=v1", 1000, 500)
    assert browser.js("document.documentElement.tagName") == "svg"
    assert "sensor_01 v1" in browser.js(
        "document.querySelector('.plot_title').textContent"
    )

    # The cookie is not the header: no POST, no JSON API call.
    browser.open(url + "/")
    answers = browser.js(
        """(async () => {
        const fit = await fetch('/fit/sensor_01', {method: 'POST',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({timestamps: [1, 2, 3], values: [1, 2, 4]})});
        const del = await fetch('/series/sensor_01', {method: 'DELETE'});
        const list = await fetch('/series');
        const one = await fetch('/series/sensor_01');
        const doc = await fetch('/openapi.json');
        const json = await fetch('/', {headers: {Accept: 'application/json'}});
        return [fit.status, del.status, list.status, one.status, doc.status,
                json.status];
      })()"""
    )
    assert answers == [401, 401, 401, 401, 401, 401]
    assert guarded.get("/series/sensor_01", headers=AUTH).json()["latest"] == "v2"

    # Log out with the dashboard's button: the cookie is gone, the login page is back.
    browser.events.clear()
    browser.js("document.querySelector('form[action=\"/logout\"] button').click()")
    browser.wait_event("Page.loadEventFired")
    assert browser.js("location.pathname") == "/login"
    assert session_cookies(browser, url) == []
    browser.open(url + "/")
    assert browser.js("location.pathname") == "/login"


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another site: a page that embeds the plot, and one that posts the login form."""

    target = ""

    def do_GET(self) -> None:
        if self.path == "/embed":
            body = f'<img id="p" src="{self.target}/plot?series_id=sensor_01">'
        else:
            body = (
                f'<form method="post" action="{self.target}/login">'
                f'<input name="token" value="{TOKEN}"></form>'
                "<script>document.forms[0].submit()</script>"
            )
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_another_site_can_neither_use_the_session_nor_log_in(guarded, browser):
    """SameSite=Strict: another site's page makes the browser send no cookie (its
    image of a plot fails although the browser is logged in); and the login form
    refuses a POST from another site's page."""
    url = guarded.url
    browser.call("Network.clearBrowserCookies")
    browser.open(url + "/login")
    # Clicked into, as a person would: autofocus may come after the load event when
    # the machine is busy (CI timed out once waiting for a page the Enter never sent).
    browser.js("document.querySelector('input[name=token]').focus()")
    type_and_enter(browser, TOKEN)
    assert len(session_cookies(browser, url)) == 1

    _Attacker.target = url
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    # "localhost" is another site than "127.0.0.1" for the browser.
    other_site = f"http://localhost:{attacker.server_address[1]}"
    try:
        browser.open(other_site + "/embed")
        loaded = browser.js(
            "(async () => { const i = document.getElementById('p');"
            " try { await i.decode(); return i.naturalWidth; }"
            " catch (e) { return 0; } })()"
        )
        assert loaded == 0, "the plot loaded in another site's page"

        browser.call("Network.clearBrowserCookies")
        browser.events.clear()
        browser.call("Page.navigate", url=other_site + "/post")
        browser.wait_event("Page.loadEventFired")  # the attacker's page
        deadline = time.monotonic() + 30
        while browser.js("location.href").startswith(other_site):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
        assert "only accepted from anomalyd's own pages" in browser.js(
            "document.body.innerText"
        )
        assert session_cookies(browser, url) == []
    finally:
        attacker.shutdown()
        attacker.server_close()
