"""``make bench``: every scenario and every ratio, measured in one run on this machine.

Starts, side by side, with the settings a user gets by default (``ANOMALYD_*`` cleared,
127.0.0.1, a free port, a temporary data directory):

- anomalyd on a store of ``BENCH_SERIES`` series (default 1,000);
- anomalyd on a store of ``BENCH_SCALE_SERIES`` series (default 1,000,000, far more
  than ``lru_size``);
- the null app (``bench/null_app.py``): same gunicorn settings, same msgspec decode and
  encode, no store, no model;
- nginx returning a fixed JSON body (the machine's HTTP ceiling).

Both stores are filled directly with ``bench/fill.py`` (big LMDB write transactions, not
HTTP). Then: predict ceilings with wrk, rounds interleaved across the four targets;
durable 100-point fits over HTTP (wrk) interleaved with raw LMDB durable commits of the
same size on the same disk; fit cost against size; every Locust scenario; the
in-process predict latency from ``/metrics``. Prints one report and writes it to
``bench/results/latest.md``.

Durations come from the environment (seconds): ``BENCH_SECONDS`` per Locust scenario
(20), ``BENCH_WRK_SECONDS`` per wrk round (2), ``BENCH_ROUNDS`` (8), ``BENCH_USERS``
Locust users (16), ``BENCH_CONNECTIONS`` wrk connections (16).
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import lmdb
import msgspec
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from fill import fill
from locustfile import BUSY

from anomalyd import settings as settings_module


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


SECONDS = env_int("BENCH_SECONDS", 20)
WRK_SECONDS = env_int("BENCH_WRK_SECONDS", 2)
ROUNDS = env_int("BENCH_ROUNDS", 8)
USERS = env_int("BENCH_USERS", 16)
CONNECTIONS = env_int("BENCH_CONNECTIONS", 16)
SERIES = env_int("BENCH_SERIES", 1000)
SCALE_SERIES = env_int("BENCH_SCALE_SERIES", 1_000_000)
WARMUP_LIMIT = env_int("BENCH_WARMUP_LIMIT", 60)  # seconds, at most
FIT_SIZES = [
    int(n)
    for n in os.environ.get("BENCH_FIT_SIZES", "1000,10000,100000,1000000").split(",")
]
# Baselines for the worker comparison (bench/worker_service.py): the worker
# anomalyd.worker replaced, gunicorn's stock gthread worker, and anomalyd's worker
# sending each answer's header block and body apart (anomalyd.coalesce off).
BASELINE_WORKERS = ("deadline", "gthread", "split")
SCENARIOS = [
    ("predict-heavy", "PredictUser"),
    ("batch predict 100", "Batch100User"),
    ("batch predict 10,000", "Batch10kUser"),
    ("fit-heavy 100", "Fit100User"),
    ("fit-heavy 100,000", "Fit100kUser"),
    ("mixed 95% predict / 5% fit", "MixedUser"),
    ("plot", "PlotUser"),
]
# Environment for every server: the defaults a user gets, nothing from this shell.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
DEFAULTS, _ = settings_module.load(environ={})


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes ----------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) in MiB: all resident memory, and the private heap part."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "RssAnon:")):
            found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found.get("VmRSS", 0.0), found.get("RssAnon", 0.0)


class Server:
    """One server process group we start, wait for and stop."""

    def __init__(
        self, name: str, argv: list[str], workdir: Path, probe: str, workers: int
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.log_path = workdir / f"{name}.log"
        self.probe = probe
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Server:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=CLEAN_ENV,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            try:
                urllib.request.urlopen(self.url + self.probe, timeout=2).read()
                answered = True
            except urllib.error.HTTPError:
                answered = True  # any HTTP answer means it is serving
            except (urllib.error.URLError, ConnectionError, OSError):
                answered = False
            if answered and len(children(self.proc.pid)) >= self.workers:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see {self.log_path}")

    def worker_rss_mib(self) -> list[tuple[float, float]]:
        return [rss_mib(p) for p in children(self.proc.pid)]

    def worker_file_rss_mib(self) -> float:
        return sum(r - a for r, a in self.worker_rss_mib())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(
            signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT
        )
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def anomalyd(name: str, data_dir: Path, workdir: Path) -> Server:
    argv = [
        sys.executable,
        "-m",
        "anomalyd",
        "serve",
        "--bind",
        "127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
    ]
    return Server(name, argv, workdir, "/healthcheck", DEFAULTS.workers)


def worker_variant(worker: str, data_dir: Path, workdir: Path) -> Server:
    """anomalyd with the worker it replaced, or gunicorn's stock gthread worker."""
    argv = [
        sys.executable,
        str(BENCH / "worker_service.py"),
        "--bind",
        "127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
        "--worker",
        worker,
    ]
    return Server(f"worker-{worker}", argv, workdir, "/healthcheck", DEFAULTS.workers)


def null_app(workdir: Path) -> Server:
    data_dir = workdir / "null-data"
    data_dir.mkdir()
    argv = [
        sys.executable,
        str(BENCH / "null_app.py"),
        "--bind",
        "127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
    ]
    return Server("null-app", argv, workdir, "/predict/x", DEFAULTS.workers)


FIXED_BODY = (
    '{"anomaly":false,"model_version":"v1","score":1.0172630175677175,'
    '"threshold":63.45981332557676}'
)


def nginx(workdir: Path) -> Server:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = workdir / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    # Same number of processes as anomalyd's workers; keep-alive as wrk uses it.
    conf.write_text(f"""
daemon off;
worker_processes {DEFAULTS.workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{{port}};
    location / {{
      default_type application/json;
      return 200 '{FIXED_BODY}';
    }}
  }}
}}
""")
    argv = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    server = Server("nginx", argv, workdir, "/", DEFAULTS.workers)
    conf.write_text(conf.read_text().replace("{port}", str(server.port)))
    return server


# -- load generators -------------------------------------------------------------


def wrk(
    url: str,
    script: str,
    seconds: int,
    connections: int,
    env: dict[str, str] | None = None,
) -> dict:
    """One wrk run; latencies in milliseconds."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / script),
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=seconds + 60,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    raw = json.loads(line[len("WRK_JSON ") :])
    return {
        "rps": raw["requests"] / raw["seconds"],
        "errors": raw["errors"],
        "requests": raw["requests"],
        **{p: raw[p] / 1000 for p in ("p50", "p95", "p99")},
    }


def median_run(runs: list[dict]) -> dict:
    """The median of each figure over rounds."""
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    out["errors"] = sum(r["errors"] for r in runs)
    out["rounds"] = [round(r["rps"]) for r in runs]
    return out


def locust(url: str, user_class: str, seconds: int, workdir: Path) -> dict:
    prefix = workdir / f"locust-{user_class}"
    subprocess.run(  # noqa: PLW1510 - a failed run still leaves its CSV
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(BENCH / "locustfile.py"),
            "--headless",
            "-u",
            str(USERS),
            "-r",
            str(USERS),
            "-t",
            f"{seconds}s",
            "--stop-timeout",
            "10",
            "--host",
            url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
            user_class,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_SERIES": str(SERIES)},
        timeout=seconds + 120,
    )
    with open(f"{prefix}_stats.csv") as f:
        rows = list(csv.DictReader(f))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    # Answers of 503 + Retry-After, which the users wait out (bench/locustfile.py):
    # not errors (they are marked successes), not served requests either.
    busy = [r for r in rows if r["Name"].endswith(BUSY)]
    busy_count = sum(int(r["Request Count"]) for r in busy)
    rps = float(total["Requests/s"]) - sum(float(r["Requests/s"]) for r in busy)
    row = total  # latencies: of every request, or with busy answers among them,
    if busy:  # of the served requests: the scenario's own (largest) row
        row = max(
            (r for r in rows if r["Name"] != "Aggregated" and r not in busy),
            key=lambda r: int(r["Request Count"]),
        )
    failures = []
    with open(f"{prefix}_failures.csv") as f:
        for r in csv.DictReader(f):
            failures.append(f"{r['Occurrences']} × {r['Error'][:160]}")
    return {
        "rps": rps,
        "busy": busy_count,
        "errors": int(total["Failure Count"]),
        "requests": int(total["Request Count"]) - busy_count,
        # Locust writes N/A when nothing completed (a run too short for the scenario).
        **{
            p: float(row[f"{p[1:]}%"].replace("N/A", "nan"))
            for p in ("p50", "p95", "p99")
        },
        "failures": failures,
    }


# -- raw LMDB, fit cost, metrics ---------------------------------------------------


def _open_raw(path: Path) -> lmdb.Environment:
    # The flags Store uses: durable commits (sync and metasync).
    return lmdb.open(
        str(path),
        map_size=DEFAULTS.map_size,
        max_dbs=4,
        sync=True,
        metasync=True,
        readahead=False,
        meminit=False,
    )


def _open_dbs(env: lmdb.Environment) -> list:
    # Once per process, before any writer thread starts: open_db begins a write
    # transaction without releasing the GIL, which deadlocks against a writer thread.
    return [env.open_db(name) for name in (b"meta", b"series", b"models", b"points")]


def _commit_loop(
    env: lmdb.Environment,
    dbs: list,
    seconds: float,
    tag: str,
    points: int,
    latencies: list[float],
) -> None:
    """What one 100-point fit writes: counter, series record, model, data."""
    blob = os.urandom(16 * points)
    record = os.urandom(80)
    n = 0
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        key = f"raw{tag}-{n}".encode()
        with env.begin(write=True) as txn:
            txn.put(b"series_trained", n.to_bytes(8, "little"), db=dbs[0])
            txn.put(key, os.urandom(16), db=dbs[1])
            txn.put(key + b"\x00\x00\x00\x01", record, db=dbs[2])
            txn.put(key + b"\x00\x00\x00\x01", blob, db=dbs[3])
        latencies.append(time.perf_counter() - start)
        n += 1


def _commit_process(
    path: Path, seconds: float, tag: str, threads: int, points: int, results
) -> None:
    env = _open_raw(path)  # opened after fork, as the service's workers do
    dbs = _open_dbs(env)
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    pool = [
        threading.Thread(
            target=_commit_loop, args=(env, dbs, seconds, f"{tag}.{t}", points, lat)
        )
        for t, lat in enumerate(per_thread)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    env.close()
    results.put([x for lat in per_thread for x in lat])


def raw_lmdb_commits(
    path: Path, seconds: float, processes: int = 0, threads: int = 1, points: int = 100
) -> dict:
    """Durable commits/s of a fit's writes, straight to LMDB, on the same disk.

    ``processes=0``: one writer in this process, the ceiling. Otherwise ``processes``
    forked processes of ``threads`` writers each, contending for LMDB's single writer
    lock exactly as the service's workers and threads do.
    """
    started = time.perf_counter()
    if processes == 0:
        latencies: list[float] = []
        env = _open_raw(path)
        try:
            _commit_loop(env, _open_dbs(env), seconds, "0", points, latencies)
        finally:
            env.close()
        elapsed = sum(latencies)
    else:
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        procs = [
            context.Process(
                target=_commit_process,
                args=(path, seconds, str(i), threads, points, results),
            )
            for i in range(processes)
        ]
        for proc in procs:
            proc.start()
        latencies = [x for _ in procs for x in results.get(timeout=seconds + 60)]
        for proc in procs:
            proc.join()
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "rps": len(latencies) / elapsed,
        "errors": 0,
        "requests": len(latencies),
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
    }


def post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.read()


def metrics(url: str) -> dict[str, dict[str, float]]:
    """Histogram buckets, sums and counts from /metrics: {metric: {le or '_sum': n}}."""
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = re.match(
            r"^(anomalyd_\w+_latency_seconds)_(bucket|sum|count)"
            r'(?:\{le="([^"]+)"\})? (\S+)$',
            line,
        )
        if m:
            name, kind, le, value = m.groups()
            out.setdefault(name, {})[le if kind == "bucket" else "_" + kind] = float(
                value
            )
    return out


def histogram_delta(before: dict, after: dict, name: str) -> dict[str, float]:
    b, a = before.get(name, {}), after[name]
    return {k: a[k] - b.get(k, 0.0) for k in a}


def bucket_quantile(hist: dict[str, float], q: float) -> tuple[float, float, float]:
    """As Prometheus' histogram_quantile: (estimate, bucket low edge, high edge), s."""
    edges = sorted(
        (float(k), v) for k, v in hist.items() if not k.startswith("_") and k != "+Inf"
    )
    total = hist["+Inf"]
    rank = q * total
    low, below = 0.0, 0.0
    for edge, cumulative in edges:
        if cumulative >= rank:
            inside = cumulative - below
            fraction = (rank - below) / inside if inside else 1.0
            return low + (edge - low) * fraction, low, edge
        low, below = edge, cumulative
    return float("inf"), low, float("inf")


def fit_cost(url: str, sizes: list[int]) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for n in sizes:
        body = msgspec.json.encode(
            {
                "timestamps": list(range(1_694_336_400, 1_694_336_400 + 60 * n, 60)),
                "values": np.round(rng.normal(50.0, 5.0, n), 3).tolist(),
            }
        )
        repeats = max(3, min(20, 2_000_000 // n))
        before = metrics(url)
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            post(f"{url}/fit/cost-{n}-{i}-{time.time_ns()}", body)
            times.append(time.perf_counter() - started)
        inside = histogram_delta(
            before, metrics(url), "anomalyd_training_latency_seconds"
        )
        rows.append(
            {
                "points": n,
                "repeats": repeats,
                "body_mb": len(body) / 1e6,
                "client_s": statistics.median(times),
                "service_s": inside["_sum"] / inside["_count"],
            }
        )
    return rows


# -- the report --------------------------------------------------------------------


def machine() -> str:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def fmt_row(name: str, tool: str, r: dict) -> str:
    return (
        f"| {name} | {tool} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p95']:.2f} | "
        f"{r['p99']:.2f} | {r['errors']} |"
    )


def verdict(value: float, goal: float, above: bool = True) -> str:
    met = value >= goal if above else value < goal
    return "**met**" if met else "**missed**"


def main() -> int:
    started = time.time()
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="anomalyd-bench-"))
    servers: list[Server] = []
    notes: list[str] = []
    try:
        log(f"work directory {workdir}")
        small_dir, large_dir = workdir / "data-small", workdir / "data-large"
        t_small = fill(str(small_dir), SERIES)
        t_large = fill(str(large_dir), SCALE_SERIES)
        log(
            f"filled {SERIES:,} series in {t_small:.1f} s, "
            f"{SCALE_SERIES:,} in {t_large:.1f} s (direct LMDB writes)"
        )
        small = anomalyd("anomalyd", small_dir, workdir)
        large = anomalyd("anomalyd-large", large_dir, workdir)
        null, ngx = null_app(workdir), nginx(workdir)
        # The same store under the previous worker and gunicorn's stock gthread.
        variants = []
        for worker in BASELINE_WORKERS:
            shutil.copytree(small_dir, workdir / f"data-{worker}")
            variants.append(worker_variant(worker, workdir / f"data-{worker}", workdir))
        for server in (small, large, null, ngx, *variants):
            server.start()
            servers.append(server)
        log("servers up: " + ", ".join(f"{s.name} {s.url}" for s in servers))

        # Warm up each target once (imports, LRU, page cache), untimed.
        for server, n in (
            (small, SERIES),
            (large, SCALE_SERIES),
            (null, SERIES),
            (ngx, SERIES),
            *((v, SERIES) for v in variants),
        ):
            wrk(server.url, "predict.lua", 1, CONNECTIONS, {"SERIES": str(n)})
        # A long-running service with many series has every page it reads mapped in
        # each worker; a fresh one takes minor page faults on first touches. Measure
        # the steady state: warm until the workers' file-backed RSS stops growing.
        warm_started = time.monotonic()
        mapped = large.worker_file_rss_mib()
        while time.monotonic() - warm_started < WARMUP_LIMIT:
            wrk(large.url, "predict.lua", 3, CONNECTIONS, {"SERIES": str(SCALE_SERIES)})
            now = large.worker_file_rss_mib()
            if now < mapped * 1.02:
                break
            mapped = now
        warmup = (time.monotonic() - warm_started, mapped)
        log(
            f"warmed the {SCALE_SERIES:,}-series service for {warmup[0]:.0f} s "
            f"({mapped:.0f} MiB of the store mapped)"
        )

        # Predict ceilings: the four targets interleaved, order rotated every round.
        targets = [
            ("anomalyd", small, SERIES),
            ("null", null, SERIES),
            ("nginx", ngx, SERIES),
            ("anomalyd-1M", large, SCALE_SERIES),
            *((v.name, v, SERIES) for v in variants),
        ]
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in targets}
        before = metrics(small.url)
        before_large = metrics(large.url)
        for r in range(ROUNDS):
            turn = r % len(targets)
            for name, server, n in targets[turn:] + targets[:turn]:
                runs[name].append(
                    wrk(
                        server.url,
                        "predict.lua",
                        WRK_SECONDS,
                        CONNECTIONS,
                        {"SERIES": str(n)},
                    )
                )
            log(
                f"predict round {r + 1}/{ROUNDS}: "
                + ", ".join(f"{k} {v[-1]['rps']:,.0f}/s" for k, v in runs.items())
            )
        inference = histogram_delta(
            before, metrics(small.url), "anomalyd_inference_latency_seconds"
        )
        inference_large = histogram_delta(
            before_large, metrics(large.url), "anomalyd_inference_latency_seconds"
        )
        predict = {name: median_run(v) for name, v in runs.items()}
        rss_large = large.worker_rss_mib()
        rss_small = small.worker_rss_mib()

        # Durable fits over HTTP against raw LMDB commits, same size, same disk.
        fits: list[dict] = []
        raws: list[dict] = []
        contended: list[dict] = []
        for r in range(ROUNDS):
            raws.append(raw_lmdb_commits(workdir / f"raw-{r}", WRK_SECONDS))
            fits.append(wrk(small.url, "fit.lua", WRK_SECONDS, 8))
            contended.append(
                raw_lmdb_commits(
                    workdir / f"raw-contended-{r}",
                    WRK_SECONDS,
                    processes=DEFAULTS.workers,
                    threads=DEFAULTS.threads,
                )
            )
            log(
                f"fit round {r + 1}/{ROUNDS}: HTTP {fits[-1]['rps']:,.0f} fits/s, "
                f"raw LMDB {raws[-1]['rps']:,.0f} commits/s, "
                f"contended {contended[-1]['rps']:,.0f}/s"
            )
        fit_http, raw = median_run(fits), median_run(raws)
        raw_contended = median_run(contended)

        log("fit cost against size: " + ", ".join(map(str, FIT_SIZES)))
        costs = fit_cost(small.url, FIT_SIZES)

        scenario_results = []
        for label, user_class in SCENARIOS:
            result = locust(small.url, user_class, SECONDS, workdir)
            scenario_results.append((label, result))
            log(
                f"locust {label}: {result['rps']:,.0f} req/s, {result['errors']} errors"
                + (f", {result['busy']} busy (503)" if result["busy"] else "")
            )
            if result["busy"]:
                notes.append(
                    f"{label}: {result['busy']:,} answers were 503 + Retry-After "
                    "(max_large_requests: one large request per worker at a time); "
                    "the users waited as asked and tried again. req/s and latencies "
                    "count the requests served."
                )
            if (
                user_class == "PlotUser"
                and result["errors"]
                and all("no such route" in f for f in result["failures"])
            ):
                notes.append(
                    "plot: GET /plot is not a route of this anomalyd yet "
                    "(every request was a 404 'no such route'); the scenario "
                    "is kept and will measure it once /plot exists."
                )
            elif result["failures"]:
                notes.append(f"{label} failures: " + "; ".join(result["failures"][:3]))
        health = json.loads(urllib.request.urlopen(small.url + "/healthcheck").read())
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    # ---- report ----
    # Each ratio is the median of per-round ratios: the two runs of a round are
    # seconds apart, so they share the machine's load of that moment.
    def per_round(a: list[dict], b: list[dict]) -> list[float]:
        return [x["rps"] / y["rps"] for x, y in zip(a, b)]

    per_round_null = per_round(runs["anomalyd"], runs["null"])
    per_round_nginx = per_round(runs["anomalyd"], runs["nginx"])
    per_round_scale = per_round(runs["anomalyd-1M"], runs["anomalyd"])
    per_round_fit = per_round(fits, raws)
    per_round_contended = per_round(fits, contended)
    ratio_null = statistics.median(per_round_null)
    ratio_nginx = statistics.median(per_round_nginx)
    ratio_scale = statistics.median(per_round_scale)
    ratio_fit = statistics.median(per_round_fit)
    ratio_contended = statistics.median(per_round_contended)
    p50, p50_lo, p50_hi = bucket_quantile(inference, 0.5)
    p99, p99_lo, p99_hi = bucket_quantile(inference, 0.99)
    below_100us = next(
        (
            v
            for k, v in inference.items()
            if not k.startswith("_") and k != "+Inf" and abs(float(k) - 1e-4) < 5e-6
        ),
        None,
    )
    share_100us = below_100us / inference["+Inf"] if below_100us is not None else None
    inproc_avg = inference["_sum"] / inference["_count"]
    large_p50 = bucket_quantile(inference_large, 0.5)
    large_avg = inference_large["_sum"] / inference_large["_count"]

    d = DEFAULTS
    lines = [
        "# anomalyd benchmark",
        "",
        (
            f"- date: {dt.datetime.fromtimestamp(started, dt.UTC):%Y-%m-%d %H:%M} UTC"
            f", took {time.time() - started:.0f} s"
        ),
        (
            f"- machine: {machine()}; load average before {load_before[0]:.2f}, "
            f"after {os.getloadavg()[0]:.2f} (a shared machine is noisy: read the ratios)"
        ),
        "- command: `make bench` ("
        + ", ".join(
            f"{k}={v}"
            for k, v in (
                ("BENCH_SECONDS", SECONDS),
                ("BENCH_WRK_SECONDS", WRK_SECONDS),
                ("BENCH_ROUNDS", ROUNDS),
                ("BENCH_USERS", USERS),
                ("BENCH_CONNECTIONS", CONNECTIONS),
            )
        )
        + ")",
        (
            f"- anomalyd settings: defaults (workers={d.workers}, "
            f"worker_class={d.worker_class}, threads={d.threads}, keepalive={d.keepalive}, "
            f"lru_size={d.lru_size:,}), 127.0.0.1, temporary data directory"
        ),
        (
            f"- stores filled directly with bench/fill.py (LMDB write transactions of 50,000 "
            f"series, not HTTP): {SERIES:,} series in {t_small:.1f} s, {SCALE_SERIES:,} in "
            f"{t_large:.1f} s; 16 training points each; the {SCALE_SERIES:,}-series "
            f"service warmed {warmup[0]:.0f} s, until its workers' mapped store "
            f"stopped growing ({warmup[1]:.0f} MiB)"
        ),
        "",
        "## Throughput and latency",
        "",
        (
            f"Locust rows: {USERS} users, no think time, {SECONDS} s each, against the "
            f"{SERIES:,}-series anomalyd. wrk rows: 1 thread, {CONNECTIONS} keep-alive "
            f"connections (8 for fits), {ROUNDS} interleaved rounds of {WRK_SECONDS} s, "
            "median per column. Latencies in ms, client side."
        ),
        "",
        "| scenario | tool | req/s | p50 | p95 | p99 | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, result in scenario_results:
        lines.append(fmt_row(label, "locust", result))
    lines += [
        fmt_row(f"predict, {SERIES:,} series", "wrk", predict["anomalyd"]),
        fmt_row(f"predict, {SCALE_SERIES:,} series", "wrk", predict["anomalyd-1M"]),
        fmt_row("null app (same gunicorn, msgspec only)", "wrk", predict["null"]),
        fmt_row("nginx fixed JSON", "wrk", predict["nginx"]),
        fmt_row("durable 100-point fits", "wrk", fit_http),
        fmt_row("raw LMDB durable commits, same size", "python-lmdb", raw),
        fmt_row(
            f"raw LMDB, {DEFAULTS.workers} processes × {DEFAULTS.threads} writer threads",
            "python-lmdb",
            raw_contended,
        ),
        "",
        "## Ratios (same run, side by side)",
        "",
        "| ratio | measured | goal | |",
        "|---|---:|---:|---|",
        (
            f"| predict: anomalyd / null app | {ratio_null:.2f} (rounds: "
            f"{', '.join(f'{x:.2f}' for x in per_round_null)}) | ≥ 0.85 | "
            f"{verdict(ratio_null, 0.85)} |"
        ),
        f"| predict: anomalyd / nginx fixed JSON | {ratio_nginx:.2f} | reported | |",
        (
            f"| durable fits/s (HTTP, 100 points) / raw LMDB commits/s | {ratio_fit:.2f} | "
            f"≥ 0.5 | {verdict(ratio_fit, 0.5)} |"
        ),
        (
            "| durable fits/s (HTTP) / raw LMDB commits/s with the service's "
            f"{DEFAULTS.workers}×{DEFAULTS.threads} writers | {ratio_contended:.2f} | "
            "diagnostic | |"
        ),
        (
            f"| predict: {SCALE_SERIES:,} series / {SERIES:,} series | {ratio_scale:.2f} "
            f"(rounds: {', '.join(f'{x:.2f}' for x in per_round_scale)}) | ≥ 0.9 | "
            f"{verdict(ratio_scale, 0.9)} |"
        ),
        (
            f"| in-process predict median (/metrics) | {p50 * 1e6:.0f} µs (bucket "
            f"{p50_lo * 1e6:.0f}–{p50_hi * 1e6:.0f} µs) | < 100 µs | "
            f"{verdict(p50, 1e-4, above=False)} |"
        ),
        "",
        "## Worker classes (same run)",
        "",
        (
            f"Predict on the same {SERIES:,}-series store, wrk as above, rounds "
            "interleaved with the rows above. `anomalyd` is anomalyd.worker's "
            "BufferedThreadWorker (requests reach a thread once they have arrived); "
            "`worker-deadline` the worker it replaced (bench/legacy_worker.py); "
            "`worker-gthread` gunicorn's stock gthread worker; `worker-split` "
            "anomalyd's worker sending each answer's header block and body apart, "
            "as gunicorn does (anomalyd/coalesce.py off)."
        ),
        "",
        "| worker | tool | req/s | p50 | p95 | p99 | errors | req/s / previous worker's, per round |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        *(
            fmt_row(name, "wrk", predict[name])
            + " median "
            + f"{statistics.median(per_round(runs[name], runs['worker-deadline'])):.2f}"
            + " (rounds: "
            + ", ".join(
                f"{x:.2f}" for x in per_round(runs[name], runs["worker-deadline"])
            )
            + ") |"
            for name in ("anomalyd", *(f"worker-{w}" for w in BASELINE_WORKERS))
        ),
        "",
        "One send per answer (anomalyd/coalesce.py): anomalyd / worker-split, per "
        "round: median "
        + f"{statistics.median(per_round(runs['anomalyd'], runs['worker-split'])):.2f}"
        + " (rounds: "
        + ", ".join(
            f"{x:.2f}" for x in per_round(runs["anomalyd"], runs["worker-split"])
        )
        + ")",
        "",
        "Predict rounds, req/s: "
        + "; ".join(f"{k} {v['rounds']}" for k, v in predict.items()),
        "",
        "## Memory with many series",
        "",
        (
            f"Worker RSS after {ROUNDS} rounds of random predicts over all series "
            f"(lru_size={d.lru_size:,} models per worker): "
            f"{SCALE_SERIES:,} series: RSS "
            f"{', '.join(f'{r:.0f}' for r, _ in rss_large)} MiB, of which private "
            f"(RssAnon: heap, LRU) {', '.join(f'{a:.0f}' for _, a in rss_large)} MiB; "
            f"{SERIES:,} series: RSS {', '.join(f'{r:.0f}' for r, _ in rss_small)} MiB, "
            f"private {', '.join(f'{a:.0f}' for _, a in rss_small)} MiB. The rest of "
            "RSS is the LMDB file mapped read-only: page cache shared by all workers "
            "and reclaimable, not memory the worker owns."
        ),
        "",
        "## Fit cost against size",
        "",
        (
            "Sequential fits of new series on the idle service. Client: median wall time of "
            "one request (JSON encode on the client excluded). Service: mean in-service "
            "time from /metrics (decode, fit, durable commit)."
        ),
        "",
        (
            "| points | body MB | fits | client s | service s | service µs/point | "
            "× previous size |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    previous = None
    for c in costs:
        growth = (
            f"{c['service_s'] / previous['service_s']:.1f}× for "
            f"{c['points'] / previous['points']:.0f}× points"
            if previous
            else ""
        )
        lines.append(
            f"| {c['points']:,} | {c['body_mb']:.2f} | {c['repeats']} | "
            f"{c['client_s']:.4f} | {c['service_s']:.4f} | "
            f"{c['service_s'] / c['points'] * 1e6:.2f} | {growth} |"
        )
        previous = c
    # Linear means a constant cost per added point: compare the marginal costs
    # (extra service time / extra points) between consecutive sizes.
    marginal = [
        (b["service_s"] - a["service_s"]) / (b["points"] - a["points"])
        for a, b in itertools.pairwise(costs)
    ]
    if len(marginal) >= 2:
        tail = marginal[1:]  # the first step is dominated by the fixed per-fit cost
        spread = max(tail) / min(tail) if min(tail) > 0 else float("inf")
        lines += [
            "",
            "Marginal cost per added point between consecutive sizes: "
            + ", ".join(f"{m * 1e6:.2f} µs" for m in marginal)
            + f". From {costs[1]['points']:,} points up it varies by "
            f"{spread:.2f}× ({'linear' if spread < 2 else 'NOT linear'}: a "
            "fixed cost per fit, mostly the durable commit, plus a constant "
            "cost per point).",
        ]
    lines += [
        "",
        "## In-process predict latency",
        "",
        f"From /metrics (anomalyd_inference_latency_seconds, delta over the wrk predict "
        f"rounds, {inference['_count']:,.0f} predicts): median ≈ {p50 * 1e6:.0f} µs "
        f"(bucket {p50_lo * 1e6:.0f}–{p50_hi * 1e6:.0f} µs), p99 ≈ {p99 * 1e6:.0f} µs "
        f"(bucket {p99_lo * 1e6:.0f}–{p99_hi * 1e6:.0f} µs), mean {inproc_avg * 1e6:.0f} "
        "µs"
        + (f"; {share_100us:.1%} under 100 µs" if share_100us is not None else "")
        + f". With {SCALE_SERIES:,} series: median ≈ {large_p50[0] * 1e6:.0f} µs "
        f"(bucket {large_p50[1] * 1e6:.0f}–{large_p50[2] * 1e6:.0f} µs), mean "
        f"{large_avg * 1e6:.0f} µs"
        + ". Under saturation this includes waiting for the GIL held by the worker's "
        f"other threads. /healthcheck over the whole run: {health['inference_latency_ms']}"
        " ms.",
    ]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    report = "\n".join(lines) + "\n"
    print(report)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text(report)
    log(f"written to {results / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
