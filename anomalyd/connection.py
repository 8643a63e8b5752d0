"""A client connection as the worker's event loop holds it, and what a thread gets.

The loop owns every connection and reads it without blocking into ``Conn.buf``; a
request goes to a thread as a ``Job`` only once all of it has arrived. The thread
parses the job's bytes with gunicorn's own parser (``parse``), reading from memory: it
never waits for the client.
"""

from __future__ import annotations

import errno
import io
import socket

from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.unreader import Unreader

from anomalyd import http_errors
from anomalyd.coalesce import Answering, Coalesced
from anomalyd.framing import Scan

# Connection states.
IDLE, ARRIVING, BUSY, CLOSING, CLOSED = range(5)


class Conn:
    __slots__ = (
        "buf",
        "charged",
        "client",
        "deadline",
        "drained",
        "registered",
        "requests",
        "scan",
        "server",
        "sock",
        "state",
        "write",
    )

    def __init__(self, sock, client, server, max_body: int) -> None:
        self.sock = sock
        self.client = client
        self.server = server
        self.buf = bytearray()
        self.scan = Scan(max_body)
        self.state = IDLE
        self.deadline = 0.0
        self.charged = 0  # bytes of the memory budget this connection holds
        self.registered = False
        self.requests = 0
        self.write = False  # the request arriving is one that writes
        self.drained = 0

    def has_bytes(self) -> bool:
        """Whether bytes wait unread: closing then would reset the connection and
        lose a request the client has sent (the worker may have been stopped or busy
        past the deadline while it arrived)."""
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:  # nothing yet (EAGAIN), or the connection is gone
            return False


class Job:
    """One complete request on its way to a thread."""

    __slots__ = ("body", "charge", "close_after", "head", "number", "write")

    def __init__(self, head, body, charge, write, close_after, number) -> None:
        self.head = head  # the header block, or the whole request when chunked
        self.body = body  # the body of a Content-Length request, else None
        self.charge = charge
        self.write = write
        self.close_after = close_after
        self.number = number


class MemoryUnreader(Unreader):
    """gunicorn's parser reads the request from memory; past its end there is
    nothing (``NoMoreData``), never a wait on the socket."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data: bytes | None = data

    def chunk(self, size_hint=None) -> bytes:
        data, self._data = self._data, None
        return data or b""


def take_job(conn: Conn) -> Job:
    """Cut the complete request at the front of ``conn.buf`` out as a ``Job``.

    Bytes after it (a pipelined next request) stay in the buffer, and so does the
    budget they hold.
    """
    scan, buf = conn.scan, conn.buf
    end = scan.end
    if scan.chunked or scan.doubtful or not scan.head_end:
        head, body = bytes(buf[:end]), None
    else:
        head = bytes(buf[: scan.head_end])
        body = bytes(buf[scan.head_end : end])
    # The budget held for this request; the rest of the buffer keeps what it needs.
    charge = max(0, conn.charged - max(0, len(buf) - end))
    conn.charged -= charge
    if end >= len(buf):
        conn.buf = bytearray()
    else:
        del buf[:end]
    conn.requests += 1
    job = Job(head, body, charge, conn.write, scan.doubtful, conn.requests)
    conn.scan = Scan(scan.max_body)
    conn.write = False
    return job


def parse(cfg, job: Job, client) -> Request:
    """gunicorn's parser over the job's bytes: its header checks and smuggling
    defences apply to every request."""
    req = Request(cfg, MemoryUnreader(job.head), client, job.number)
    if job.body is not None:
        reader = req.body.reader
        if not isinstance(reader, LengthReader) or reader.length != len(job.body):
            # The framing seen by the event loop and by gunicorn differ: refuse
            # rather than guess where the request ends.
            raise NoMoreData(b"")
        # The body as one bytes object: io.BytesIO shares it, and reading it whole
        # (what the app does) returns it without a copy.
        req.body = io.BytesIO(job.body)
    return req


class ServesJobs:
    """The thread side of the worker: a complete request in, its answer out."""

    # Set by the worker module from the timeout setting.
    send_timeout = 60.0
    # Header block and body in one send (anomalyd.coalesce); bench/worker_service.py
    # turns it off to measure what it gives.
    coalesce = True

    def serve(self, conn: Conn, job) -> bool:
        """Parse and answer one complete request; True to keep the connection."""
        req = None
        try:
            # Reads never happen here; the timeout bounds sending the response.
            conn.sock.settimeout(self.send_timeout)
            req = parse(self.cfg, job, conn.client)
            if job.close_after:  # framed with doubt: answered, then closed
                req.force_close()
            if not self.coalesce:
                return self.handle_request(req, conn)
            # The header block leaves with the body's first bytes (anomalyd.coalesce).
            out = Coalesced(conn.sock)
            try:
                return self.handle_request(
                    req, Answering(out, conn.client, conn.server)
                )
            finally:
                out.flush()
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN) or (
                isinstance(e, TimeoutError)
            ):
                self.log.debug("Client gone while answering: %s", e)
            elif http_errors.client_error(e) is not None:  # NoMoreData
                self.handle_error(req, conn.sock, conn.client, e)
            else:
                self.log.exception("Socket error processing request.")
        except StopIteration:
            pass
        except Exception as e:  # noqa: BLE001 - answered with the error body
            self.handle_error(req, conn.sock, conn.client, e)
        return False

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's error answer, with the JSON error body instead of HTML."""
        found = http_errors.client_error(exc)
        if found is None:
            where = f"{req.method} {req.uri}" if hasattr(req, "uri") else "(no URI)"
            self.log.exception("Error handling request %s", where)
            status, description = 500, "an internal error; it was logged"
        else:
            status, description = found
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            client.sendall(
                http_errors.response(status, http_errors.title_of(status), description)
            )
        except OSError:
            self.log.debug("Failed to send error message.")
