"""One HTTP POST to a receiver, within a deadline, following nothing.

A small client on a socket rather than ``requests`` or ``urllib``, because a sender
must do less than they do: it follows no redirect (a 3xx is a failed attempt that
says where it pointed), reads no proxy from the environment and no ``~/.netrc``
(either could send the request, or credentials, somewhere the operator did not
name), and holds to one deadline for the whole attempt, connect, TLS, sending and the
answer's head, so a receiver that trickles bytes cannot hold the sender longer than
``alert_timeout``. The body of the answer is not read. Name resolution is the one
step the deadline cannot cut short (``getaddrinfo`` has no timeout).
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import anomalyd

USER_AGENT = f"anomalyd/{anomalyd.__version__}"
# The most of an answer's head read (status line and headers).
MAX_HEAD = 64 * 1024
_TLS = None


class Outcome(NamedTuple):
    status: int | None  # None: no answer
    error: str | None  # None: a 2xx
    retry_after: float | None  # seconds, from a Retry-After header in seconds


class Target(NamedTuple):
    """Where a URL posts to, parsed once."""

    tls: bool
    host: str
    port: int
    host_header: str
    path: str  # with its query
    authorization: str | None  # Basic, from the URL's user information


def target(url: str) -> Target:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        shown += f":{parts.port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Target(tls, host, port, shown, path, authorization)


def _tls_context() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS


def post(to: Target, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """POST ``body`` with ``headers`` (and Host, Content-Length, Content-Type JSON,
    User-Agent, Connection: close); the outcome, never an exception."""
    deadline = time.monotonic() + timeout
    lines = [
        f"POST {to.path} HTTP/1.1",
        f"Host: {to.host_header}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"User-Agent: {USER_AGENT}",
        "Connection: close",
    ]
    if to.authorization is not None:
        lines.append(f"Authorization: {to.authorization}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    sock = None
    try:
        sock = socket.create_connection((to.host, to.port), timeout=timeout)
        if to.tls:
            sock.settimeout(_left(deadline))
            sock = _tls_context().wrap_socket(sock, server_hostname=to.host)
        sock.settimeout(_left(deadline))
        sock.sendall(request)
        head = _read_head(sock, deadline)
    except TimeoutError:
        return Outcome(None, f"no answer within {timeout:g} s (alert_timeout)", None)
    except socket.gaierror as exc:
        return Outcome(None, f"cannot resolve {to.host}: {exc.strerror or exc}", None)
    except ssl.SSLError as exc:
        return Outcome(None, f"TLS with {to.host_header} failed: {exc}", None)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return Outcome(None, f"connection to {to.host_header} failed: {reason}", None)
    finally:
        if sock is not None:
            sock.close()
    return _outcome(head)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _read_head(sock: socket.socket, deadline: float) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise OSError(0, f"an answer head over {MAX_HEAD} bytes")
        sock.settimeout(_left(deadline))
        chunk = sock.recv(8192)
        if not chunk:
            if buf.startswith(b"HTTP/"):
                break  # an answer without headers' end: judge by its status line
            raise OSError(0, "the connection was closed without an answer")
        buf += chunk
    return buf.split(b"\r\n\r\n", 1)[0]


def _outcome(head: bytes) -> Outcome:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return Outcome(None, f"not an HTTP answer: {lines[0][:80]!r}", None)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if 200 <= status < 300:
        return Outcome(status, None, None)
    retry_after = fields.get("retry-after", "")
    wait = float(retry_after) if retry_after.isdigit() else None
    if 300 <= status < 400:
        where = fields.get("location", "nowhere")
        return Outcome(
            status,
            f"{status} {reason}: a redirect to {where[:200]}, not followed (set the "
            "receiver's URL to where it should go)",
            wait,
        )
    return Outcome(status, f"{status} {reason}".strip(), wait)
