"""The command line: settings precedence, bad settings, --version, clean SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from anomalyd import __version__
from anomalyd.settings import HELP, Settings, env_name, flag_name

ROOT = Path(__file__).resolve().parent.parent


def run(*args, env=None, cwd=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    clean.pop("STATE_DIRECTORY", None)
    return subprocess.run(
        [sys.executable, "-m", "anomalyd", *args],
        check=False,
        capture_output=True,
        text=True,
        env=clean | (env or {}),
        cwd=cwd,
        timeout=60,
    )


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"anomalyd {__version__}"


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    config = tmp_path / "anomalyd.toml"
    config.write_text("workers = 3\nthreads = 5\nlru_size = 7\n")
    r = run(
        "check-config",
        "--config",
        str(config),
        "--workers",
        "4",
        "--data-dir",
        str(tmp_path / "d"),
        env={"ANOMALYD_THREADS": "6"},
    )
    assert r.returncode == 0, r.stderr
    lines = dict(
        line.split(" = ", 1) for line in r.stdout.splitlines() if " = " in line
    )
    assert lines["workers"] == "4  # flag --workers"
    assert lines["threads"] == "6  # env ANOMALYD_THREADS"
    assert lines["lru_size"] == f"7  # file {config}"
    assert lines["min_points"] == "3  # default"


def test_state_directory_is_the_default_data_dir(tmp_path):
    r = run("check-config", env={"STATE_DIRECTORY": str(tmp_path)})
    assert f'data_dir = "{tmp_path}"  # $STATE_DIRECTORY' in r.stdout


@pytest.mark.parametrize(
    "args, env, config, words",
    [
        (["--workers", "0"], {}, None, ["workers", "flag --workers", "from 1 to 64"]),
        ([], {"ANOMALYD_MAP_SIZE": "lots"}, None, ["map_size", "ANOMALYD_MAP_SIZE"]),
        ([], {}, "worker_class = 'eventlet'\n", ["worker_class", "file"]),
        ([], {}, "colour = 'blue'\n", ["unknown setting 'colour'"]),
        (["--bind", "nowhere"], {}, None, ["bind", "'nowhere' cannot be resolved"]),
        (["--bind", "::1:80"], {}, None, ["bind", "in brackets"]),
    ],
)
def test_bad_setting_stops_before_gunicorn(tmp_path, args, env, config, words):
    if config is not None:
        (tmp_path / "c.toml").write_text(config)
        args = [*args, "--config", str(tmp_path / "c.toml")]
    r = run("serve", "--data-dir", str(tmp_path / "d"), *args, env=env)
    assert r.returncode == 2
    for word in words:
        assert word in r.stderr
    assert "gunicorn" not in r.stderr.lower()


def test_sigterm_stops_the_whole_service_cleanly(make_server):
    s = make_server()
    workers = s.worker_pids()
    assert len(workers) == 2
    assert s.post("/fit/t", {"timestamps": [1, 2, 3], "values": [1, 2, 4]}).ok
    assert s.stop(signal.SIGTERM) == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_every_setting_is_documented():
    readme = (ROOT / "README.md").read_text()
    assert set(HELP) == set(Settings.__struct_fields__)
    for field in Settings.__struct_fields__:
        for spelling in (field, flag_name(field), env_name(field)):
            assert re.search(re.escape(spelling) + r"\b", readme), spelling
