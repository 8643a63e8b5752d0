"""Bearer-token access control, and the warning for an open service on the network.

The middleware is only installed when a token is configured, so a service without one
pays nothing for it on the predict path. With a token, a browser may open the GET views
(the dashboard and /plot) with the session cookie of the login page instead of the
header (``anomalyd.session``, ``anomalyd.api.login``); nothing else takes the cookie.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlencode

import falcon

from anomalyd.bind import is_loopback_bind
from anomalyd.session import Sessions
from anomalyd.settings import Settings, SettingsError

log = logging.getLogger("anomalyd")

# Routes anyone may read: liveness probes and Prometheus scrapers carry no token.
OPEN_ROUTES = frozenset({"/healthcheck", "/metrics"})
# The browser's way in: the login form and the logout button need no token.
LOGIN_ROUTES = frozenset({"/login", "/logout"})
# The GET views a browser session opens (never an API route, never a write).
VIEWS = frozenset({"/", "/plot"})
_READ = frozenset({"GET", "HEAD"})


class BearerAuth:
    def __init__(self, token: str, sessions: Sessions | None = None) -> None:
        self._expected = token.encode()
        self._sessions = sessions

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in OPEN_ROUTES:
            return
        given = req.get_header("Authorization")
        if given is None and self._sessions is not None and self._browser(req):
            return
        given = given or ""
        scheme, _, credentials = given.partition(" ")
        # The scheme is case-insensitive (RFC 9110 11.1). Constant time for the
        # token: how much of it matched must not show in the timing.
        matched = hmac.compare_digest(
            credentials.strip().encode("utf-8", "replace"), self._expected
        )
        if not (matched and scheme.lower() == "bearer"):
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description=(
                    "this route needs the header 'Authorization: Bearer <token>' "
                    "with the configured api_token"
                    if given
                    else "missing the header 'Authorization: Bearer <token>'"
                ),
                challenges=["Bearer"],
            )

    def _browser(self, req: falcon.Request) -> bool:
        """A request without the header that a browser session may make: the login
        routes, or a GET view with a valid session cookie (True: let it through).
        A browser opening a view without one is sent to the login page."""
        path = req.path
        if path in LOGIN_ROUTES:
            return True
        if req.method not in _READ or path not in VIEWS:
            return False
        # / is a view when it answers HTML; its JSON description is an API answer.
        wants_html = (
            req.client_prefers(["application/json", "text/html"]) == "text/html"
        )
        if path == "/" and not wants_html:
            return False
        if self._sessions.valid(req.cookies.get(self._sessions.cookie_name)):
            req.context.session = True
            return True
        if wants_html:  # a page opened in the browser, not an image inside one
            target = req.relative_uri
            raise falcon.HTTPSeeOther(
                "/login" if target == "/" else "/login?" + urlencode({"next": target})
            )
        return False


def read_token(settings: Settings) -> str | None:
    """The token: ``api_token``, else the stripped content of ``api_token_file``."""
    if settings.api_token:
        return settings.api_token
    if not settings.api_token_file:
        return None
    try:
        with open(settings.api_token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise SettingsError(
            f"setting api_token_file = {settings.api_token_file!r}: the file cannot "
            f"be read ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError:
        raise SettingsError(
            f"setting api_token_file = {settings.api_token_file!r}: the file is not "
            "UTF-8 text"
        ) from None
    if not token:
        raise SettingsError(
            f"setting api_token_file = {settings.api_token_file!r}: the file is empty"
        )
    return token


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` (any form of the setting) is reachable only from this host."""
    return is_loopback_bind(bind)


def warn_if_open(settings: Settings, token: str | None) -> None:
    if token is None and not is_loopback(settings.bind):
        log.warning(
            "!!! anomalyd is bound to %s WITHOUT an api_token: anyone who can reach "
            "this address can read, train and delete every series. Set api_token "
            "(ANOMALYD_API_TOKEN) or api_token_file, or bind to 127.0.0.1. !!!",
            settings.bind,
        )
