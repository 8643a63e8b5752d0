"""Faults: workers and the whole service killed with SIGKILL, a full store, a corrupt record.

Every test runs a real ``anomalyd serve`` (gunicorn, 2 workers) on a real LMDB directory.
"Acknowledged" means a fit answered 200: it must survive anything that follows.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import lmdb
import pytest
import requests

from anomalyd.store import Store

MiB = 1024 * 1024


def fit_body(n: int, seed: int) -> dict:
    rng = random.Random(seed)
    return {
        "timestamps": [1_700_000_000 + 60 * i for i in range(n)],
        "values": [round(rng.gauss(50, 5), 3) for _ in range(n)],
    }


class Load:
    """Client threads running a mixed load; they record every acknowledged fit."""

    def __init__(
        self,
        url: str,
        threads: int,
        series: list[str],
        fits: float = 0.5,
        points: int = 20,
    ) -> None:
        self.url = url
        self.series = series
        self.fits = fits
        self.points = points
        self.acked: list[tuple[str, str, float, float]] = []
        self.failures: list[str] = []
        self.answered = 0
        self.server_errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Load:  # noqa: PYI034
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        session = requests.Session()
        while not self._stop.is_set():
            sid = rng.choice(self.series)
            try:
                if rng.random() < self.fits:
                    r = session.post(
                        f"{self.url}/fit/{sid}",
                        json=fit_body(self.points, rng.getrandbits(32)),
                        timeout=30,
                    )
                    if r.status_code == 200:
                        body = r.json()
                        with self._lock:
                            self.acked.append(
                                (
                                    sid,
                                    body["version"],
                                    body["model"]["center"],
                                    body["model"]["scale"],
                                )
                            )
                else:
                    r = session.post(
                        f"{self.url}/predict/{sid}",
                        json={"timestamp": 1_700_000_000, "value": 55.0},
                        timeout=30,
                    )
                with self._lock:
                    self.answered += 1
                    if r.status_code >= 500:
                        self.server_errors.append(f"{r.status_code} {r.text}")
            except requests.RequestException as exc:
                # A request in flight on a killed worker: the connection drops.
                with self._lock:
                    self.failures.append(repr(exc))
                session.close()
                session = requests.Session()
        session.close()

    def wait_answers(self, more: int, timeout: float = 30.0) -> None:
        target = self.answered + more
        deadline = time.monotonic() + timeout
        while self.answered < target:
            assert time.monotonic() < deadline, "the service stopped answering"
            time.sleep(0.02)


def check_acknowledged(session_get, acked) -> dict[str, list[dict]]:
    """Every acknowledged fit is stored with identical statistics; versions unique."""
    by_series: dict[str, list[dict]] = {}
    for sid in sorted({a[0] for a in acked}):
        r = session_get(f"/series/{sid}")
        assert r.status_code == 200, r.text
        versions = r.json()["versions"]
        labels = [v["version"] for v in versions]
        numbers = [int(label[1:]) for label in labels]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), labels
        by_series[sid] = versions
    for sid, version, center, scale in acked:
        stored = {v["version"]: v["model"] for v in by_series[sid]}
        assert version in stored, (sid, version, "acknowledged but lost")
        assert stored[version]["center"] == center, (sid, version)
        assert stored[version]["scale"] == scale, (sid, version)
    return by_series


def verify_store(data_dir) -> None:
    store = Store(str(data_dir), map_size=64 * MiB)
    try:
        assert store.verify() == []
    finally:
        store.close()


def leave_stale_reader_slots(data_dir, count: int) -> None:
    """Processes that die by SIGKILL inside a read transaction, as a worker may."""
    code = (
        "import lmdb, os, signal, sys\n"
        "env = lmdb.open(sys.argv[1], max_dbs=4)\n"
        "txn = env.begin()\n"
        "txn.get(b'schema_version')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    for _ in range(count):
        subprocess.run([sys.executable, "-c", code, str(data_dir)], check=False)


def reader_pids(table: str) -> list[int]:
    """The pids in ``env.readers()``: a header line, then one line per slot in use."""
    return [
        int(line.split()[0])
        for line in table.strip().splitlines()[1:]
        if line.split() and line.split()[0].isdigit()
    ]


def wait_new_workers(server, old: set[int], timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == server.workers and not old & set(pids):
            return pids
        time.sleep(0.02)
    raise AssertionError("gunicorn did not replace the killed workers")


@pytest.fixture
def runtime_env(tmp_path) -> dict[str, str]:
    """A runtime directory inside tmp_path: SIGKILL leaves no stats file in /tmp."""
    path = tmp_path / "run"
    path.mkdir()
    return {"RUNTIME_DIRECTORY": str(path)}


def test_worker_sigkill_under_load_loses_only_in_flight_requests(make_server):
    s = make_server()
    series = [f"load-{i}" for i in range(6)]
    for sid in series:
        assert s.post(f"/fit/{sid}", fit_body(20, 0)).status_code == 200
    threads = 6
    kills = 3
    with Load(s.url, threads, series) as load:
        load.wait_answers(50)
        for _ in range(kills):
            victim = random.choice(s.worker_pids())
            os.kill(victim, signal.SIGKILL)
            load.wait_answers(50)  # still answering, on the other worker meanwhile
            wait_new_workers(s, {victim})
        load.wait_answers(50)
    assert load.server_errors == []
    # Only requests in flight on the killed worker fail: at most one per client
    # thread per kill (a thread has one request in flight at a time).
    assert len(load.failures) <= kills * threads, load.failures
    assert len(load.acked) > 20
    check_acknowledged(s.get, load.acked)


def test_whole_service_sigkill_during_fit_storm_20_times(
    make_server, tmp_path, runtime_env
):
    data_dir = tmp_path / "data"
    series = [f"storm-{i}" for i in range(4)]
    acked: list[tuple[str, str, float, float]] = []
    for cycle in range(20):
        s = make_server(data_dir, env=runtime_env)
        # Everything acknowledged before every earlier crash is still there.
        check_acknowledged(s.get, acked)
        with Load(s.url, 6, series, fits=1.0, points=10) as load:
            load.wait_answers(random.randint(5, 30))
            s.stop(signal.SIGKILL)
        assert load.server_errors == [], cycle
        acked.extend(load.acked)
        verify_store(data_dir)
    s = make_server(data_dir)
    by_series = check_acknowledged(s.get, acked)
    print(
        f"20 SIGKILLs of the service: {len(acked)} acknowledged fits, all present "
        f"with identical statistics among {sum(map(len, by_series.values()))} "
        "stored versions"
    )
    assert len(acked) >= 100
    assert sum(len(v) for v in by_series.values()) >= len(acked)


def test_reader_slots_survive_100_worker_kills(make_server):
    s = make_server()
    # A series with many versions: GET /series/{id} decodes them all inside one read
    # transaction, so a kill often lands while a worker holds a reader slot.
    bodies = [fit_body(5, i) for i in range(150)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda b: (
                    requests.post(
                        f"{s.url}/fit/readers", json=b, timeout=60
                    ).status_code
                ),
                bodies,
            )
        )
    assert codes == [200] * len(bodies)
    stop = threading.Event()
    answered = [0]
    errors: list[int] = []

    def read() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.get(f"{s.url}/series/readers", timeout=30)
                except requests.RequestException:
                    continue
                answered[0] += 1
                if r.status_code != 200:
                    errors.append(r.status_code)

    readers = [threading.Thread(target=read, daemon=True) for _ in range(6)]
    for t in readers:
        t.start()
    kills = 0
    try:
        while kills < 100:
            # One at a time: were both gone at once, the next worker to open the
            # environment would find it unused and reset the whole reader table.
            victim = s.worker_pids()[kills % 2]
            seen = answered[0]
            deadline = time.monotonic() + 30
            while answered[0] < seen + 4:
                assert time.monotonic() < deadline, "the service stopped answering"
                time.sleep(0.005)
            if kills % 10 == 0:
                # Kills land mid-transaction only now and then: make sure stale slots
                # exist, left by processes killed while holding a read transaction.
                leave_stale_reader_slots(s.data_dir, 3)
            os.kill(victim, signal.SIGKILL)
            kills += 1
            wait_new_workers(s, {victim})
        # The workers started after the last stale slots were left have reclaimed
        # them; wait for one more start so the last few are covered too.
        leave_stale_reader_slots(s.data_dir, 3)
        victim = s.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_new_workers(s, {victim})
        time.sleep(1)
    finally:
        stop.set()
        for t in readers:
            t.join(60)
    assert errors == []
    env = lmdb.open(str(s.data_dir), max_dbs=4, readonly=True)
    try:
        table = env.readers()
        high_water = env.info()["num_readers"]
    finally:
        env.close()
    dead = [pid for pid in reader_pids(table) if not os.path.exists(f"/proc/{pid}")]
    print(
        f"after {kills + 1} worker kills: reader slot high-water mark {high_water} "
        f"of 126, stale slots {len(dead)}"
    )
    assert dead == [], table
    assert high_water <= 2 * 4 + 3 + 8 + 20, high_water
    r = s.post("/predict/readers", {"timestamp": 1_700_000_000, "value": 1.0})
    assert r.status_code == 200, r.text


def test_store_full_answers_507_then_recovers_after_raising_map_size(
    make_server, tmp_path
):
    data_dir = tmp_path / "data"
    s = make_server(data_dir, extra=["--map-size", str(MiB)])
    acked = []
    for i in range(400):
        r = s.post(f"/fit/full-{i % 5}", fit_body(500, i))
        if r.status_code == 507:
            break
        assert r.status_code == 200, r.text
        body = r.json()
        acked.append(
            (
                f"full-{i % 5}",
                body["version"],
                body["model"]["center"],
                body["model"]["scale"],
            )
        )
    else:
        pytest.fail("the store never filled up")
    assert set(r.json()) == {"title", "description"}
    assert "map_size" in r.json()["description"]
    assert acked, "not one fit fitted in 1 MiB"
    for _ in range(3):  # it stays full, and says so each time
        assert s.post("/fit/full-0", fit_body(500, 999)).status_code == 507
    r = s.post("/predict/full-0", {"timestamp": 1_700_000_000, "value": 50.0})
    assert r.status_code == 200, r.text
    r = s.get("/healthcheck")
    assert r.status_code == 200 and r.json()["series_trained"] == 5, r.text
    check_acknowledged(s.get, acked)
    s.stop()

    s = make_server(data_dir, extra=["--map-size", str(8 * MiB)])
    check_acknowledged(s.get, acked)
    r = s.post("/fit/full-0", fit_body(500, 1000))
    assert r.status_code == 200, r.text
    s.stop()
    verify_store(data_dir)


def test_corrupt_record_is_a_500_for_that_series_only(make_server, tmp_path):
    data_dir = tmp_path / "data"
    s = make_server(data_dir)
    for sid in ("good", "bad"):
        assert s.post(f"/fit/{sid}", fit_body(20, 2)).status_code == 200
    assert s.post("/fit/bad", fit_body(20, 3)).status_code == 200
    s.stop()

    env = lmdb.open(str(data_dir), max_dbs=4)
    with env.begin(write=True) as txn:
        models = env.open_db(b"models", txn=txn)
        txn.put(b"bad\x00" + (2).to_bytes(4, "big"), b"\xc1garbage", db=models)
    env.close()
    store = Store(str(data_dir), map_size=64 * MiB)
    problems = store.verify()
    store.close()
    assert len(problems) == 1 and "bad" in problems[0], problems

    s = make_server(data_dir)
    point = {"timestamp": 1_700_000_000, "value": 50.0}
    for path in ("/predict/bad", "/series/bad", "/plot?series_id=bad"):
        r = s.post(path, point) if path.startswith("/predict") else s.get(path)
        assert r.status_code == 500, (path, r.text)
        assert "'bad'" in r.json()["description"], r.text
        assert "v2" in r.json()["description"], r.text
    # The older version of that series and every other series still answer.
    assert s.post("/predict/bad?version=v1", point).status_code == 200
    assert s.post("/predict/good", point).status_code == 200
    assert s.get("/series").status_code == 200
    assert s.get("/healthcheck").status_code == 200
    assert s.post("/fit/bad", fit_body(20, 4)).json()["version"] == "v3"
