"""Peak worker memory per input byte of one large fit and one large batch predict.

    .venv/bin/python bench/memory.py [--mib 64] [--only fit,batch,...]

For each case a fresh ``anomalyd serve`` (2 workers, temporary LMDB) is started, so the
worker that serves the request has served nothing before it (a batch predict needs a
model: it is fitted by a first service on the same directory, which is then stopped).
The request is sent once; the worker that served it is the one whose peak resident set
(``VmHWM`` in ``/proc/PID/status``) grew. Printed per case: body bytes, points, the
worker's VmHWM before and after, the growth per body byte, the answer's size, and the
wall time seen by the client.

Cases (bodies just under ``--mib`` MiB; ``max_body_bytes`` is raised to fit them):

- ``fit-tiny``, ``batch-tiny``: the worst case per byte, every number one digit
  (``1,2,1,2``): 4 bytes of JSON per point, 16.7M points in 64 MiB;
- ``fit-real``, ``batch-real``: 10-digit Unix seconds a minute apart and values such as
  ``42.123456``: about 21 bytes per point, 3.2M points in 64 MiB.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Anomalyd

MiB = 1024 * 1024


def tiny_body(limit: int) -> tuple[bytes, int]:
    head, middle, tail = b'{"timestamps":[', b'],"values":[', b"]}"
    n = (limit - len(head) - len(middle) - len(tail) + 2) // 4
    timestamps = b"1," * (n - 1) + b"1"
    values = b"1,2," * ((n - 1) // 2) + (b"1,2" if n % 2 == 0 else b"1")
    return head + timestamps + middle + values + tail, n


def real_body(limit: int) -> tuple[bytes, int]:
    per_point = len(b"1694336400,") + len(b"42.123456,")
    n = (limit - 64) // per_point
    stamps = b",".join(b"%d" % (1694336400 + 60 * i) for i in range(n))
    values = b",".join(b"%.6f" % (40 + (i * 7919 % 1000) / 100) for i in range(n))
    body = b'{"timestamps":[' + stamps + b'],"values":[' + values + b"]}"
    assert len(body) <= limit, len(body)
    return body, n


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def workers(service: Anomalyd) -> list[int]:
    children = Path(f"/proc/{service.proc.pid}/task/{service.proc.pid}/children")
    return [int(p) for p in children.read_text().split()]


def post(url: str, path: str, body: bytes) -> tuple[int, int, float]:
    """Send ``body``, read the answer in pieces; return (status, answer bytes, s)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    started = time.perf_counter()
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    size = 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, size, elapsed


def measure(case: str, body: bytes, n: int, flags: list[str], data_dir: str) -> None:
    path = "/fit/big" if case.startswith("fit") else "/predict/model/batch"
    with Anomalyd(*flags, data_dir=data_dir) as service:
        pids = workers(service)
        before = {pid: status_kib(pid, "VmHWM") for pid in pids}
        status, answer, elapsed = post(service.url, path, body)
        after = {pid: status_kib(pid, "VmHWM") for pid in pids}
    served = max(pids, key=lambda pid: after[pid] - before[pid])
    grown = (after[served] - before[served]) * 1024
    print(
        f"{case:<10} status {status}  body {len(body) / MiB:6.1f} MiB  "
        f"{n:>10,} points  VmHWM {before[served] / 1024:6.0f} -> "
        f"{after[served] / 1024:6.0f} MiB  +{grown / len(body):5.2f} B/B  "
        f"(peak {after[served] * 1024 / len(body):5.2f} B/B)  "
        f"answer {answer / MiB:7.1f} MiB  {elapsed:6.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=float, default=64)
    parser.add_argument("--only", default="fit-tiny,batch-tiny,fit-real,batch-real")
    args = parser.parse_args()
    limit = int(args.mib * MiB)
    flags = ["--workers", "2", "--max-body-bytes", str(max(limit, 1024))]
    for case in args.only.split(","):
        body, n = (tiny_body if case.endswith("tiny") else real_body)(limit)
        with tempfile.TemporaryDirectory(prefix="anomalyd-memory-") as tmp:
            data_dir = os.path.join(tmp, "data")
            if case.startswith("batch"):
                with Anomalyd(*flags, data_dir=data_dir) as first:
                    model = b'{"timestamps":[1,2,3,4],"values":[1.0,2.0,3.0,4.0]}'
                    assert post(first.url, "/fit/model", model)[0] == 200
            measure(case, body, n, flags, data_dir)


if __name__ == "__main__":
    main()
