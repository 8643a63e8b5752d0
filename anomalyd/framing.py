"""Where an HTTP/1.1 request ends, found incrementally as its bytes arrive.

The worker's event loop appends what it receives on a connection to a buffer and calls
``Scan.feed`` after each read; the scan resumes where it stopped, so a client that
trickles a byte at a time costs a few operations per byte, never a rescan. It finds
the end of the header block (bounded: 431, or 414 for the request line), then the end
of the body by ``Content-Length`` or by walking the chunked framing, and refuses a
body over ``max_body_bytes`` with 413 as soon as that is known.

The scan only frames. It reads just the request line and the framing headers, and is
never more lenient than gunicorn's parser: whatever it cannot frame with certainty
(two lengths, length and chunked, a bad chunk size, a bare LF) ends the request where
the doubt starts and closes the connection after it, and gunicorn's parser, which
parses every complete request again in a thread, refuses it with its own checks.
"""

from __future__ import annotations

_HEX = frozenset(b"0123456789abcdefABCDEF")

# Stages of a scan.
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, TRAILER, DONE = range(6)

# The longest header block accepted (request line, fields, final CRLF). gunicorn's own
# bound is 100 fields of 8 KiB (800 KiB); a client with more than 64 KiB of headers is
# refused before that much of it is held for every connection.
MAX_HEAD = 64 * 1024
MAX_REQUEST_LINE = 4094  # gunicorn's limit_request_line default
MAX_CHUNK_LINE = 8190  # gunicorn's bound on a chunk-size line


class Refuse(Exception):
    """The request is answered with ``status`` by the event loop and the connection
    closed, without reading the rest of it."""

    def __init__(self, status: int, title: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.title = title
        self.description = description


class Scan:
    """The framing of the request at the start of a connection's buffer."""

    __slots__ = (
        "body_seen",
        "chunked",
        "data_end",
        "doubtful",
        "end",
        "expect_continue",
        "head_end",
        "length",
        "line_start",
        "lines",
        "max_body",
        "method",
        "path",
        "pos",
        "stage",
    )

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.stage = HEAD
        self.pos = 0  # bytes of the buffer already looked at
        self.line_start = 0
        self.lines: list[tuple[int, int]] = []  # (start, end) of each head line
        self.head_end = 0  # offset just past the header block, once found
        self.end = 0  # offset just past the request, once found
        self.method = b""
        self.path = b""
        self.length = 0  # Content-Length, or body bytes declared so far when chunked
        self.chunked = False
        self.body_seen = 0
        self.data_end = 0
        self.expect_continue = False
        # True when the scan stopped at something it could not frame: the request
        # goes to gunicorn's parser as it is (which refuses it) and the connection
        # closes after the answer.
        self.doubtful = False

    def feed(self, buf: bytearray) -> bool:
        """Look at the bytes added to ``buf``; True once the request is complete."""
        if self.stage == HEAD:
            self._head(buf)
        if self.stage == LENGTH:
            if len(buf) >= self.end:
                self.stage = DONE
        elif CHUNK_SIZE <= self.stage <= TRAILER:
            self._chunks(buf)
        return self.stage == DONE

    # -- the header block --------------------------------------------------------

    def _head(self, buf: bytearray) -> None:
        find = buf.find
        i = find(b"\n", self.pos)
        while i >= 0:
            if i == 0 or buf[i - 1] != 13:  # a bare LF: gunicorn's parser refuses it
                self._doubt(i + 1)
                return
            if i - 1 == self.line_start:  # an empty line
                if i == 1 and not self.lines:
                    # RFC 9112 2.2: one empty line before the request line is
                    # ignored (gunicorn's parser skips it too).
                    self.line_start = i + 1
                    self.pos = i + 1
                    i = find(b"\n", self.pos)
                    continue
                self.head_end = i + 1
                self.pos = i + 1
                self._framing(buf)
                return
            if not self.lines and i - 1 - self.line_start > MAX_REQUEST_LINE:
                raise _uri_too_long()
            self.lines.append((self.line_start, i - 1))
            self.line_start = i + 1
            i = find(b"\n", i + 1)
        self.pos = len(buf)
        if len(buf) > MAX_HEAD:
            if not self.lines and len(buf) - self.line_start > MAX_REQUEST_LINE:
                raise _uri_too_long()
            raise Refuse(
                431,
                "Request header fields too large",
                f"the request line and headers take more than {MAX_HEAD} bytes",
            )
        if not self.lines and len(buf) - self.line_start > MAX_REQUEST_LINE + 2:
            raise _uri_too_long()

    def _framing(self, buf: bytearray) -> None:
        if not self.lines:  # no request line at all: gunicorn's parser says so
            self._doubt(self.head_end)
            return
        start, stop = self.lines[0]
        parts = bytes(buf[start:stop]).split(b" ", 2)
        if len(parts) != 3:
            self._doubt(self.head_end)
            return
        self.method = parts[0]
        self.path = parts[1].split(b"?", 1)[0]
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for start, stop in self.lines[1:]:
            line = buf[start:stop]
            colon = line.find(b":")
            name = bytes(line[:colon]).lower() if colon > 0 else b""
            if name == b"content-length":
                lengths.append(bytes(line[colon + 1 :]).strip(b" \t"))
            elif name == b"transfer-encoding":
                codings += [
                    c.strip(b" \t").lower()
                    for c in bytes(line[colon + 1 :]).split(b",")
                ]
            elif name == b"expect":
                value = bytes(line[colon + 1 :]).strip(b" \t").lower()
                self.expect_continue = value == b"100-continue"
        self.lines = []
        if codings:
            if lengths or codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
                self._doubt(self.head_end)
                return
            self.chunked = True
            self.stage = CHUNK_SIZE
            self.pos = self.head_end
            return
        if lengths:
            if len(lengths) != 1 or not lengths[0].isdigit():
                self._doubt(self.head_end)
                return
            self.length = int(lengths[0])
            if self.length > self.max_body:
                raise _too_large(
                    f"the body has {self.length} bytes; max_body_bytes is "
                    f"{self.max_body}"
                )
        self.end = self.head_end + self.length
        self.stage = LENGTH

    # -- a chunked body ------------------------------------------------------------

    def _chunks(self, buf: bytearray) -> None:
        while True:
            if self.stage == CHUNK_SIZE:
                i = buf.find(b"\r\n", self.pos)
                if i < 0:
                    if len(buf) - self.pos > MAX_CHUNK_LINE:
                        self._doubt(len(buf))
                    return
                size = bytes(buf[self.pos : i]).split(b";", 1)[0].rstrip(b" \t")
                if not size or len(size) > 16 or not _HEX.issuperset(size):
                    self._doubt(i + 2)
                    return
                self.pos = i + 2
                n = int(size, 16)
                if n == 0:
                    self.stage = TRAILER
                    continue
                self.body_seen += n
                if self.body_seen > self.max_body:
                    raise _too_large(
                        "the chunked body is larger than max_body_bytes "
                        f"({self.max_body} bytes)"
                    )
                self.data_end = self.pos + n
                self.stage = CHUNK_DATA
            elif self.stage == CHUNK_DATA:
                if len(buf) < self.data_end + 2:
                    return
                if buf[self.data_end : self.data_end + 2] != b"\r\n":
                    self._doubt(self.data_end + 2)
                    return
                self.pos = self.data_end + 2
                self.stage = CHUNK_SIZE
            else:  # TRAILER: an empty line, or trailer fields and an empty line
                if len(buf) < self.pos + 2:
                    return
                if buf[self.pos : self.pos + 2] == b"\r\n":
                    self._finish(self.pos + 2)
                    return
                i = buf.find(b"\r\n\r\n", self.pos)
                if i < 0:
                    if len(buf) - self.pos > MAX_HEAD:
                        raise Refuse(
                            431,
                            "Request header fields too large",
                            f"the chunked body's trailer takes more than {MAX_HEAD} "
                            "bytes",
                        )
                    return
                self._finish(i + 4)
                return

    def _finish(self, end: int) -> None:
        self.end = end
        self.stage = DONE

    def _doubt(self, end: int) -> None:
        self.doubtful = True
        self._finish(end)


def _uri_too_long() -> Refuse:
    return Refuse(
        414,
        "URI too long",
        f"the request line is longer than {MAX_REQUEST_LINE} bytes",
    )


def _too_large(description: str) -> Refuse:
    return Refuse(413, "Body too large", description)
