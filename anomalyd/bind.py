"""The ``bind`` setting: the address forms gunicorn accepts, checked before it starts.

gunicorn takes ``HOST:PORT``, ``HOST`` (port 8000), ``[IPv6]:PORT``, ``[IPv6]``,
``unix:PATH`` (also ``unix://PATH``), ``fd://FD`` and ``tcp://HOST:PORT``, and a list of
them. anomalyd listens on one of them: a setting is one address. Each way of getting it
wrong has its own message, in words; the address is kept in an explicit form
(``localhost`` becomes ``localhost:8000``) so ``check-config`` shows what is used.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

DEFAULT_PORT = 8000
FORMS = (
    "HOST:PORT, HOST (port 8000), [IPv6]:PORT, [IPv6] (port 8000), unix:PATH or fd://FD"
)
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class Bind(NamedTuple):
    """One parsed address: ``kind`` is tcp (host, port), unix (path) or fd (fd)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, got {text!r}")
    return int(text)


def _host(text: str) -> str:
    if not text:
        raise ValueError(
            "no host before the port: 0.0.0.0:PORT listens on every IPv4 address, "
            "[::]:PORT on every address, 127.0.0.1:PORT on this host only"
        )
    labels = text.rstrip(".").split(".") if len(text) <= 253 else []
    if not labels or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{text!r} is not a host name or an IPv4 address (host names are letters, "
            "digits, '-' and '.'; an IPv6 address goes in brackets: [::1]:8000)"
        )
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 address") from None
    return text.lower()


def parse_bind(text: str) -> Bind:
    """The address ``text`` names; ValueError, worded for a person, when it names none."""
    text = text.strip()
    if not text:
        raise ValueError(f"the address is empty; give one of {FORMS}")
    if re.search(r"[\s,]", text):
        raise ValueError(
            "give one address: anomalyd listens on one (to reach it over IPv4 and "
            "IPv6, bind [::]:PORT, which on Linux also takes IPv4)"
        )
    if text.startswith("unix:"):
        path = text[len("unix://") :] if text.startswith("unix://") else text[5:]
        if not path:
            raise ValueError(
                "unix: needs the socket's path, as in unix:/run/anomalyd/http.sock"
            )
        return Bind("unix", path=path)
    if text.startswith("fd://"):
        fd = text[5:]
        if not (fd.isascii() and fd.isdigit()):
            raise ValueError("fd:// needs a file descriptor number, as in fd://3")
        return Bind("fd", fd=int(fd))
    text = text.removeprefix("tcp://")
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"the IPv6 address has no closing bracket: {text!r}")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise ValueError(
                f"{inside!r} (in brackets) is not an IPv6 address"
            ) from None
        if rest and not rest.startswith(":"):
            raise ValueError(f"only :PORT may follow [{inside}], got {rest!r}")
        return Bind("tcp", inside.lower(), _port(rest[1:]) if rest else DEFAULT_PORT)
    if text.count(":") > 1:
        raise ValueError(
            f"an IPv6 address goes in brackets, with the port after them: [{text}] or "
            "[ADDRESS]:PORT"
        )
    host, colon, port = text.partition(":")
    return Bind("tcp", _host(host), _port(port) if colon else DEFAULT_PORT)


def normalize_bind(text: str) -> str:
    """``text`` in its explicit form (``localhost`` -> ``localhost:8000``)."""
    return str(parse_bind(text))


def is_loopback_bind(text: str) -> bool:
    """Whether the address is reachable from this host only.

    A unix socket is; a descriptor handed over (``fd://``) cannot be told, so it is not
    taken to be; a host name is only when it is ``localhost``.
    """
    try:
        bind = parse_bind(text)
    except ValueError:
        return False
    if bind.kind != "tcp":
        return bind.kind == "unix"
    if bind.host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(bind.host.split("%")[0]).is_loopback
    except ValueError:
        return False
