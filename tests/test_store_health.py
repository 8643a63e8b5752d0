"""Readiness: /healthcheck reads the store, and says what failed when it cannot.

As in issue 12: a backup copied over the live ``data.mdb`` of a running service (2
workers). Before, fits failed with MDB_NOTFOUND, /series was empty, and the healthcheck
still said "ok".
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from test_faults import fit_body


def backup(data_dir, dest) -> None:
    subprocess.run(
        [sys.executable, "-m", "anomalyd", "backup", "--data-dir", str(data_dir)]
        + [str(dest)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_healthcheck_is_503_naming_the_file_after_a_backup_is_copied_over_it(
    make_server, tmp_path
):
    s = make_server()
    for i in range(5):
        assert s.post(f"/fit/h-{i}", fit_body(50, i)).status_code == 200
    ok = s.get("/healthcheck")
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    assert ok.json()["series_trained"] == 5
    assert set(ok.json()["training_latency_ms"]) >= {"avg", "p95"}
    backup(s.data_dir, tmp_path / "copy")
    for i in range(5, 40):
        assert s.post(f"/fit/h-{i}", fit_body(50, i)).status_code == 200
    # What the issue did: cp over the live file (same inode, new contents).
    shutil.copyfile(tmp_path / "copy" / "data.mdb", s.data_dir / "data.mdb")
    for _ in range(10):  # every worker, whichever answers
        r = s.get("/healthcheck")
        assert r.status_code == 503, r.text
        body = r.json()
        assert set(body) == {"title", "description"}
        assert str(s.data_dir / "data.mdb") in body["description"], body
        assert "replaced" in body["description"], body
    print(body["description"])
    assert s.get("/metrics").status_code == 200  # the process itself is alive


def restore(data_dir, source, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anomalyd", "restore", str(source)]
        + ["--data-dir", str(data_dir), *flags],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def versions(server, series_id: str) -> dict[str, float] | None:
    r = server.get(f"/series/{series_id}")
    if r.status_code == 404:
        return None
    return {v["version"]: v["model"]["center"] for v in r.json()["versions"]}


def test_restore_rolls_back_and_never_reuses_a_version_label(make_server, tmp_path):
    s = make_server()
    for i in range(3):
        assert s.post("/fit/kept", fit_body(20, i)).status_code == 200
    for i in range(2):
        assert s.post("/fit/dropped", fit_body(20, 10 + i)).status_code == 200
    assert s.post("/fit/reborn", fit_body(20, 20)).status_code == 200
    assert s.delete("/series/reborn").status_code == 200
    backup(s.data_dir, tmp_path / "monday")
    at_backup = {sid: versions(s, sid) for sid in ("kept", "dropped")}
    # After the backup: kept gets v4, v5; dropped is deleted; reborn is fitted
    # again (v2); new appears.
    for i in range(2):
        assert s.post("/fit/kept", fit_body(20, 30 + i)).status_code == 200
    assert s.delete("/series/dropped").status_code == 200
    assert s.post("/fit/reborn", fit_body(20, 40)).json()["version"] == "v2"
    assert s.post("/fit/new", fit_body(20, 50)).status_code == 200
    seen_v4 = versions(s, "kept")["v4"]

    refused = restore(s.data_dir, tmp_path / "monday", "--yes")
    assert refused.returncode == 1
    assert f"in use by anomalyd (pid {s.proc.pid})" in refused.stderr, refused.stderr
    s.stop()

    before = (s.data_dir / "data.mdb").read_bytes()
    dry = restore(s.data_dir, tmp_path / "monday")
    assert dry.returncode == 1, dry.stderr
    assert (s.data_dir / "data.mdb").read_bytes() == before, "a dry run wrote"
    lines = dry.stdout
    assert "a rollback" in lines and "--yes" in lines
    assert "kept: loses v4..v5, keeps v1..v3; its next fit is v6" in lines, lines
    assert "dropped: gets back v1..v2; its next fit is v3" in lines, lines
    assert "reborn: loses v2, is absent from the backup; its next fit is v3" in lines
    assert "new: loses v1, is absent from the backup; its next fit is v2" in lines

    done = restore(s.data_dir, tmp_path / "monday", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    s = make_server(s.data_dir)
    for sid in ("kept", "dropped"):
        assert versions(s, sid) == at_backup[sid], sid
    assert versions(s, "reborn") is None and versions(s, "new") is None
    # No label is used twice: every counter continues from the highest ever seen.
    fitted = {}
    for sid, seed in (("kept", 60), ("dropped", 61), ("reborn", 62), ("new", 63)):
        r = s.post(f"/fit/{sid}", fit_body(20, seed))
        assert r.status_code == 200, r.text
        fitted[sid] = r.json()["version"]
    assert fitted == {"kept": "v6", "dropped": "v3", "reborn": "v3", "new": "v2"}
    # v4 and v5 of kept were rolled back: a gap, never given out again.
    assert list(versions(s, "kept")) == ["v1", "v2", "v3", "v6"]
    point = {"timestamp": 1_700_000_000, "value": 50.0}
    for v in ("v4", "v5"):
        r = s.post(f"/predict/kept?version={v}", point)
        assert r.status_code == 404 and v in r.json()["description"], r.text
        assert s.get(f"/plot?series_id=kept&version={v}").status_code == 404
    assert s.get("/series?limit=10").json()["series"][1] == {
        "series_id": "kept",
        "latest": "v6",
        "versions": 4,
    }
    assert versions(s, "kept")["v6"] != seen_v4
    assert s.get("/healthcheck").status_code == 200
    s.stop()
    # Restoring a v1 backup (made by anomalyd before layout 2) works the same way.
    from test_store_layout import V1_STORE

    done = restore(s.data_dir, V1_STORE, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    s = make_server(s.data_dir)
    assert s.post("/fit/alive", fit_body(20, 70)).json()["version"] == "v4"
    assert s.post("/fit/kept", fit_body(20, 71)).json()["version"] == "v7"
