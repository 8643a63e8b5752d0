"""Error answers the worker writes itself, with the contract's JSON error body.

Two sources: the worker's event loop, which refuses a request before any thread sees
it (413, 414, 431, 408, 503), and gunicorn's parser, whose exceptions (a malformed
request line or header, a smuggling shape, a bad chunk) gunicorn would answer with an
HTML page. Both get ``{"title": ..., "description": ...}`` and close the connection.
"""

from __future__ import annotations

from http import HTTPStatus
from ssl import SSLError

import msgspec
from gunicorn.http import errors as gerr

_encode = msgspec.json.Encoder().encode

# gunicorn's parser errors, most specific first: (status, what was wrong).
_PARSER_ERRORS: list[tuple[type[BaseException], int, str]] = [
    (gerr.InvalidRequestLine, 400, "the request line is malformed"),
    (gerr.InvalidRequestMethod, 400, "the method is not a valid HTTP method"),
    (gerr.InvalidHTTPVersion, 400, "the HTTP version is not supported"),
    (gerr.UnsupportedTransferCoding, 501, "the Transfer-Encoding is not supported"),
    (gerr.LimitRequestLine, 414, "the request line is too long"),
    (gerr.LimitRequestHeaders, 431, "the request headers are too large or too many"),
    (gerr.ExpectationFailed, 417, "the Expect header can not be met"),
    (gerr.ObsoleteFolding, 400, "a header is folded over lines (obsolete)"),
    (gerr.InvalidHeaderName, 400, "a header name is invalid"),
    (gerr.InvalidHeader, 400, "a header is invalid or ambiguous"),
    (gerr.InvalidSchemeHeaders, 400, "the scheme headers contradict each other"),
    (gerr.InvalidChunkSize, 400, "the chunked body has an invalid chunk size"),
    (gerr.ChunkMissingTerminator, 400, "a chunk of the body is not terminated"),
    (gerr.InvalidChunkExtension, 400, "the chunked body has an invalid extension"),
    (gerr.InvalidProxyLine, 400, "the PROXY protocol line is invalid"),
    (gerr.ForbiddenProxyRequest, 403, "PROXY protocol is not allowed from here"),
    (gerr.ConfigurationProblem, 500, "the server is misconfigured"),
    (SSLError, 403, "the TLS handshake failed"),
]
# Raised by the body reader when gunicorn's parser wanted more bytes than the worker
# framed: never waited for (a thread never blocks reading a client).
_FRAMING = (gerr.NoMoreData, 400, "the request's framing could not be read")


def client_error(exc: BaseException) -> tuple[int, str] | None:
    """(status, description) for an error in the client's request; None for ours."""
    if isinstance(exc, (gerr.InvalidResponseHeader, gerr.InvalidResponseHeaderName)):
        return None  # a header the application tried to send: a 500
    for kind, status, what in (*_PARSER_ERRORS, _FRAMING):
        if isinstance(exc, kind):
            detail = str(exc)
            return status, f"{what}: {detail}" if detail else what
    return None


def response(
    status: int,
    title: str,
    description: str,
    retry_after: int | None = None,
    close: bool = True,
) -> bytes:
    """A whole HTTP/1.1 error response with the JSON error body."""
    body = _encode({"title": title, "description": description})
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def title_of(status: int) -> str:
    return HTTPStatus(status).phrase
