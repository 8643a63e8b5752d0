"""Bearer-token access control, and the warning for an open service on the network.

The middleware is only installed when a token is configured, so a service without one
pays nothing for it on the predict path.
"""

from __future__ import annotations

import hmac
import logging

import falcon

from anomalyd.bind import is_loopback_bind
from anomalyd.settings import Settings, SettingsError

log = logging.getLogger("anomalyd")

# Routes anyone may read: liveness probes and Prometheus scrapers carry no token.
OPEN_ROUTES = frozenset({"/healthcheck", "/metrics"})


class BearerAuth:
    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in OPEN_ROUTES:
            return
        given = req.get_header("Authorization") or ""
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
