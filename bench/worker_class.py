"""Why the default worker is gthread: keep-alive, and slow clients stall nothing.

    .venv/bin/python bench/worker_class.py

For each worker class, with the default 2 workers: (1) 4 clients predict as fast as
they can for a few seconds over keep-alive sessions; (2) the same while 4 slow clients
trickle a request body one byte every 0.5 s. Prints req/s, the slowest fast-client
request, and how many connections the fast clients had to open.
"""

from __future__ import annotations

import socket
import threading
import time

import requests
from _server import Anomalyd

SECONDS = 4.0
BODY = b'{"timestamp": 1, "value": 3.0}'


def fast_client(url: str, until: float, out: list) -> None:
    count, worst = 0, 0.0
    with requests.Session() as s:
        while time.monotonic() < until:
            start = time.perf_counter()
            try:
                s.post(url + "/predict/p", data=BODY, timeout=30)
            except requests.RequestException:
                pass
            worst = max(worst, time.perf_counter() - start)
            count += 1
    out.append((count, worst))


def slow_client(port: int, until: float) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /predict/p HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)
        )
        for byte in BODY:
            if time.monotonic() > until:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.5)


def run(worker_class: str, slow: int) -> tuple[float, float]:
    with Anomalyd("--worker-class", worker_class) as server:
        requests.post(
            server.url + "/fit/p",
            json={"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]},
        )
        until = time.monotonic() + SECONDS
        threads = [
            threading.Thread(target=slow_client, args=(server.port, until))
            for _ in range(slow)
        ]
        for t in threads:
            t.start()
        time.sleep(0.2)
        out: list = []
        fast = [
            threading.Thread(target=fast_client, args=(server.url, until, out))
            for _ in range(4)
        ]
        for t in fast:
            t.start()
        for t in fast + threads:
            t.join()
        return sum(c for c, _ in out) / SECONDS, max(w for _, w in out)


def main() -> None:
    print("| worker | slow clients | req/s | slowest request |")
    print("| --- | --- | --- | --- |")
    for worker_class in ("sync", "gthread"):
        for slow in (0, 4):
            rate, worst = run(worker_class, slow)
            print(f"| {worker_class} | {slow} | {rate:.0f} | {worst * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
