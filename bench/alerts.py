"""Alerts' figures: delivery latency, observe latency with and without receivers (one
run), and the observe path in process before and after alerts.

    .venv/bin/python bench/alerts.py [--rounds 4] [--seconds 6] [--clients 8]
                                     [--before REF] [--part service|hotpath|both]

Service part: three real ``anomalyd serve`` (defaults: 2 workers x 4 threads) up at
once, measured one at a time in alternating rounds: no receiver; one webhook
receiver (run by this script, accepting everything); the same plus a receiver that
never answers (``alert_timeout`` 2 s). ``--clients`` threads each own 12 streams and
send single-point observes on keep-alive connections (a stream's first request is a
warm-up batch); after at least 11 calm points a stream jumps (probability 0.1 per
observe), which opens an alert, and the calm points after it resolve it
(``alert_resolve_after`` 300 s of stream time, 60 s between points). Printed: observes/s,
client-side latency (median, p99) and the service's own (``/healthcheck``:
single-point observes, avg, p50, p99), the ratio with receivers to without, and the
delivery latency: from the client holding the answer of an observe that opened an
alert to the receiver holding its ``episode_opened`` (same host clock).

Hot-path part: the same single-point observes in process (``falcon.testing`` against
``create_app``, a store on tmpfs so the fsync costs nothing), timed as CPU time of the
thread that runs them (``time.thread_time``: the whole observe, commit included, runs
on it; time the machine gives other processes does not count),
with the code of git ref ``--before`` (default: where this branch left main,
exported with ``git archive``) and this checkout, alternating (which goes first
alternates too); and, in this checkout,
the observes that opened or resolved an alert (the outbox write) against those that
did not, in the same run.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Anomalyd

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000
STEP = 60
CALM_AFTER = 11


def calm_value(i: int) -> float:
    return 50 + (i * 7919 % 13) / 10


class Sink:
    """A webhook receiver that accepts everything and notes when each opening came."""

    def __init__(self, hang: bool = False) -> None:
        self.arrived: dict[tuple[str, int], float] = {}
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                at = time.time()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hang:
                    time.sleep(3600)
                event = json.loads(body)
                if event["type"] == "episode_opened":
                    key = (event["data"]["series_id"], event["data"]["episode"])
                    sink.arrived.setdefault(key, at)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Load:
    """Client threads observing their own streams; notes each answer's latency and
    when each alert-opening answer arrived."""

    def __init__(self, url: str, clients: int, prefix: str) -> None:
        self.url = url
        self.clients = clients
        self.prefix = prefix
        self.latencies: list[float] = []
        self.opened: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.state = {}  # stream -> [points, calm run, episodes]

    def run(self, seconds: float) -> int:
        stop = time.monotonic() + seconds
        threads = [
            threading.Thread(target=self._client, args=(c, stop))
            for c in range(self.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(1 for _ in threads)

    def _client(self, c: int, stop: float) -> None:
        rng = random.Random(c)
        names = [f"{self.prefix}-{c}-{s}" for s in range(12)]
        session = requests.Session()
        while time.monotonic() < stop:
            name = rng.choice(names)
            points, quiet, episodes = self.state.setdefault(name, [0, 0, 0])
            if points == 0:
                ts = [T0 + STEP * i for i in range(80)]
                body = {"timestamps": ts, "values": [calm_value(i) for i in range(80)]}
                r = session.post(f"{self.url}/observe/{name}/batch", json=body)
                assert r.status_code == 200, r.text
                self.state[name] = [80, 80, 0]
                continue
            jump = quiet >= CALM_AFTER and rng.random() < 0.1
            value = 500.0 * 2.0 ** (episodes + 1) if jump else calm_value(points)
            started = time.perf_counter()
            r = session.post(
                f"{self.url}/observe/{name}",
                json={"timestamp": T0 + STEP * points, "value": value},
            )
            took = time.perf_counter() - started
            answered = time.time()
            assert r.status_code == 200, r.text
            with self.lock:
                self.latencies.append(took)
                if jump:
                    assert r.json()["anomaly"], (name, r.json())
                    self.opened[(name, episodes + 1)] = answered
            self.state[name] = [
                points + 1,
                0 if jump else quiet + 1,
                episodes + 1 if jump else episodes,
            ]
        session.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def service_part(args) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    sink, silent = Sink(), Sink(hang=True)
    common = ("--alert-resolve-after", "300", "--stream-warmup", "20")
    hooks = ("--webhook-secret", secret, "--alert-timeout", "2")
    configs = {
        "no receiver": common,
        "webhook": common + hooks + ("--webhook-url", sink.url),
        "webhook + silent": common
        + hooks
        + ("--webhook-url", sink.url, "--webhook-url", silent.url),
    }
    services = {name: Anomalyd(*flags) for name, flags in configs.items()}
    for service in services.values():
        service.__enter__()
    try:
        loads = {
            name: Load(s.url, args.clients, name.replace(" ", "").replace("+", "-"))
            for name, s in services.items()
        }
        counts = dict.fromkeys(configs, 0)
        elapsed = dict.fromkeys(configs, 0.0)
        for _ in range(args.rounds):
            for name in configs:
                before = len(loads[name].latencies)
                started = time.monotonic()
                loads[name].run(args.seconds)
                elapsed[name] += time.monotonic() - started
                counts[name] += len(loads[name].latencies) - before
        time.sleep(3)  # the last deliveries
        print(f"load average after: {os.getloadavg()}")
        print(
            f"{args.clients} clients, {args.rounds} rounds of {args.seconds} s each, "
            "single-point observes on keep-alive connections, 2 workers x 4 threads"
        )
        base = None
        for name, service in services.items():
            lat = loads[name].latencies
            health = requests.get(service.url + "/healthcheck", timeout=10).json()
            inside = health["observe_latency_ms"]
            p50 = statistics.median(lat) * 1000
            base = base or p50
            print(
                f"{name:>17}: {counts[name] / elapsed[name]:7.0f} observes/s, client "
                f"median {p50:.2f} ms p99 {pct(lat, 0.99) * 1000:.2f} ms "
                f"(median {p50 / base:.2f}x no receiver); in the service avg "
                f"{inside['avg']:.2f} p50 {inside['p50']:.2f} p99 {inside['p99']:.2f} "
                f"ms; alerts opened {len(loads[name].opened)}"
            )
        for name in ("webhook", "webhook + silent"):
            opened = loads[name].opened
            delays = [
                sink.arrived[key] - at
                for key, at in opened.items()
                if key in sink.arrived
            ]
            missing = len(opened) - len(delays)
            if delays:
                print(
                    f"{name:>17}: delivery latency, answer to receiver, over "
                    f"{len(delays)} alerts: median {statistics.median(delays) * 1000:.1f}"
                    f" ms, p99 {pct(delays, 0.99) * 1000:.1f} ms, max "
                    f"{max(delays) * 1000:.1f} ms; not arrived: {missing}"
                )
    finally:
        for service in services.values():
            service.__exit__(None, None, None)


HOT = r"""
import json, sys, tempfile, time
import falcon.testing
from anomalyd.app import create_app
from anomalyd.settings import Settings
from anomalyd.stats import LocalStats
from anomalyd.store import Store
n, jumps = int(sys.argv[1]), sys.argv[2] == "jumps"
with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
    given = {"data_dir": d, "stream_warmup": 20}
    if "alert_resolve_after" in Settings.__struct_fields__:
        given["alert_resolve_after"] = 300
    settings = Settings(**given)
    store = Store(d, map_size=1 << 30)
    stats = LocalStats(threads=4)
    client = falcon.testing.TestClient(create_app(settings, store, stats))
    plain, alerted = [], []
    state = {}
    for i in range(n):
        name = f"s{i % 100}"
        points, quiet, episodes = state.get(name, (0, 0, 0))
        if points == 0:
            body = {"timestamps": [1700000000 + 60 * k for k in range(80)],
                    "values": [50 + (k * 7919 % 13) / 10 for k in range(80)]}
            client.simulate_post(f"/observe/{name}/batch", json=body)
            state[name] = (80, 80, 0)
            continue
        jump = jumps and quiet >= 11 and i % 7 == 0
        value = 500.0 * 2.0 ** (episodes + 1) if jump else 50 + (points * 7919 % 13) / 10
        started = time.thread_time()  # CPU of this thread: the whole observe runs here
        r = client.simulate_post(f"/observe/{name}",
                                 json={"timestamp": 1700000000 + 60 * points, "value": value})
        took = time.thread_time() - started
        assert r.status_code == 200, r.text
        # an alert opens at a jump and resolves 5 calm points after it
        (alerted if jump or (jumps and quiet == 5 and episodes) else plain).append(took)
        state[name] = (points + 1, 0 if jump else quiet + 1, episodes + (1 if jump else 0))
    store.close()
    stats.remove()
print(json.dumps({"plain": plain, "alerted": alerted}))
"""


def hot(source: Path, n: int, jumps: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    env["PYTHONPATH"] = str(source)
    out = subprocess.run(
        [sys.executable, "-c", HOT, str(n), "jumps" if jumps else "calm"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=source,
    ).stdout
    return json.loads(out.splitlines()[-1])


def hotpath_part(args) -> None:
    ref = (
        args.before
        or subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with tempfile.TemporaryDirectory(prefix="anomalyd-hot-") as tmp:
        before = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "anomalyd"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        found: dict[str, list[float]] = {"before": [], "this": []}
        ratios = []
        trees = [("before", before), ("this", ROOT)]
        for i in range(args.rounds):
            medians = {}
            for name, source in trees if i % 2 == 0 else trees[::-1]:
                got = hot(source, args.observes, False)["plain"]
                found[name] += got
                medians[name] = statistics.median(got)
            ratios.append(medians["this"] / medians["before"])
        jumps = {"plain": [], "alerted": []}
        for _ in range(args.rounds):
            got = hot(ROOT, args.observes, True)
            jumps["plain"] += got["plain"]
            jumps["alerted"] += got["alerted"]
    print(
        f"in process (falcon.testing, store on tmpfs), {args.rounds} rounds of "
        f"{args.observes} single-point observes over 100 streams, load average "
        f"{os.getloadavg()}"
    )
    b, t = statistics.median(found["before"]), statistics.median(found["this"])
    print(
        f"  calm observes: {ref[:10]} median {b * 1e6:.0f} us, this checkout "
        f"{t * 1e6:.0f} us; this / before, round by round (each round runs both, "
        f"back to back): median {statistics.median(ratios):.3f}, from "
        f"{min(ratios):.3f} to {max(ratios):.3f}"
    )
    p, a = statistics.median(jumps["plain"]), statistics.median(jumps["alerted"])
    print(
        f"  this checkout, same run: observes that opened or resolved an alert "
        f"(outbox write) median {a * 1e6:.0f} us over {len(jumps['alerted'])}, the "
        f"others {p * 1e6:.0f} us ({a / p:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--observes", type=int, default=6000)
    parser.add_argument("--before", default=None)
    parser.add_argument(
        "--part", choices=("service", "hotpath", "both"), default="both"
    )
    args = parser.parse_args()
    if args.part in ("service", "both"):
        service_part(args)
    if args.part in ("hotpath", "both"):
        hotpath_part(args)


if __name__ == "__main__":
    main()
