"""Soak: a real ``anomalyd serve`` under steady mixed load; memory, fds and readers over time.

    make soak                      # 10 minutes
    SOAK_SECONDS=120 make soak     # shorter

Reports, for each worker, resident memory (VmRSS) and open file descriptors, and the LMDB
reader slots in use, sampled through the run. Memory is compared between the end of a
warm-up (a tenth of the run, at most a minute, after each worker's model LRU has been
brought to its bound: see ``fill_caches``) and the end. Exits 1 if a worker's memory grew more than 10%, its descriptors or the
reader slots grew, or a request failed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import lmdb
import requests

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
THREADS = int(os.environ.get("SOAK_THREADS", "8"))
# More flags for anomalyd serve, e.g. SOAK_ARGS="--lru-size 1000".
EXTRA_ARGS = os.environ.get("SOAK_ARGS", "").split()
SERIES = 200


def lru_size() -> int:
    """The serve flag if SOAK_ARGS sets it, else anomalyd's default."""
    if "--lru-size" in EXTRA_ARGS:
        return int(EXTRA_ARGS[EXTRA_ARGS.index("--lru-size") + 1])
    from anomalyd.settings import Settings

    return Settings().lru_size


def fill_caches(url: str, size: int) -> None:
    """Bring each worker's model LRU to its bound before memory is measured.

    The LRU holds up to ``lru_size`` immutable (series, version) models; under the soak's
    fits it keeps filling for minutes, which is growth by design, bounded, not a leak.
    So: make ``size`` versions, then predict each of them 4 times on new connections
    (each lands on a random worker: both end up holding ~94% of them or more).
    """
    from concurrent.futures import ThreadPoolExecutor

    per_series = -(-size // SERIES)

    def fits(i: int) -> None:
        rng = random.Random(i)
        with requests.Session() as session:
            for _ in range(per_series):
                session.post(f"{url}/fit/soak-{i}", json=fit_body(rng, 20), timeout=60)

    def predicts(i: int) -> None:
        point = {"timestamp": 1_700_100_000, "value": 50.0}
        first = int(
            requests.get(f"{url}/series/soak-{i}", timeout=60).json()["versions"][0][
                "version"
            ][1:]
        )
        for _ in range(4):
            for version in range(first, first + per_series + 1):
                requests.post(
                    f"{url}/predict/soak-{i}?version={version}", json=point, timeout=60
                )

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(fits, range(SERIES)))
        list(pool.map(predicts, range(SERIES)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_body(rng: random.Random, n: int) -> dict:
    start = 1_700_000_000
    return {
        "timestamps": [start + 60 * i for i in range(n)],
        "values": [rng.gauss(50, 5) for _ in range(n)],
    }


def load(url: str, stop: threading.Event, counts: Counter, seed: int) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    while not stop.is_set():
        sid = f"soak-{rng.randrange(SERIES)}"
        roll = rng.random()
        try:
            if roll < 0.10:
                r = session.post(
                    f"{url}/fit/{sid}", json=fit_body(rng, 200), timeout=60
                )
                kind = "fit"
            elif roll < 0.80:
                point = {"timestamp": 1_700_100_000, "value": rng.gauss(50, 8)}
                r = session.post(f"{url}/predict/{sid}", json=point, timeout=60)
                kind = "predict"
            elif roll < 0.90:
                r = session.post(
                    f"{url}/predict/{sid}/batch", json=fit_body(rng, 100), timeout=60
                )
                kind = "batch"
            elif roll < 0.95:
                r = session.get(f"{url}/series/{sid}", timeout=60)
                kind = "series"
            elif roll < 0.99:
                r = session.get(f"{url}/healthcheck", timeout=60)
                kind = "healthcheck"
            else:
                r = session.delete(f"{url}/series/{sid}", timeout=60)
                kind = "delete"
            ok = r.status_code < 500 and r.status_code != 507
            counts[kind if ok else f"{kind} {r.status_code}"] += 1
        except requests.RequestException as exc:
            counts[f"error {type(exc).__name__}"] += 1
    session.close()


def workers(master: int) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(master)], check=False, capture_output=True, text=True
    )
    return sorted(int(p) for p in out.stdout.split())


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reader_slots(data_dir: str) -> tuple[int, int, int]:
    """Slots in use now, slots held by dead processes, and the high-water mark."""
    env = lmdb.open(data_dir, max_dbs=4, readonly=True)
    try:
        lines = env.readers().strip().splitlines()[1:]
        pids = [
            int(line.split()[0])
            for line in lines
            if line.split()[:1] and line.split()[0].isdigit()
        ]
        dead = sum(1 for pid in pids if not os.path.exists(f"/proc/{pid}"))
        return len(pids), dead, env.info()["num_readers"]
    finally:
        env.close()


def memory_kib(pid: int) -> tuple[int, int]:
    """Anonymous (heap) and file-backed resident memory; the latter is mostly the
    LMDB map, page cache that grows with the store and is not the worker's own."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                fields[key] = int(value.split()[0])
    return fields["RssAnon"], fields["RssFile"]


def main() -> int:
    root = tempfile.mkdtemp(prefix="anomalyd-soak-")
    data_dir = os.path.join(root, "data")
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    env["RUNTIME_DIRECTORY"] = run_dir
    log = open(os.path.join(root, "server.log"), "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anomalyd",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--data-dir",
            data_dir,
            *EXTRA_ARGS,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    stop = threading.Event()
    counts: Counter = Counter()
    threads: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthcheck", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("anomalyd did not start")
            time.sleep(0.1)
        rng = random.Random(0)
        for i in range(SERIES):  # every series exists before the load starts
            requests.post(f"{url}/fit/soak-{i}", json=fit_body(rng, 200), timeout=60)
        while len(workers(server.pid)) < 2:
            time.sleep(0.1)
        filled = time.monotonic()
        fill_caches(url, lru_size())
        print(
            f"caches filled: {lru_size()} versions made and predicted in "
            f"{time.monotonic() - filled:.0f} s"
        )
        pids = workers(server.pid)
        threads = [
            threading.Thread(target=load, args=(url, stop, counts, i), daemon=True)
            for i in range(THREADS)
        ]
        for t in threads:
            t.start()
        started = time.monotonic()
        warmup = min(60.0, SECONDS / 10)
        interval = max(5.0, SECONDS / 20)
        print(
            f"soak: {' '.join(EXTRA_ARGS) or 'default settings'}, {SECONDS:g} s, {THREADS} client threads, 2 workers, "
            f"{SERIES} series; warm-up {warmup:g} s; sample every {interval:g} s"
        )
        print(
            f"{'t (s)':>6} {'requests':>8} "
            + " ".join(f"{'anon/file kB ' + str(p):>22} {'fds':>3}" for p in pids)
            + f" {'readers now/dead/max':>21}"
        )
        samples = []
        next_sample = 0.0
        baseline = None
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= next_sample or elapsed >= SECONDS:
                if workers(server.pid) != pids:
                    print(f"worker set changed: {pids} -> {workers(server.pid)}")
                    return 1
                row = {
                    "t": elapsed,
                    "requests": sum(counts.values()),
                    "memory": [memory_kib(p) for p in pids],
                    "fds": [open_fds(p) for p in pids],
                    "readers": reader_slots(data_dir),
                }
                samples.append(row)
                if baseline is None and elapsed >= warmup:
                    baseline = row
                print(
                    f"{row['t']:6.0f} {row['requests']:8d} "
                    + " ".join(
                        f"{f'{a}/{b}':>22} {n:3d}"
                        for (a, b), n in zip(row["memory"], row["fds"])
                    )
                    + f" {'/'.join(map(str, row['readers'])):>21}"
                )
                next_sample += interval
            if elapsed >= SECONDS:
                break
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)
        end = samples[-1]
        baseline = baseline or samples[0]
        failures = {k: v for k, v in counts.items() if " " in k}
        total = sum(counts.values())
        print(
            f"\nrequests: {total} in {end['t']:.0f} s ({total / end['t']:.0f}/s): "
            f"{dict(counts)}"
        )
        verdict = 0
        for i, pid in enumerate(pids):
            first, warm, last = (
                samples[0]["memory"][i][0],
                baseline["memory"][i][0],
                end["memory"][i][0],
            )
            growth = last / warm - 1
            half = samples[len(samples) // 2]["memory"][i][0]
            print(
                f"worker {pid}: anonymous RSS {first} kB at start, {warm} kB after "
                f"warm-up, {half} kB at half-time, {last} kB at end ({growth:+.1%} since "
                f"warm-up, {last / half - 1:+.1%} over the second half); file-backed "
                f"RSS (LMDB map) {samples[0]['memory'][i][1]} -> {end['memory'][i][1]} "
                f"kB; fds {samples[0]['fds'][i]} -> {end['fds'][i]} "
                f"(max {max(s['fds'][i] for s in samples)})"
            )
            if growth > 0.10 or end["fds"][i] > baseline["fds"][i] + 2:
                verdict = 1
        now = [s["readers"][0] for s in samples]
        dead = max(s["readers"][1] for s in samples)
        high = [s["readers"][2] for s in samples]
        print(
            f"LMDB reader slots: in use now min {min(now)} max {max(now)}; held by dead "
            f"processes max {dead}; high-water mark {high[0]} at start, "
            f"{baseline['readers'][2]} after warm-up, {high[len(high) // 2]} at "
            f"half-time, {high[-1]} at end (of 126)"
        )
        # Slots in use come and go with the requests in flight (and py-lmdb's spare
        # read transactions); a leak shows as slots of dead processes, or as a
        # high-water mark that keeps climbing through the second half.
        if dead or high[-1] > high[len(high) // 2] + 2:
            verdict = 1
        if failures:
            print(f"failed requests: {failures}")
            verdict = 1
        print("soak: " + ("PASS" if verdict == 0 else "FAIL"))
        return verdict
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
