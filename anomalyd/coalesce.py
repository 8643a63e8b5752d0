"""One send for a small answer: the header block and the first body bytes together.

gunicorn's ``Response`` sends its header block with one ``sendall`` and each piece of
the body with another, so a small JSON answer (a predict's is about 100 bytes) costs
two system calls and, on TCP, two segments the client must take in. ``Coalesced``
is the socket the response writes to: it holds the first ``sendall`` (always the
header block) until the next one, and sends both at once, or sends it alone when
the request is answered without a body (``flush``). Any other use of the socket
(``fileno`` for ``sendfile``, ``shutdown`` on an error) sends what it holds first,
so bytes never leave out of order.
"""

from __future__ import annotations

# Above this, the first body piece is sent on its own rather than copied behind
# the header block (a streamed batch answer's pieces are about 1 MiB).
JOIN_LIMIT = 64 * 1024


class Coalesced:
    __slots__ = ("_held", "_sock", "_started")

    def __init__(self, sock) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._started = False

    def sendall(self, data) -> None:
        if not self._started:  # the header block
            self._started = True
            self._held = bytes(data)
            return
        held = self._held
        if held is None:
            self._sock.sendall(data)
            return
        self._held = None
        if len(data) <= JOIN_LIMIT:
            self._sock.sendall(held + bytes(data))
        else:
            self._sock.sendall(held)
            self._sock.sendall(data)

    def send(self, data) -> int:  # gunicorn's "100 Continue", before any answer
        self.flush()
        return self._sock.send(data)

    def flush(self) -> None:
        """Send what is held (an answer with no body): the request is done."""
        held, self._held = self._held, None
        if held:
            self._sock.sendall(held)

    def __getattr__(self, name: str):
        self.flush()
        return getattr(self._sock, name)


class Answering:
    """What gunicorn's ``handle_request`` reads of a connection."""

    __slots__ = ("client", "server", "sock")

    def __init__(self, sock: Coalesced, client, server) -> None:
        self.sock = sock
        self.client = client
        self.server = server
