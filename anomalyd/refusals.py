"""Answers the worker's event loop gives itself, with no thread: a request refused
before it reaches the app (408, 413, a malformed request) or turned away because the
worker is busy (503 + Retry-After). Each gets the JSON error body, then the connection
is closed politely (FIN, then the client's unread bytes drained for a while)."""

from __future__ import annotations

from anomalyd import http_errors
from anomalyd.connection import Conn

RETRY_AFTER = 1  # seconds, in the 503s


class Refuses:
    """Mixed into the worker, which provides ``log`` and ``close_politely``."""

    def refuse(self, conn: Conn, status: int, description: str, title=None) -> None:
        self.log.warning(
            "Refused request from ip=%s: %s %s",
            conn.client[0] if conn.client else "",
            status,
            description,
        )
        self._send_and_close(
            conn,
            http_errors.response(
                status, title or http_errors.title_of(status), description
            ),
        )

    def refuse_busy(self, conn: Conn, what: str) -> None:
        self.log.warning("503 to ip=%s: too many %s", conn.client[0], what)
        self._send_and_close(
            conn,
            http_errors.response(
                503,
                "Service unavailable",
                f"too many {what} at the moment; retry after {RETRY_AFTER} s",
                retry_after=RETRY_AFTER,
            ),
        )

    def _send_and_close(self, conn: Conn, data: bytes) -> None:
        try:
            conn.sock.send(data)  # small; a full socket buffer loses it, no more
        except OSError:
            pass
        self.close_politely(conn)
