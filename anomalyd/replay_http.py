"""The HTTP side of ``anomalyd replay``: one kept-alive connection to the service,
and retries of what may be retried (connection errors, timeouts, ``503`` with
``Retry-After``), ``RETRIES`` times, waiting ``BACKOFF`` seconds doubled each time (or
what Retry-After says, at most ``MAX_WAIT``). Standard library only: the command runs
wherever anomalyd does, with nothing more to install."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

import anomalyd

RETRIES = 5
BACKOFF = 0.5
MAX_WAIT = 60.0
_decode = msgspec.json.decode


class Refused(Exception):
    """The service refused, or could not be reached; the message says what."""


class Client:
    """HTTP/1.1 to one service, on one kept-alive connection, with retries."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        note: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"--url must be http://HOST[:PORT] or https://..., got {url!r}"
            )
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._headers = {"User-Agent": f"anomalyd-replay/{anomalyd.__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._note = note
        self._sleep = sleep
        self._connection: http.client.HTTPConnection | None = None

    def _once(self, method: str, path: str, body: bytes | None, headers: dict):
        if self._connection is None:
            kind = (
                http.client.HTTPSConnection
                if self._https
                else http.client.HTTPConnection
            )
            self._connection = kind(self._host, self._port, timeout=self._timeout)
        try:
            self._connection.request(method, self._prefix + path, body, headers)
            response = self._connection.getresponse()
            return response.status, response.getheader("Retry-After"), response.read()
        except BaseException:
            self._connection.close()
            self._connection = None
            raise

    def call(
        self, method: str, path: str, body: bytes | None = None, key: str | None = None
    ) -> tuple[int, bytes]:
        """(status, body); retried on connection errors and 503 with Retry-After."""
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        for attempt in range(RETRIES + 1):
            wait = min(MAX_WAIT, BACKOFF * 2**attempt)
            try:
                status, retry_after, data = self._once(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if status != 503 or retry_after is None:
                    return status, data
                why = f"503 {description(data)}"
                if retry_after.isdigit():
                    wait = min(MAX_WAIT, float(retry_after))
            if attempt == RETRIES:
                raise Refused(
                    f"{method} {self.url}{path} failed {RETRIES + 1} times; the last: "
                    f"{why}"
                )
            self._note(f"{why}; retrying in {wait:g} s ({attempt + 1} of {RETRIES})")
            self._sleep(wait)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def description(data: bytes) -> str:
    """The description of an error body (or the start of a body that is not one)."""
    try:
        return str(_decode(data)["description"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return data[:200].decode("utf-8", "replace")
