"""anomalyd.coalesce: the header block leaves with the first body bytes, in order.

The answers themselves (every status, HEAD, 304, streamed batches, errors) are
checked end to end through a real ``anomalyd serve`` by the rest of the suite; here,
what reaches the socket, call by call."""

from __future__ import annotations

import socket

from anomalyd.coalesce import JOIN_LIMIT, Coalesced


class Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def sendall(self, data) -> None:
        self.calls.append(("sendall", bytes(data)))

    def send(self, data) -> int:
        self.calls.append(("send", bytes(data)))
        return len(data)

    def shutdown(self, how) -> None:
        self.calls.append(("shutdown", b""))

    def fileno(self) -> int:
        self.calls.append(("fileno", b""))
        return 7


HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


def test_a_small_answer_leaves_in_one_send():
    sock = Recording()
    out = Coalesced(sock)
    out.sendall(HEAD)
    assert sock.calls == []  # held
    out.sendall(b"hello")
    out.flush()
    assert sock.calls == [("sendall", HEAD + b"hello")]


def test_an_answer_without_a_body_is_sent_when_the_request_is_done():
    sock = Recording()
    out = Coalesced(sock)
    out.sendall(b"HTTP/1.1 304 Not Modified\r\n\r\n")
    out.flush()
    out.flush()
    assert sock.calls == [("sendall", b"HTTP/1.1 304 Not Modified\r\n\r\n")]


def test_later_pieces_and_large_first_pieces_go_as_they_come():
    sock = Recording()
    out = Coalesced(sock)
    out.sendall(HEAD)
    big = b"x" * (JOIN_LIMIT + 1)
    out.sendall(big)
    out.sendall(b"tail")
    out.flush()
    assert sock.calls == [("sendall", HEAD), ("sendall", big), ("sendall", b"tail")]


def test_any_other_use_of_the_socket_sends_what_is_held_first():
    sock = Recording()
    out = Coalesced(sock)
    out.sendall(HEAD)
    assert out.fileno() == 7  # sendfile writes to the descriptor itself
    out.shutdown(socket.SHUT_WR)
    assert sock.calls == [("sendall", HEAD), ("fileno", b""), ("shutdown", b"")]


def test_a_100_continue_is_not_mistaken_for_the_header_block():
    sock = Recording()
    out = Coalesced(sock)
    out.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    out.sendall(HEAD)
    out.sendall(b"hello")
    assert sock.calls == [
        ("send", b"HTTP/1.1 100 Continue\r\n\r\n"),
        ("sendall", HEAD + b"hello"),
    ]
