"""Connections are spread over the workers (``anomalyd.balance``), against a real
``anomalyd serve`` with 2 workers. Which worker holds a connection is read from
``/proc``: the server side of each test connection, found in ``/proc/net/tcp`` by its
ports, is a socket inode, and the worker whose file descriptors include it holds it."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import requests

REQUEST = b"GET /healthcheck HTTP/1.1\r\nHost: t\r\n\r\n"


def holders(server, clients: list[socket.socket]) -> dict[int, int]:
    """How many of ``clients`` each worker pid holds."""
    ports = {c.getsockname()[1] for c in clients}
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) != server.port:
                continue
            if int(remote.rsplit(":", 1)[1], 16) in ports:
                inodes[f"socket:[{inode}]"] = True
    held = {}
    for pid in server.worker_pids():
        fds = Path(f"/proc/{pid}/fd")
        count = 0
        for fd in os.listdir(fds):
            try:
                if os.readlink(fds / fd) in inodes:
                    count += 1
            except OSError:
                pass  # closed meanwhile
        held[pid] = count
    return held


def burst(port: int, n: int) -> list[socket.socket]:
    """``n`` connections opened at once (non-blocking connects, back to back), then
    one request on each, answered: each connection is accepted and served."""
    clients = []
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        clients.append(c)
    for c in clients:
        c.settimeout(10)
        for _ in range(100):  # the connect finishes in microseconds on loopback
            if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                break
            time.sleep(0.01)
        c.sendall(REQUEST)
    for c in clients:
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
    return clients


def both_serving(server) -> None:
    """Until each worker has answered a request: a worker still loading the app
    takes no connection, and the others rightly leave it none."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = requests.get(server.url + "/metrics", timeout=5).text
        slots = re.findall(
            r'anomalyd_worker_requests_total\{worker="\d+"\} [1-9]', text
        )
        if len(slots) >= 2:
            return
        time.sleep(0.1)
    raise AssertionError("a worker never answered")


def test_a_burst_of_keep_alive_connections_is_spread_over_the_workers(make_server):
    # Before: whichever worker ran first took the whole burst, in most rounds (a
    # wrk round with every connection on one worker had half the throughput).
    s = make_server(extra=["--keepalive", "30"])
    both_serving(s)
    shares = []
    for _ in range(6):
        clients = burst(s.port, 16)
        held = holders(s, clients)
        for c in clients:
            c.close()
        assert sum(held.values()) == 16, held
        shares.append(sorted(held.values()))
        time.sleep(0.3)  # the closes reach the workers
    print(f"16 connections at once, per worker, 6 rounds: {shares}")
    fewest = sum(share[0] for share in shares)
    assert fewest >= 0.35 * 16 * 6, shares  # an even spread is 48 of 96
    assert all(share[0] >= 4 for share in shares), shares


def test_a_stopped_worker_does_not_keep_new_connections_waiting(make_server):
    s = make_server(extra=["--keepalive", "30"])
    stopped, running = s.worker_pids()
    os.kill(stopped, signal.SIGSTOP)
    try:
        # The running worker soon holds more than the stopped one (whose heartbeat
        # is still fresh): it leaves new connections to it, but not for long.
        held = burst(s.port, 6)
        times = []
        for _ in range(20):
            time.sleep(0.15)  # each one a new wait (anomalyd.balance.GAP)
            start = time.monotonic()
            (c,) = burst(s.port, 1)
            times.append(time.monotonic() - start)
            held.append(c)
        assert holders(s, held) == {stopped: 0, running: 26}
    finally:
        os.kill(stopped, signal.SIGCONT)
    for c in held:
        c.close()
    print(
        f"worker stopped: new connections served in at most {max(times) * 1e3:.0f} ms"
    )
    assert max(times) < 1.0, times
