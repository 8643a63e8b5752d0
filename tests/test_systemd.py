"""systemd/anomalyd.service: verified, rated, and its ExecStart run as systemd runs it.

systemd is not PID 1 in CI, so the unit is checked with systemd-analyze and its ExecStart
is run by hand the way systemd would: as an unprivileged uid (DynamicUser), from /, with
$STATE_DIRECTORY, $RUNTIME_DIRECTORY, $CACHE_DIRECTORY, the unit's Environment= lines,
NoNewPrivileges and MemoryDenyWriteExecute (the kernel's PR_SET_MDWE), and a
$NOTIFY_SOCKET the test reads.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from shipping import (
    NOBODY,
    PACKAGE,
    ROOT,
    UNIT,
    Service,
    build,
    dpkg,
    free_port,
    harden,
    mdwe_supported,
    round_trip,
    series_versions,
    unit_service,
    unit_settings,
)

INSTALLED_UNIT = Path("/lib/systemd/system/anomalyd.service")
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (.ci/run installs systemd)",
)


@pytest.fixture(scope="module")
def installed_unit(tmp_path_factory) -> str:
    """The .deb installed on this host for the module, purged afterwards (root only)."""
    if os.geteuid() != 0:
        pytest.skip("installing the .deb needs root (CI runs as root)")
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed (.ci/run installs dpkg-dev)")
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", PACKAGE],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    if status.endswith(" installed"):
        pytest.skip("anomalyd is already installed on this host: not touched")
    _, deb = build(tmp_path_factory)
    dpkg("-i", str(deb))
    try:
        yield INSTALLED_UNIT.read_text()
    finally:
        dpkg("--purge", PACKAGE)


@pytest.fixture
def unprivileged_base():
    """A root for systemd's directories that uid 65534 can reach (pytest's tmp is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="anomalyd-unit-"))
    os.chmod(base, 0o755)
    # What the package ships: the empty source of LoadCredential=.
    (base / "etc/anomalyd/credentials").mkdir(parents=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_unit_has_what_the_issue_asks():
    service = unit_settings(UNIT.read_text())
    expected = {
        "Type": ["notify"],
        "ExecStart": ["/usr/bin/anomalyd serve --config /etc/anomalyd/anomalyd.toml"],
        "ExecReload": ["kill -HUP $MAINPID"],
        "KillMode": ["mixed"],
        "DynamicUser": ["yes"],
        "StateDirectory": ["anomalyd"],
        "RuntimeDirectory": ["anomalyd"],
        "ConfigurationDirectory": ["anomalyd"],
        "Restart": ["on-failure"],
        "CapabilityBoundingSet": [""],
        "ProtectSystem": ["strict"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "SystemCallArchitectures": ["native"],
        "UMask": ["0077"],
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert "@system-service" in service["SystemCallFilter"]


def test_unit_gives_the_token_as_a_credential():
    """The token reaches the service through LoadCredential= from a directory the
    package ships, and nothing is unpacked into a cache at start any more."""
    service = unit_settings(UNIT.read_text())
    assert service["LoadCredential"] == ["anomalyd:/etc/anomalyd/credentials"]
    assert "CacheDirectory" not in service
    assert not [e for e in service.get("Environment", []) if "SHIV_ROOT" in e]


def test_token_as_a_credential_under_a_dynamic_uid(installed_unit, unprivileged_base):
    """The README's recipe: the token in /etc/anomalyd/credentials/api_token, root's,
    mode 600. The service's uid cannot read that file (api_token_file pointing at it
    fails with Permission denied, the bug this replaces); through $CREDENTIALS_DIRECTORY,
    as systemd hands it over, the service starts and asks every client for the token."""
    token_file = unprivileged_base / "etc/anomalyd/credentials/api_token"
    token_file.write_text("s3cret-credential\n")
    os.chmod(token_file, 0o600)

    direct = unit_service(
        installed_unit, unprivileged_base, unprivileged_base, user=NOBODY
    )
    del direct.env["CREDENTIALS_DIRECTORY"]
    direct.env["ANOMALYD_API_TOKEN_FILE"] = str(token_file)
    with pytest.raises(RuntimeError, match="Permission denied"):
        direct.start(timeout=60)
    shutil.rmtree(unprivileged_base / "run/credentials")

    service = unit_service(
        installed_unit, unprivileged_base, unprivileged_base, user=NOBODY, hardened=True
    ).start()
    try:
        credential = Path(service.env["CREDENTIALS_DIRECTORY"]) / "anomalyd_api_token"
        assert credential.stat().st_uid == NOBODY
        assert requests.get(service.url + "/series", timeout=30).status_code == 401
        allowed = requests.get(
            service.url + "/series",
            headers={"Authorization": "Bearer s3cret-credential"},
            timeout=30,
        )
        assert allowed.status_code == 200, allowed.text
        assert requests.get(service.url + "/healthcheck", timeout=30).ok
        assert service.stop() == 0, service.output()
    finally:
        service.kill()

    checked = subprocess.run(
        [
            "/usr/bin/anomalyd",
            "check-config",
            "--config",
            "/etc/anomalyd/anomalyd.toml",
        ],
        check=False,
        capture_output=True,
        text=True,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        env={**service.env, "PATH": "/usr/bin:/bin"},
    )
    assert checked.returncode == 0, checked.stderr
    line = next(
        x for x in checked.stdout.splitlines() if x.startswith("api_token_file =")
    )
    assert str(credential) in line and "$CREDENTIALS_DIRECTORY" in line, line
    assert "s3cret" not in checked.stdout


@needs_analyze
def test_exposure_is_ok():
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        check=False,
        capture_output=True,
        text=True,
    )
    found = re.search(
        r"Overall exposure level for anomalyd\.service: (\d+\.\d+) (\w+)", done.stdout
    )
    assert found, done.stdout + done.stderr
    score, verdict = float(found.group(1)), found.group(2)
    print(f"\nsystemd-analyze security --offline=yes: exposure {score} {verdict}")
    assert score <= 2.0 and verdict == "OK"


@needs_analyze
def test_installed_unit_verifies_clean(installed_unit):
    assert installed_unit == UNIT.read_text()
    done = subprocess.run(
        ["systemd-analyze", "verify", str(INSTALLED_UNIT)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_mdwe_check_can_fail():
    """The control for the MemoryDenyWriteExecute test: a W+X mapping is refused."""
    if not mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    wx = "import mmap; mmap.mmap(-1, 4096, prot=7)"  # PROT_READ | WRITE | EXEC
    assert subprocess.run([sys.executable, "-c", wx], check=False).returncode == 0
    refused = subprocess.run(
        [sys.executable, "-c", wx],
        check=False,
        capture_output=True,
        text=True,
        preexec_fn=harden,
    )
    assert refused.returncode != 0 and "PermissionError" in refused.stderr


def test_exec_start_as_systemd_runs_it(installed_unit, unprivileged_base):
    """READY=1, a round trip, HUP reload, SIGTERM, and the data there on the next start,
    as an unprivileged uid under NoNewPrivileges and MemoryDenyWriteExecute."""
    if not mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3): cannot apply MDWE")

    def start() -> Service:
        return unit_service(
            installed_unit,
            unprivileged_base,
            unprivileged_base,
            user=NOBODY,
            hardened=True,
        ).start()

    service = start()
    try:
        assert "READY=1" in service.notified
        state = unprivileged_base / "var/lib/private/anomalyd"
        assert service.env["STATE_DIRECTORY"] == str(
            unprivileged_base / "var/lib/anomalyd"
        )
        first = round_trip(service.url, "unit-temp")
        assert (state / "data.mdb").stat().st_uid == NOBODY
        # A fresh install has no token: an empty credentials directory, no token asked.
        assert list(Path(service.env["CREDENTIALS_DIRECTORY"]).iterdir()) == []
        assert requests.get(service.url + "/series", timeout=30).status_code == 200

        # ExecReload: HUP replaces the workers; the service keeps answering.
        workers = _children(service.proc.pid)
        os.kill(service.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _children(service.proc.pid)
            if len(now) == 2 and not now & workers:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"workers not replaced after HUP: {service.output()}")
        second = round_trip(service.url, "unit-temp")
        assert series_versions(service.url, "unit-temp") == [first, second]

        assert service.stop() == 0, service.output()
        # KillMode=mixed would SIGKILL stragglers: there must be none to kill.
        with pytest.raises(ProcessLookupError):
            os.killpg(service.proc.pid, 0)
        shutil.rmtree(unprivileged_base / "run/anomalyd")  # as systemd does at stop

        service = start()
        assert series_versions(service.url, "unit-temp") == [first, second]
        assert service.stop() == 0, service.output()
    finally:
        service.kill()


def _children(pid: int) -> set[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True
    ).stdout
    return {int(p) for p in out.split()}


@needs_analyze
def test_socket_unit_hands_its_socket_to_gunicorn(installed_unit, unprivileged_base):
    """anomalyd.socket: verify clean; gunicorn serves on the socket it is given
    ($LISTEN_FDS, by systemd-socket-activate) and not on its own `bind`; the first
    request, made before anything was started, waits in the backlog and is answered."""
    socket_unit = ROOT / "systemd" / "anomalyd.socket"
    assert Path("/lib/systemd/system/anomalyd.socket").read_text() == (
        socket_unit.read_text()
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", "/lib/systemd/system/anomalyd.socket"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    if shutil.which("systemd-socket-activate") is None:
        pytest.skip("systemd-socket-activate not installed (.ci/run installs systemd)")

    service = unit_service(
        installed_unit, unprivileged_base, unprivileged_base, user=NOBODY
    )
    decoy = free_port()
    service.env["ANOMALYD_BIND"] = f"127.0.0.1:{decoy}"
    passed = [*service.env, "NOTIFY_SOCKET", "LANG"]
    service.argv = [
        "systemd-socket-activate",
        "-l",
        f"127.0.0.1:{service.port}",
        *(f"--setenv={name}" for name in passed),
        *service.argv,
    ]
    first: list[requests.Response] = []

    def knock() -> None:
        # Nothing runs anomalyd until a connection arrives, as with a .socket unit.
        deadline = time.monotonic() + 90
        while not first and time.monotonic() < deadline:
            try:
                first.append(requests.get(service.url + "/healthcheck", timeout=90))
            except requests.ConnectionError:  # not listening yet
                time.sleep(0.05)

    knocker = threading.Thread(target=knock)
    knocker.start()
    try:
        service.start()
        knocker.join(90)
        assert first and first[0].status_code == 200
        assert "READY=1" in service.notified
        round_trip(service.url, "socket-temp")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{decoy}/healthcheck", timeout=5)
        assert service.stop() == 0, service.output()
    finally:
        service.kill()
        knocker.join(90)


def test_exec_start_with_procsubset_pid(installed_unit, unprivileged_base):
    """ProcSubset=pid and ProtectProc=invisible: the service starts and serves with a
    /proc that holds only its own processes (no meminfo, cpuinfo, stat or sys), mounted
    as systemd mounts it, in a mount and PID namespace of its own."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("unshare/setpriv not installed (util-linux)")
    probe = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "sh", "-c", _MOUNT_PROC + " true"],
        check=False,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a subset=pid /proc here: {probe.stderr.strip()}")
    service = unit_service(
        installed_unit, unprivileged_base, unprivileged_base, hardened=True
    )
    os.chown(Path(service.env["STATE_DIRECTORY"]).resolve(), NOBODY, NOBODY)
    os.chown(service.env["RUNTIME_DIRECTORY"], NOBODY, NOBODY)
    os.chmod(unprivileged_base / "var/lib/private", 0o755)
    drop = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups --"
    service.argv = [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "sh",
        "-c",
        _MOUNT_PROC + f' test ! -e /proc/meminfo && exec {drop} "$@"',
        "sh",
        *service.argv,
    ]
    service.start()
    try:
        assert "READY=1" in service.notified
        round_trip(service.url, "procsubset-temp")
        (master,) = _children(service.proc.pid)  # sh exec'd setpriv exec'd the service
        os.kill(master, signal.SIGTERM)
        assert service.proc.wait(60) == 0, service.output()
    finally:
        service.kill()


_MOUNT_PROC = "mount -t proc -o subset=pid,hidepid=invisible proc /proc &&"
