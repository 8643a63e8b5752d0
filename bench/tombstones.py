"""``GET /series?limit=1`` with 99,990 deleted series, before and after layout 2.

    .venv/bin/python bench/tombstones.py [--deleted 99990] [--rounds 200] [--before main]

Builds a layout-1 store holding ``--deleted`` deleted series (the records anomalyd
before layout 2 kept for them: ``(last, 0)`` in ``series``), then serves a copy of it
with the code of git ref ``--before`` (exported with ``git archive``) and another copy
with this checkout (which migrates it at start), fits 10 live series whose ids sort
after every deleted one, and times ``/series?limit=1`` over HTTP on one keep-alive
connection. The same with no deleted series gives the ceiling each is compared with.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lmdb
import requests

ROOT = Path(__file__).resolve().parent.parent
FIVE = [1_700_000_000 + 60 * i for i in range(5)]


def v1_store(path: str, deleted: int) -> None:
    """What layout 1 held after ``deleted`` series were each fitted once and deleted."""
    env = lmdb.open(path, map_size=1 << 30, max_dbs=4)
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        series = env.open_db(b"series", txn=txn)
        for name in (b"models", b"points"):
            env.open_db(name, txn=txn)
        txn.put(b"schema_version", b"1", db=meta)
        txn.put(b"series_trained", struct.pack("<Q", 0), db=meta)
        gone = struct.pack("<QQ", 1, 0)
        for i in range(deleted):
            txn.put(b"d%07d" % i, gone, db=series)
    env.close()


def serve(source: Path, data_dir: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "anomalyd", "serve", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", "2", "--data-dir", data_dir],
        cwd=source,  # so this source's anomalyd is the one imported
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            requests.get(url + "/healthcheck", timeout=1).raise_for_status()
            time.sleep(1.0)
            return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"anomalyd from {source} did not start")


def measure(source: Path, data_dir: str, rounds: int) -> float:
    proc, url = serve(source, data_dir)
    try:
        with requests.Session() as session:
            for i in range(10):
                body = {"timestamps": FIVE, "values": [1, 2, 3, 4, 5 + i]}
                session.post(f"{url}/fit/z{i:03d}", json=body).raise_for_status()
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                page = session.get(f"{url}/series?limit=1", timeout=60)
                times.append(time.perf_counter() - started)
                assert page.json()["series"][0]["series_id"] == "z000", page.text
        return statistics.median(times) * 1000
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deleted", type=int, default=99_990)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--before", default="main")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anomalyd-tombstones-") as tmp:
        before = Path(tmp, "before")
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "anomalyd"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        template = os.path.join(tmp, "template")
        v1_store(template, args.deleted)
        empty = os.path.join(tmp, "empty")
        v1_store(empty, 0)
        results = {}
        for label, source in ((args.before, before), ("this checkout", ROOT)):
            for name, store in (("none deleted", empty), ("deleted", template)):
                data = os.path.join(tmp, f"{label}-{name}".replace(" ", "_"))
                shutil.copytree(store, data)
                results[label, name] = measure(source, data, args.rounds)
        for label in (args.before, "this checkout"):
            none = results[label, "none deleted"]
            many = results[label, "deleted"]
            print(
                f"{label:>14}: /series?limit=1 median {none:.2f} ms with none deleted, "
                f"{many:.2f} ms with {args.deleted:,} deleted ({many / none:.1f}x)"
            )


if __name__ == "__main__":
    main()
