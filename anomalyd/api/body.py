"""Reading a request body: its size bound, its media type and its content coding.

- ``max_body_bytes`` bounds the body as sent (413 on ``Content-Length`` before reading,
  or while reading a chunked body) and, for ``Content-Encoding: gzip``, the body once
  decompressed: it is decompressed in steps of at most ``STEP`` bytes and refused with
  413 at the first byte past the bound, so a gzip bomb costs at most the bound.
- Decompressed bytes are charged to the worker's budget of request-body memory
  (``anomalyd.budget.BUDGET``: ``try_take(n) -> bool``, ``give_back(n)``), as the
  worker charges the bytes it buffers from the wire; over it, 503 with Retry-After.
  The caller gives them back with ``release(body)`` once done with the body.
- Media types: JSON (``application/json``, ``application/*+json``), no Content-Type at
  all, and ``application/x-www-form-urlencoded`` (what ``curl -d`` sends: the body is
  read as JSON); ``text/csv`` where the route takes it. Anything else is 415.
- Content codings: ``gzip`` (or ``x-gzip``) and ``identity``; anything else is 415.
"""

from __future__ import annotations

import zlib

import falcon

from anomalyd import budget as _budget_module
from anomalyd.errors import BadRequest

_CHUNK = 256 * 1024
# Decompressed bytes produced (and charged) per step.
STEP = 1024 * 1024
# The forms of a JSON Content-Type the hot path recognises without parsing it.
_PLAIN = frozenset(
    {
        "",
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=utf-8",
        "application/json; charset=UTF-8",
        "application/x-www-form-urlencoded",
    }
)
_JSON = frozenset({"", "application/json", "application/x-www-form-urlencoded"})
CSV = "text/csv"


_override = None


def use_budget(replacement) -> None:
    """The seam: charge ``replacement`` instead of the worker's budget (None: the
    worker's again). For tests."""
    global _override
    _override = replacement


def _budget():
    # Looked up at each use: the worker sets its budget up after this is imported.
    if _override is not None:
        return _override
    return _budget_module.BUDGET


def read_body(req: falcon.Request, limit: int, csv: bool = False) -> bytes | bytearray:
    """The body, decompressed, or an HTTP error: 413, 415, 400, 408 or 503.

    ``csv``: the route also takes ``text/csv`` (``media_type`` tells which it got).
    A decompressed body is a ``bytearray`` charged to the budget: ``release`` it.
    """
    env = req.env
    if env.get("CONTENT_TYPE", "") in _PLAIN and "HTTP_CONTENT_ENCODING" not in env:
        return _read(req, limit)  # the hot path: plain JSON
    media = media_type(req)
    if (
        media not in _JSON
        and not media.endswith("+json")
        and not (csv and media == CSV)
    ):
        accepted = "application/json" + (" or text/csv" if csv else "")
        raise _unsupported(
            f"Content-Type {media!r} is not accepted here: use {accepted}"
        )
    if media == CSV:
        charset = _parameters(req).get("charset", "utf-8").lower()
        if charset not in ("utf-8", "utf8", "us-ascii"):
            raise _unsupported(f"CSV bodies must be UTF-8, not charset={charset!r}")
    coding = (env.get("HTTP_CONTENT_ENCODING") or "identity").strip().lower()
    if coding == "identity":
        return _read(req, limit)
    if coding not in ("gzip", "x-gzip"):
        raise _unsupported(
            f"Content-Encoding {coding[:40]!r} is not supported: use gzip or identity"
        )
    return gunzip(_read(req, limit), limit)


def media_type(req: falcon.Request) -> str:
    """The body's media type, lower case, without parameters ('' when none)."""
    return (req.env.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()


def _parameters(req: falcon.Request) -> dict[str, str]:
    _, params = falcon.parse_header(req.env.get("CONTENT_TYPE") or "")
    return params


def release(body: bytes | bytearray) -> None:
    """Give back the budget a decompressed body was charged."""
    if type(body) is bytearray:
        _budget().give_back(len(body))


def gunzip(data: bytes, limit: int) -> bytearray:
    """Decompress a gzip body (one or more members) into at most ``limit`` bytes,
    charging them to the budget as they come; 413 past ``limit``."""
    budget = _budget()
    out = bytearray()
    pending = memoryview(data)
    try:
        while pending:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            while not inflater.eof:
                piece = inflater.decompress(pending, STEP)
                pending = memoryview(inflater.unconsumed_tail)
                if not piece and not pending:
                    raise BadRequest("the gzip body is truncated")
                if len(out) + len(piece) > limit:
                    raise _too_large(
                        f"the body is larger than max_body_bytes ({limit} bytes) "
                        "once decompressed"
                    )
                if piece and not budget.try_take(len(piece)):
                    raise _busy()
                out += piece
            pending = memoryview(inflater.unused_data)
    except zlib.error as exc:
        budget.give_back(len(out))
        raise BadRequest(f"the body is not valid gzip: {exc}") from None
    except falcon.HTTPError:
        budget.give_back(len(out))
        raise
    return out


def _unsupported(description: str) -> falcon.HTTPError:
    return falcon.HTTPUnsupportedMediaType(
        title="Unsupported media type", description=description
    )


def _too_large(description: str) -> falcon.HTTPError:
    return falcon.HTTPContentTooLarge(title="Body too large", description=description)


def _busy() -> falcon.HTTPError:
    return falcon.HTTPServiceUnavailable(
        title="Busy",
        description="this worker's memory for request bodies (max_inflight_bytes) is "
        "in use by other requests: retry shortly",
        retry_after=1,
    )


def _read(req: falcon.Request, limit: int) -> bytes:
    """The whole body as sent, or 413 once it is known to exceed ``limit`` bytes."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(f"the body has {length} bytes; max_body_bytes is {limit}")
    try:
        if length is not None:
            return req.bounded_stream.read(length)
        return _read_chunked(req.stream, limit)
    except OSError:
        # The client stalled past the timeout setting or hung up mid-body.
        raise falcon.HTTPError(
            falcon.HTTP_408,
            title="Request timeout",
            description="the body did not arrive in time (the timeout setting)",
        ) from None
    except falcon.HTTPError:
        raise
    except Exception as exc:  # noqa: BLE001 - the server's reader's own error types
        # The server's reader refused the framing (a malformed chunk, for one).
        raise BadRequest(f"the body could not be read: {exc}") from None


def _read_chunked(stream, limit: int) -> bytes:
    # A chunked body has no Content-Length (Falcon's bounded_stream would read it as
    # empty): read the server's stream in pieces and stop as soon as it is too large.
    # gunicorn then drains at most 64 KiB of the rest before closing the connection.
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _too_large(f"the body is larger than max_body_bytes ({limit} bytes)")
        chunks.append(chunk)
