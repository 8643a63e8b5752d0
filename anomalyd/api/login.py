"""GET/POST /login and POST /logout: a browser's way in when an api_token is set.

The login page takes the token once and answers with a session cookie (see
``anomalyd.session``): HttpOnly (no script reads it), SameSite=Strict (no other site's
page makes the browser send it), Secure when the request came over TLS, and an expiry.
The cookie opens only the GET views, the dashboard and /plot (``anomalyd.auth``); every
API call still needs the Authorization header.

Cross-site requests: the login and logout forms accept a POST only from this service's
own pages (the browser's Origin header, and Sec-Fetch-Site where sent), so another site
cannot log a visitor in or out; the pages may not be framed (clickjacking).
"""

from __future__ import annotations

import datetime as dt
import hmac
from urllib.parse import parse_qs, urlsplit

import falcon

from anomalyd.api.html import HTML, e, page
from anomalyd.session import Sessions

FORM_LIMIT = 8192
# The login page is the only page with a form that sends a secret: nothing may frame it,
# load anything into it, or send its form elsewhere.
_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this service, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if len(target) > 2000 or any(c < " " or c == "\x7f" for c in target):
        return "/"
    parts = urlsplit(target)
    return target if not (parts.scheme or parts.netloc) else "/"


def check_same_origin(req: falcon.Request) -> None:
    """403 unless the POST came from a page of this service (or from no browser)."""
    site = req.get_header("Sec-Fetch-Site")
    origin = req.get_header("Origin")
    if site is not None and site not in ("same-origin", "none"):
        raise _cross_site(f"Sec-Fetch-Site is {site!r}")
    if origin is not None and origin.lower() not in _own_origins(req):
        raise _cross_site(f"Origin {origin[:100]!r} is not this service")


def _own_origins(req: falcon.Request) -> set[str]:
    # An Origin leaves out the scheme's default port; a Host header may give it.
    netloc = req.netloc.lower()
    default = ":443" if req.scheme == "https" else ":80"
    return {
        f"{req.scheme}://{netloc}",
        f"{req.scheme}://{netloc.removesuffix(default)}",
    }


def _cross_site(why: str) -> falcon.HTTPForbidden:
    return falcon.HTTPForbidden(
        title="Forbidden",
        description=f"this form is only accepted from anomalyd's own pages ({why})",
    )


def read_form(req: falcon.Request) -> dict[str, str]:
    """A small application/x-www-form-urlencoded body, first value of each field."""
    if req.content_length is not None and req.content_length > FORM_LIMIT:
        raise falcon.HTTPContentTooLarge(
            title="Body too large", description=f"a form is at most {FORM_LIMIT} bytes"
        )
    raw = req.bounded_stream.read(FORM_LIMIT + 1)
    if len(raw) > FORM_LIMIT:
        raise falcon.HTTPContentTooLarge(
            title="Body too large", description=f"a form is at most {FORM_LIMIT} bytes"
        )
    fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


def _login_page(target: str, failed: bool) -> str:
    message = (
        '<p class="error" role="alert">That is not the api_token. Try again.</p>\n'
        if failed
        else ""
    )
    return page(
        "log in · anomalyd",
        "<h1>anomalyd</h1>\n"
        "<p>This service needs its api_token. Enter it once: this browser then "
        "keeps a session for the dashboard and plots.</p>\n"
        f"{message}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{e(target)}">'
        '<label>api_token <input type="password" name="token" required autofocus '
        'autocomplete="current-password"></label> '
        "<button>log in</button></form>",
    )


def _html(req: falcon.Request, resp: falcon.Response, text: str) -> None:
    resp.content_type = HTML
    resp.text = text
    resp.cache_control = ["no-store"]
    resp.set_header("Content-Security-Policy", _PAGE_POLICY)
    resp.set_header("X-Frame-Options", "DENY")


def _see_other(resp: falcon.Response, target: str) -> None:
    # Set on the response rather than raised, so the cookie set before stays on it.
    resp.status = falcon.HTTP_303
    resp.location = target
    resp.cache_control = ["no-store"]


class LoginResource:
    def __init__(self, token: str, sessions: Sessions) -> None:
        self._expected = token.encode()
        self._sessions = sessions

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _html(req, resp, _login_page(safe_next(req.get_param("next")), failed=False))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_same_origin(req)
        form = read_form(req)
        target = safe_next(form.get("next"))
        given = form.get("token", "").strip().encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._expected):
            if req.client_prefers(["application/json", "text/html"]) == "text/html":
                _html(req, resp, _login_page(target, failed=True))
                resp.status = falcon.HTTP_401
                resp.set_header("WWW-Authenticate", "Bearer")
                return
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="the token field is not the configured api_token",
                challenges=["Bearer"],
            )
        value, expiry = self._sessions.issue()
        resp.set_cookie(
            self._sessions.cookie_name,
            value,
            expires=dt.datetime.fromtimestamp(expiry, dt.UTC).replace(tzinfo=None),
            max_age=self._sessions.lifetime,
            path="/",
            secure=req.scheme == "https",
            http_only=True,
            same_site="Strict",
        )
        _see_other(resp, target)


class LogoutResource:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_same_origin(req)
        resp.unset_cookie(self._sessions.cookie_name, same_site="Strict", path="/")
        _see_other(resp, "/login")
