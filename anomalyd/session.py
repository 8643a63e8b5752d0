"""Browser sessions for the dashboard: a signed expiry time, and nothing stored.

A session cookie's value is ``<expiry>.<signature>``: the Unix second it ends at and an
HMAC-SHA256 of it under a key derived from the api_token. Every worker derives the same
key, so a session is valid on all of them with no shared state; changing the token
changes the key and ends every session. The cookie carries no secret: the key cannot be
worked back from it, and the token never leaves the server.

Stateless has one cost, stated in the README: logging out removes the cookie from that
browser, but a copy taken before stays valid until its expiry (or a token change).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

_KEY_LABEL = b"anomalyd dashboard session key v1"


class Sessions:
    def __init__(
        self, token: str, lifetime: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self.lifetime = lifetime
        self._clock = clock
        # Cookies are not kept apart by port: two services on one host get different
        # names (from their keys), so logging in to one does not log out of the other.
        key_id = hmac.new(self._key, b"cookie name", hashlib.sha256).hexdigest()[:8]
        self.cookie_name = f"anomalyd_session_{key_id}"

    def _sign(self, expiry: int) -> str:
        message = b"anomalyd session until %d" % expiry
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self) -> tuple[str, int]:
        """A new session's cookie value and its expiry (Unix seconds)."""
        expiry = int(self._clock()) + self.lifetime
        return f"{expiry}.{self._sign(expiry)}", expiry

    def valid(self, value: str | None) -> bool:
        """Whether ``value`` is a cookie this service issued and that has not expired.

        An expiry further away than the lifetime is refused too, so shortening the
        session setting shortens the sessions already given.
        """
        if not value or len(value) > 100:
            return False
        expiry, _, signature = value.partition(".")
        if not (expiry.isascii() and expiry.isdigit()):
            return False
        # Constant time: how much of a forged signature matched must not show.
        if not hmac.compare_digest(
            signature.encode(), self._sign(int(expiry)).encode()
        ):
            return False
        return 0 < int(expiry) - self._clock() <= self.lifetime
