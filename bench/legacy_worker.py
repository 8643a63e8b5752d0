"""Bench-only baseline: anomalyd's previous worker (gthread with a read deadline).

Kept to measure anomalyd.worker.BufferedThreadWorker against it in the same
``make bench`` run (bench/worker_service.py). Not used by the service.

gunicorn's gthread worker with a deadline on reading each request.

gthread hands a connection to a thread once its first bytes arrive and then reads the
request with a blocking socket and no timeout: a client that sends half a request and
stalls (or trickles a byte now and then) holds that thread for good, and a handful of
them stall the whole service. Here every request must arrive within ``timeout`` seconds
in all (the setting gunicorn's sync worker also uses as its socket timeout), with at
most ``IDLE_TIMEOUT`` seconds between two reads; past either the connection is closed.
Idle keep-alive connections wait in gthread's poller, not in a thread, and are closed
after ``keepalive`` seconds as before.
"""

from __future__ import annotations

import socket
import time

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

IDLE_TIMEOUT = 10.0
# Set by the master from the timeout setting before it forks the workers.
CLIENT_TIMEOUT = 60.0


class DeadlineSocket(socket.socket):
    """A client socket whose reads stop at a per-request deadline."""

    __slots__ = ("deadline", "expired")

    def setblocking(self, flag: bool) -> None:
        if not flag:
            super().setblocking(False)
            return
        # gthread calls setblocking(True) as a thread takes the connection up for the
        # next request: that starts the request's clock.
        self.deadline = time.monotonic() + CLIENT_TIMEOUT
        self.settimeout(min(IDLE_TIMEOUT, CLIENT_TIMEOUT))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        timeout = self.gettimeout()
        if timeout == 0.0:  # non-blocking: gthread's poller peeking
            return super().recv(bufsize, flags)
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            self.settimeout(min(timeout or IDLE_TIMEOUT, remaining))
            return super().recv(bufsize, flags)
        except TimeoutError:
            self.expired = True
            # As if the client had hung up: gunicorn closes the connection quietly
            # (and a responder reading the body gets an OSError it answers with 408).
            raise NoMoreData(b"") from None

    def sendall(self, data, flags: int = 0) -> None:
        # The response gets the whole ``timeout`` to leave (Python counts a socket
        # timeout over all of sendall), whatever was left of the reading deadline; a
        # client that stops reading it is cut off then instead of holding the thread.
        if self.gettimeout() != 0.0:
            self.settimeout(CLIENT_TIMEOUT)
        super().sendall(data, flags)

    def shutdown(self, how: int) -> None:
        # gunicorn closes "gracefully" in the worker's main thread, reading for up to
        # 2 s so the peer sees the last response. For a client that already stalled
        # past its deadline that would block the main loop 2 s per connection: a few
        # such clients and the master kills the worker for missing its heartbeat.
        if getattr(self, "expired", False):
            self.deadline = time.monotonic()
        super().shutdown(how)


class DeadlineThreadWorker(ThreadWorker):
    def enqueue_req(self, conn) -> None:
        if not isinstance(conn.sock, DeadlineSocket):
            plain = conn.sock
            conn.sock = DeadlineSocket(fileno=plain.detach())
            conn.sock.setblocking(False)
        super().enqueue_req(conn)
