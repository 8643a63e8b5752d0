"""What an operator's mistake or a full disk does to the store, on a real service.

Each test runs a real ``anomalyd serve`` (gunicorn, 2 workers) on a real LMDB directory,
does what issue 10 did to it, and checks that the service refuses loudly instead of
corrupting the store, and that everything acknowledged is still there afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import free_port
from test_faults import check_acknowledged, fit_body, verify_store

from anomalyd.detectors import DetectorParams, fit
from anomalyd.store import Store, StoreFull

LOCK_FILE = "lock.mdb"

MiB = 1024 * 1024


def serve_args(data_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "anomalyd",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def refused_start(
    data_dir: Path, *extra: str, timeout: float = 60, env: dict | None = None
) -> tuple[int, str]:
    """Run ``anomalyd serve`` that must exit by itself; its status and output."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    done = subprocess.run(
        serve_args(data_dir, free_port(), *extra),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environ, **(env or {})},
    )
    return done.returncode, done.stdout + done.stderr


def wait_exit(server, timeout: float) -> int:
    """The status of a server that must stop by itself within ``timeout``."""
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"anomalyd kept running for {timeout} s: it should have stopped")


def log_of(server) -> str:
    server.log.flush()
    return (server.data_dir.parent / f"server-{server.port}.log").read_text()


# -- lock.mdb and the directory lock --------------------------------------------


def test_losing_lock_mdb_stops_the_service_and_loses_nothing(make_server, tmp_path):
    s = make_server()
    acked = []
    for i in range(6):
        r = s.post(f"/fit/lk-{i % 2}", fit_body(20, i))
        assert r.status_code == 200, r.text
        b = r.json()
        acked.append(
            (f"lk-{i % 2}", b["version"], b["model"]["center"], b["model"]["scale"])
        )
    os.unlink(s.data_dir / LOCK_FILE)
    # A worker respawn (a kill, a timeout, a HUP) is what opened a second lock table.
    os.kill(s.worker_pids()[0], signal.SIGKILL)
    answers = []
    stop = threading.Event()

    def fits() -> None:
        while not stop.is_set():
            try:
                answers.append(s.post("/fit/lk-0", fit_body(20, 99)).status_code)
            except requests.RequestException:
                answers.append(None)

    writer = threading.Thread(target=fits, daemon=True)
    writer.start()
    status = wait_exit(s, 60)
    stop.set()
    writer.join(30)
    log = log_of(s)
    assert status != 0
    assert "CRITICAL" in log and str(s.data_dir / LOCK_FILE) in log, log[-3000:]
    assert "start anomalyd again" in log
    # Nothing was written after the lock table was lost.
    assert 200 not in answers, answers
    assert {a for a in answers if a is not None} <= {503}, answers
    assert not (s.data_dir / LOCK_FILE).exists(), "a worker opened a new lock table"
    verify_store(s.data_dir)
    s2 = make_server(s.data_dir)
    check_acknowledged(s2.get, acked)
    assert s2.post("/fit/lk-0", fit_body(20, 7)).json()["version"] == "v4"


def test_a_second_service_on_one_directory_is_refused(make_server):
    first = make_server()
    status, out = refused_start(first.data_dir)
    assert status == 1, out
    assert f"in use by anomalyd (pid {first.proc.pid})" in out, out
    assert "Traceback" not in out
    # The first one never noticed.
    assert first.post("/fit/one", fit_body(10, 1)).status_code == 200
    first.stop()
    again = make_server(first.data_dir)
    assert again.get("/series/one").status_code == 200


def test_backup_makes_no_second_lock_table(make_server, tmp_path):
    s = make_server()
    assert s.post("/fit/b", fit_body(10, 1)).status_code == 200
    os.unlink(s.data_dir / LOCK_FILE)
    done = subprocess.run(
        [sys.executable, "-m", "anomalyd", "backup", "--data-dir", str(s.data_dir)]
        + [str(tmp_path / "copy")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "lock.mdb" in done.stderr and "Traceback" not in done.stderr
    # py-lmdb (lock=True, even read-only) would have created a fresh lock.mdb here.
    assert not (s.data_dir / LOCK_FILE).exists()


def test_a_worker_refuses_a_lock_file_that_is_not_the_recorded_one(tmp_path):
    from anomalyd.store import LockFileMismatch
    from anomalyd.store.files import DIRECTORY_LOCK, LockIdentity, lock_identity

    data = str(tmp_path / "data")
    Store(data, map_size=MiB).close()
    recorded = lock_identity(data, create=True)
    # The master keeps it open: its inode cannot be reused by a new lock.mdb.
    held = os.open(os.path.join(data, LOCK_FILE), os.O_RDONLY)
    os.unlink(os.path.join(data, LOCK_FILE))
    with pytest.raises(LockFileMismatch, match="lock.mdb was removed"):
        Store(data, map_size=MiB, lock_file=recorded)
    assert not os.path.exists(os.path.join(data, LOCK_FILE))
    other = lock_identity(data, create=True)
    assert other != recorded
    with pytest.raises(LockFileMismatch, match="replaced by another file"):
        Store(data, map_size=MiB, lock_file=recorded)
    # The recorded one is accepted, and an empty pre-created lock file works.
    store = Store(data, map_size=MiB, lock_file=LockIdentity(*other))
    assert store.verify() == []
    store.close()
    # Tools that open a Store never take the service's directory lock.
    assert not (Path(data) / DIRECTORY_LOCK).exists()
    os.close(held)


# -- a full map ---------------------------------------------------------------


def test_a_full_store_can_be_emptied_through_the_api(make_server):
    s = make_server(extra=["--map-size", str(MiB)])
    acked: dict[str, int] = {}
    for i in range(400):
        sid = f"full-{i % 8}"
        r = s.post(f"/fit/{sid}", fit_body(500, i))
        if r.status_code == 507:
            break
        assert r.status_code == 200, r.text
        acked[sid] = acked.get(sid, 0) + 1
    else:
        pytest.fail("the store never filled up")
    assert "map_size" in r.json()["description"], r.text
    assert s.post("/fit/full-0", fit_body(500, 1)).status_code == 507
    deleted = []
    for sid in sorted(acked):
        r = s.delete(f"/series/{sid}")
        # Before: a MapFullError in delete_series, a 500, every time.
        assert r.status_code == 200, r.text
        assert r.json()["deleted_versions"] == acked[sid]
        deleted.append(sid)
        if s.post("/fit/after", fit_body(500, 2)).status_code == 200:
            break
    else:
        pytest.fail("fits still refused after deleting every series")
    assert s.get("/series/after").json()["latest"] == "v1"
    for sid in acked:
        expected = 404 if sid in deleted else 200
        assert s.get(f"/series/{sid}").status_code == expected, sid
    s.stop()
    verify_store(s.data_dir)


def test_a_map_full_to_the_last_page_is_a_store_full_error_even_for_deletes(tmp_path):
    store = Store(str(tmp_path / "data"), map_size=MiB)
    try:
        values = np.arange(100, dtype=float)
        model = fit(values, DetectorParams())
        store.add_version("x", model, np.arange(100), values, 0.0)
        filler = store.open_db(b"filler")
        with pytest.raises(StoreFull, match="map_size"):
            for i in range(10_000):  # past the headroom, to the very end of the map
                with store.write(reserve=False) as txn:
                    txn.put(b"%06d" % i, b"\xff" * 3000, db=filler)
        # Whatever a delete then meets, it is a StoreFull (507), never a 500.
        try:
            store.delete_series("x")
        except StoreFull as exc:
            assert "map_size" in str(exc)
    finally:
        store.close()


# -- a full disk --------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)],
        check=True,
    )
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_507_and_the_service_recovers(make_server, small_disk):
    data = small_disk / "data"
    s = make_server(data, extra=["--map-size", str(64 * MiB)])
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (free - 300 * 1024))
    acked = []
    for i in range(200):
        r = s.post(f"/fit/disk-{i % 3}", fit_body(1500, i))
        if r.status_code == 507:
            break
        assert r.status_code == 200, r.text
        b = r.json()
        acked.append(
            (f"disk-{i % 3}", b["version"], b["model"]["center"], b["model"]["scale"])
        )
    else:
        pytest.fail("the disk never filled up")
    description = r.json()["description"]
    assert "disk" in description and "full" in description, description
    for _ in range(3):  # it stays a clear 507, never a 500
        assert s.post("/fit/disk-0", fit_body(1500, 7)).status_code == 507
    point = {"timestamp": 1_700_000_000, "value": 50.0}
    assert s.post("/predict/disk-0", point).status_code == 200
    assert s.get("/healthcheck").status_code == 200
    ballast.unlink()
    r = s.post("/fit/disk-0", fit_body(1500, 8))
    assert r.status_code == 200, r.text
    b = r.json()
    acked.append(("disk-0", b["version"], b["model"]["center"], b["model"]["scale"]))
    check_acknowledged(s.get, acked)
    s.stop()
    verify_store(data)
    s = make_server(data, extra=["--map-size", str(64 * MiB)])
    check_acknowledged(s.get, acked)


# -- a truncated data.mdb -----------------------------------------------------


def fill_pages(s, n: int = 4) -> None:
    for i in range(n):
        assert s.post(f"/fit/big-{i}", fit_body(5000, i)).status_code == 200


def test_a_truncated_data_file_is_refused_at_start(make_server):
    s = make_server()
    fill_pages(s)
    s.stop()
    path = s.data_dir / "data.mdb"
    os.truncate(path, path.stat().st_size // 2)
    started = time.monotonic()
    status, out = refused_start(s.data_dir, timeout=60)
    assert status == 1, out
    assert f"{path} is truncated" in out, out
    assert "Booting worker" not in out, "the master forked workers anyway"
    assert time.monotonic() - started < 30
    os.truncate(path, 0)
    status, out = refused_start(s.data_dir)
    assert status == 1 and f"{path} is empty" in out, out


def test_a_data_file_truncated_while_running_stops_the_service(make_server):
    s = make_server()
    fill_pages(s)
    path = s.data_dir / "data.mdb"
    os.truncate(path, 4 * 4096)
    for pid in s.worker_pids():  # a respawn: the new workers meet the short file
        os.kill(pid, signal.SIGKILL)
    status = wait_exit(s, 60)
    log = log_of(s)
    assert status != 0
    assert f"{path} is truncated" in log, log[-3000:]
    # It stopped at once instead of respawning workers that die of SIGBUS forever.
    assert log.count("Booting worker") <= 2 + 2 + 5, log[-3000:]


def test_workers_that_keep_dying_at_boot_stop_the_service(make_server):
    s = make_server()
    killed: set[int] = set(s.worker_pids())
    stop = threading.Event()

    def kill_new_workers() -> None:
        # Whatever kills a worker before it has loaded the application, over and
        # over: here a signal, as soon as it is forked.
        while not stop.is_set():
            for pid in s.worker_pids():
                if pid not in killed:
                    killed.add(pid)
                    os.kill(pid, signal.SIGSEGV)
            time.sleep(0.001)

    killer = threading.Thread(target=kill_new_workers, daemon=True)
    killer.start()
    for pid in list(killed):
        os.kill(pid, signal.SIGKILL)
    try:
        status = wait_exit(s, 90)
    finally:
        stop.set()
        killer.join(10)
    log = log_of(s)
    assert status != 0
    assert "workers in a row died before they finished starting" in log, log[-3000:]
    assert len(killed) < 40, len(killed)
