"""`anomalyd backup DEST` against a running service (2 workers) that keeps taking fits.

The copy must be a snapshot: every version acknowledged before the backup began is in
it with the same model, versions run v1..vN without gaps, and the copy opens as a store
(the restore path: put the copy in place, start the service on it).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import requests

from anomalyd.store import Store

WRITERS = 3
POINTS = 20_000  # 320 kB of training data per version: the copy has work to do


def _fits(url: str, series_id: str, stop: threading.Event, acked: list) -> None:
    rng = np.random.default_rng(abs(hash(series_id)) % 2**32)
    timestamps = list(range(1_600_000_000, 1_600_000_000 + POINTS))
    session = requests.Session()
    while not stop.is_set():
        values = (20 + rng.standard_normal(POINTS)).round(3).tolist()
        reply = session.post(
            f"{url}/fit/{series_id}",
            json={"timestamps": timestamps, "values": values},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        acked.append((series_id, body["version"], body["model"], time.monotonic()))


def _backup(data_dir, dest) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "anomalyd",
            "backup",
            "--data-dir",
            str(data_dir),
            str(dest),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_backup_while_fits_arrive_holds_every_acknowledged_version(
    make_server, tmp_path
):
    server = make_server()
    acked: list[tuple[str, str, dict, float]] = []
    stop = threading.Event()
    writers = [
        threading.Thread(target=_fits, args=(server.url, f"bk-{i}", stop, acked))
        for i in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    try:
        deadline = time.monotonic() + 120
        while len(acked) < 8 * WRITERS and time.monotonic() < deadline:
            time.sleep(0.1)
        began = time.monotonic()
        done = _backup(server.data_dir, tmp_path / "copy")
        ended = time.monotonic()
        # Let a few more land after the copy, which it must not hold all of.
        deadline = time.monotonic() + 60
        while not any(a[3] > ended for a in acked) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for writer in writers:
            writer.join(120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "copy" / "data.mdb")
    before = [a for a in acked if a[3] < began]
    during = [a for a in acked if began <= a[3] <= ended]
    assert len(before) >= 8 * WRITERS
    assert during, "no fit was acknowledged while the backup ran: it proves nothing"

    store = Store(str(tmp_path / "copy"), map_size=1 << 30)
    try:
        assert store.verify() == []
    finally:
        store.close()

    restored = make_server(data_dir=tmp_path / "copy")
    for i in range(WRITERS):
        series_id = f"bk-{i}"
        reply = restored.get(f"/series/{series_id}")
        assert reply.status_code == 200, reply.text
        versions = {v["version"]: v["model"] for v in reply.json()["versions"]}
        # A snapshot: v1..vN, no gaps, nothing past what was acknowledged by the end.
        assert list(versions) == [f"v{n}" for n in range(1, len(versions) + 1)]
        assert len(versions) <= sum(1 for a in acked if a[0] == series_id)
        for sid, version, model, _ in before:
            if sid == series_id:
                assert versions.get(version) == model, (series_id, version)
    total = sum(
        len(restored.get(f"/series/bk-{i}").json()["versions"]) for i in range(WRITERS)
    )
    print(
        f"\nbackup: {len(before)} versions acknowledged before it began, "
        f"{len(during)} during it ({ended - began:.2f} s), {total} in the copy"
    )


def test_backup_refuses_a_missing_store_and_a_used_destination(tmp_path):
    missing = _backup(tmp_path / "nothing-here", tmp_path / "copy")
    assert missing.returncode == 1
    assert "no store in" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "nothing-here").exists(), "backup must not create a store"

    store = Store(str(tmp_path / "data"), map_size=1 << 24)
    store.close()
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    refused = _backup(tmp_path / "data", used)
    assert refused.returncode == 1
    assert "not empty" in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(p.name for p in used.iterdir()) == ["keep.txt"]
