"""The shared-memory statistics region: allocated at start, clear messages, no leftovers.

Real ``anomalyd serve`` processes; the small runtime directory is a tmpfs mounted here
(root only: CI runs as root, elsewhere these skip and say why).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from test_store_faults import refused_start

from anomalyd.stats import SLOT_BYTES


@pytest.fixture
def small_runtime_dir(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    run = tmp_path / "run"
    run.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(run)], check=True
    )
    yield run
    subprocess.run(["umount", "-l", str(run)], check=False)


def test_a_runtime_directory_too_small_for_the_region_is_refused_at_start(
    tmp_path, small_runtime_dir
):
    # 2 workers x 2 generations x 4 threads + the master's slot: far over 256 KiB.
    assert SLOT_BYTES * 17 > 256 * 1024
    status, out = refused_start(
        tmp_path / "data", env={"RUNTIME_DIRECTORY": str(small_runtime_dir)}
    )
    assert status == 1, out
    assert "cannot allocate the" in out and str(small_runtime_dir) in out, out
    assert "No space left on device" in out and "Traceback" not in out, out
    # Before: it started, and the first worker writing past the free space died of
    # SIGBUS, then the master. Nothing is left behind either.
    assert list(small_runtime_dir.iterdir()) == []


def test_a_missing_or_read_only_runtime_directory_is_a_message(tmp_path):
    missing = tmp_path / "nowhere"
    status, out = refused_start(
        tmp_path / "data", env={"RUNTIME_DIRECTORY": str(missing)}
    )
    assert status == 1, out
    assert f"the runtime directory {missing} does not exist" in out, out
    assert "Traceback" not in out
    read_only = tmp_path / "ro"
    read_only.mkdir()
    if os.geteuid() == 0:  # root ignores mode bits: a read-only mount
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(read_only)],
            check=True,
        )
    else:
        read_only.chmod(0o500)
    try:
        status, out = refused_start(
            tmp_path / "data", env={"RUNTIME_DIRECTORY": str(read_only)}
        )
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(read_only)], check=False)
    assert status == 1, out
    assert f"the runtime directory {read_only} cannot hold" in out, out
    assert "Traceback" not in out


def test_regions_of_killed_services_are_removed_and_live_ones_kept(
    make_server, tmp_path
):
    own_tmp = tmp_path / "tmp"  # the temporary directory these services use
    own_tmp.mkdir()
    env = {"TMPDIR": str(own_tmp)}
    live = make_server(tmp_path / "live", env=env)
    killed = make_server(tmp_path / "killed", env=env)
    assert len(list(own_tmp.glob("anomalyd-*"))) == 2
    killed.stop(signal.SIGKILL)
    leftover = [d for d in own_tmp.glob("anomalyd-*") if list(d.glob("stats-*.bin"))]
    assert len(leftover) == 2, "SIGKILL left the region behind"
    # Something else's directory with the same prefix, and a region of an older
    # anomalyd that did not lock it: never touched.
    foreign = own_tmp / "anomalyd-foreign"
    foreign.mkdir()
    (foreign / "stats-old.bin").write_bytes(b"\0" * 64)
    third = make_server(tmp_path / "third", env=env)
    dirs = set(own_tmp.glob("anomalyd-*"))
    assert foreign in dirs
    assert len(dirs) == 3, dirs  # live, third, foreign: the killed one's is gone
    # The live service kept its region and still counts.
    assert live.get("/healthcheck").status_code == 200
    assert third.get("/healthcheck").status_code == 200
    r = live.get("/metrics")
    assert 'route="/healthcheck",method="GET",status="200"' in r.text
