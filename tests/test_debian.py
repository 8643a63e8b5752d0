"""The .deb on a fresh Debian 12 (bookworm, Python 3.11) and Debian 13 (trixie, 3.13),
as a user would install it: a minimal system made by debootstrap into a folder,
`dpkg -i` then `apt-get -f install` inside a chroot, `anomalyd --version`,
`check-config`, and the packaged ExecStart serving a fit and a predict to the host over
loopback, as an unprivileged uid. Then an upgrade to a second version and a purge,
which must leave nothing behind.

Needs root, debootstrap and the Debian mirror (CI runs as root; .ci/run installs
debootstrap). One chroot per release per session, unmounted and deleted afterwards.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from shipping import (
    NOBODY,
    PACKAGE,
    VERSION,
    Service,
    build,
    build_version,
    free_port,
    round_trip,
    series_versions,
    unit_settings,
    unowned_files,
)

MIRROR = "http://deb.debian.org/debian"
# Debian release -> the Python 3 it ships.
RELEASES = {"bookworm": "(3, 11)", "trixie": "(3, 13)"}
UPGRADE = VERSION + ".post1"
TIMINGS: dict[str, float] = {}
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root for debootstrap, chroot and mount (CI runs as root)"
    for tool in ("debootstrap", "dpkg-deb", "dpkg-shlibdeps", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (.ci/run installs it)"
    return None


class Chroot:
    def __init__(self, release: str, root: Path) -> None:
        self.release = release
        self.root = root

    def run(
        self, *argv: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [CHROOT, str(self.root), *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/root",
                "LANG": "C.UTF-8",
                "DEBIAN_FRONTEND": "noninteractive",
            },
        )
        if check:
            assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        return done

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def installed(self) -> bool:
        status = self.run("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False)
        return status.stdout.endswith(" installed")

    def install(self, deb: Path) -> None:
        shutil.copy2(deb, self.path("/tmp") / deb.name)
        self.run("dpkg", "-i", f"/tmp/{deb.name}", check=False)  # may lack python3
        self.run("apt-get", "-f", "install", "-y", "-q", "--no-install-recommends")
        assert self.installed()

    def serve(self) -> Service:
        """The installed unit's ExecStart, inside the chroot, as uid 65534, with the
        directories systemd would make (DynamicUser layout) and an empty credentials
        directory (no token), bound to a loopback port the host reaches."""
        unit = unit_settings(
            self.path("/lib/systemd/system/anomalyd.service").read_text()
        )
        (exec_start,) = unit["ExecStart"]
        private = self.path("/var/lib/private")
        private.mkdir(mode=0o755, exist_ok=True)
        os.chmod(private, 0o755)  # as the service sees it in its own namespace
        state = private / "anomalyd"
        state.mkdir(mode=0o700, exist_ok=True)
        for path in [state, *state.rglob("*")]:  # as systemd re-owns it at start
            os.chown(path, NOBODY, NOBODY)
        if not self.path("/var/lib/anomalyd").is_symlink():
            self.path("/var/lib/anomalyd").symlink_to("private/anomalyd")
        runtime = self.path("/run/anomalyd")
        shutil.rmtree(runtime, ignore_errors=True)  # systemd empties it at each start
        runtime.mkdir(mode=0o700)
        os.chown(runtime, NOBODY, NOBODY)
        credentials = self.path("/run/credentials/anomalyd.service")
        credentials.mkdir(parents=True, exist_ok=True)
        argv = [CHROOT, f"--userspec={NOBODY}:{NOBODY}", str(self.root)]
        service = Service([*argv, *shlex.split(exec_start)], self.path("/run"), {})
        service.env.update(
            {
                "STATE_DIRECTORY": "/var/lib/anomalyd",
                "RUNTIME_DIRECTORY": "/run/anomalyd",
                "CREDENTIALS_DIRECTORY": "/run/credentials/anomalyd.service",
                "NOTIFY_SOCKET": f"/run/notify-{service.port}",
            }
        )
        return service.start(timeout=120)


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> tuple[Path, Path]:
    """This tree's .deb, and the same numbered UPGRADE: a release to upgrade to."""
    missing = _missing()
    if missing:
        pytest.skip(missing)
    _, deb = build(tmp_path_factory)
    started = time.monotonic()
    _, upgrade = build_version(tmp_path_factory, UPGRADE)
    TIMINGS["second build (zipapp + .deb)"] = time.monotonic() - started
    return deb, upgrade


@pytest.fixture(scope="session", params=list(RELEASES))
def chroot(request, tmp_path_factory, packages):
    """A minimal Debian RELEASE in a folder, /proc mounted; deleted after the session."""
    release = request.param
    root = tmp_path_factory.mktemp(f"debian-{release}")
    os.chmod(root, 0o755)  # it becomes "/" for the unprivileged service
    started = time.monotonic()
    made = subprocess.run(
        ["debootstrap", "--variant=minbase", release, str(root), MIRROR],
        check=False,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert made.returncode == 0, f"debootstrap {release}: {made.stdout[-3000:]}"
    TIMINGS[f"debootstrap {release}"] = time.monotonic() - started
    proc = root / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    try:
        yield Chroot(release, root)
    finally:
        _kill_inside(root)
        subprocess.run(["umount", str(proc)], check=False)
        mounted = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(root))
        ]
        assert not mounted, f"still mounted, {root} not deleted: {mounted}"
        shutil.rmtree(root)
        TIMINGS[f"chroot {release}, debootstrap to deletion"] = (
            time.monotonic() - started
        )
        plugins = request.config.pluginmanager
        reporter = plugins.get_plugin("terminalreporter")
        with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
            for what, seconds in TIMINGS.items():
                if release in what or "build" in what:
                    reporter.write_line(f"test_debian: {what}: {seconds:.0f} s")


def _kill_inside(root: Path) -> None:
    """SIGKILL any process whose root directory is the chroot (a test that failed)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/root") == str(root):
                os.kill(int(pid), 9)
        except OSError:
            continue


def test_installs_and_serves(chroot, packages, tmp_path):
    deb, _ = packages
    started = time.monotonic()
    chroot.install(deb)
    TIMINGS[f"install on {chroot.release} (dpkg -i, apt-get -f install)"] = (
        time.monotonic() - started
    )
    python = chroot.run("python3", "-c", "import sys; print(sys.version_info[:2])")
    assert python.stdout.strip() == RELEASES[chroot.release]

    version = chroot.run("anomalyd", "--version")
    assert version.stdout.strip() == f"anomalyd {VERSION}", version.stdout
    checked = chroot.run(
        "anomalyd", "check-config", "--config", "/etc/anomalyd/anomalyd.toml"
    )
    assert "workers = 2" in checked.stdout, checked.stdout
    # Run by hand as root: nothing unpacked into root's home or a cache.
    assert not chroot.path("/root/.shiv").exists()
    assert not chroot.path("/var/cache/anomalyd").exists()

    service = chroot.serve()
    try:
        assert "READY=1" in service.notified
        round_trip(service.url, f"debian-{chroot.release}")
        assert service.stop() == 0, service.output()
    finally:
        service.kill()
    assert (chroot.path("/var/lib/private/anomalyd") / "data.mdb").is_file()


def test_booted_under_systemd_with_and_without_a_token(chroot):
    """The release's own systemd (252 on Debian 12, 257 on 13) as PID 1 of a container
    (systemd-nspawn) booting the chroot: the enabled unit starts as a dynamic uid under
    its whole sandbox with no token (a fresh install: an empty credentials directory),
    then, with /etc/anomalyd/credentials/api_token written (root's, 0600) and the unit
    restarted, asks every client for that token."""
    if shutil.which("systemd-nspawn") is None or shutil.which("nsenter") is None:
        pytest.skip("systemd-nspawn not installed (.ci/run installs systemd-container)")
    if not chroot.installed():
        pytest.skip("anomalyd is not installed: see test_installs_and_serves")
    chroot.run(
        "apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd-sysv"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dropin = chroot.path("/etc/systemd/system/anomalyd.service.d/test.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(f"[Service]\nEnvironment=ANOMALYD_BIND=127.0.0.1:{port}\n")
    assert chroot.path(
        "/etc/systemd/system/multi-user.target.wants/anomalyd.service"
    ).is_symlink(), "postinst did not enable the unit"
    verified = chroot.run(
        "systemd-analyze", "verify", "/lib/systemd/system/anomalyd.service"
    )
    assert not verified.stderr.strip(), verified.stderr

    subprocess.run(["umount", str(chroot.path("/proc"))], check=True)
    log = chroot.path("/tmp/nspawn.log").open("wb")
    boot = subprocess.Popen(
        ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot"]
        + ["--directory", str(chroot.root)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def inside(*argv: str) -> subprocess.CompletedProcess:
        (init,) = subprocess.run(
            ["pgrep", "-P", str(boot.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        return subprocess.run(
            ["nsenter", "-t", init, "-m", "-u", "-i", "-p", "-r", "-w", *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def journal() -> str:
        return inside("journalctl", "-u", "anomalyd", "--no-pager", "-n", "40").stdout

    try:
        _wait_healthy(url, boot, journal)
        assert inside("systemctl", "is-active", "anomalyd").stdout.strip() == "active"
        assert requests.get(f"{url}/series", timeout=30).status_code == 200
        pid = inside("systemctl", "show", "-P", "MainPID", "anomalyd").stdout.strip()
        status = inside("cat", f"/proc/{pid}/status").stdout
        uid = int(
            next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1]
        )
        assert 61184 <= uid <= 65519, status  # DynamicUser's range, not root

        token = chroot.path("/etc/anomalyd/credentials/api_token")
        token.write_text("s3cret-booted\n")
        os.chmod(token, 0o600)
        restarted = inside("systemctl", "restart", "anomalyd")
        assert restarted.returncode == 0, restarted.stderr + journal()
        _wait_healthy(url, boot, journal)
        assert requests.get(f"{url}/series", timeout=30).status_code == 401
        allowed = requests.get(
            f"{url}/series",
            headers={"Authorization": "Bearer s3cret-booted"},
            timeout=30,
        )
        assert allowed.status_code == 200, allowed.text + journal()
        version = round_trip_with_token(url, "s3cret-booted")
        assert version, journal()
    finally:
        if boot.poll() is None:
            inside("systemctl", "poweroff")
            try:
                boot.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(boot.pid, 9)
                boot.wait()
        log.close()
        token = chroot.path("/etc/anomalyd/credentials/api_token")
        token.unlink(missing_ok=True)
        dropin.unlink(missing_ok=True)
        proc = chroot.path("/proc")
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)


def _wait_healthy(url: str, boot: subprocess.Popen, journal) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert boot.poll() is None, "the container stopped"
        try:
            if requests.get(f"{url}/healthcheck", timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail(f"anomalyd never answered under systemd: {journal()}")


def round_trip_with_token(url: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    fit = requests.post(
        f"{url}/fit/booted",
        json={"timestamps": [1, 2, 3, 4], "values": [1.0, 2.0, 1.5, 1.2]},
        headers=headers,
        timeout=60,
    )
    assert fit.status_code == 200, fit.text
    predict = requests.post(
        f"{url}/predict/booted",
        json={"timestamp": 5, "value": 50.0},
        headers=headers,
        timeout=60,
    )
    assert predict.status_code == 200 and predict.json()["anomaly"], predict.text
    return fit.json()["version"]


def test_upgrade_then_purge_leave_nothing_behind(chroot, packages, tmp_path):
    """dpkg -i of the next version over the first keeps the store and leaves no file of
    the old one (nor the caches earlier packages unpacked themselves into); --purge
    removes everything the package made."""
    _, upgrade = packages
    if not chroot.installed():
        pytest.skip("the first version is not installed: see test_installs_and_serves")
    # What a package before this one left: the zipapp unpacked for the service and for
    # root running it by hand, 67 MB each, one per version (stand-ins).
    for legacy in ("/var/cache/private/anomalyd", "/root/.shiv"):
        stale = chroot.path(legacy) / "anomalyd.pyz_0123abcd/site-packages"
        stale.mkdir(parents=True)
        (stale / "numpy.py").write_text("")
    chroot.path("/var/cache/anomalyd").symlink_to("private/anomalyd")

    chroot.install(upgrade)
    version = chroot.run("anomalyd", "--version")
    assert version.stdout.strip() == f"anomalyd {UPGRADE}"
    assert unowned_files("/usr/lib/anomalyd", str(chroot.root)) == []
    for gone in ("/var/cache/anomalyd", "/var/cache/private/anomalyd", "/root/.shiv"):
        path = chroot.path(gone)
        assert not path.exists() and not path.is_symlink(), f"{gone} survived upgrade"
    # Bytecode only for sources that exist (none of the old version's is left).
    for pyc in chroot.path("/usr/lib/anomalyd").rglob("__pycache__/*.pyc"):
        source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
        assert source.exists(), pyc

    service = chroot.serve()
    try:
        series = f"debian-{chroot.release}"
        assert len(series_versions(service.url, series)) == 1  # the store was kept
        round_trip(service.url, series)
        assert service.stop() == 0, service.output()
    finally:
        service.kill()
    shutil.rmtree(chroot.path("/run/anomalyd"))

    chroot.run("dpkg", "--purge", PACKAGE)
    for gone in (
        "/usr/lib/anomalyd",
        "/usr/bin/anomalyd",
        "/var/lib/private/anomalyd",
        "/var/lib/anomalyd",
        "/var/cache/anomalyd",
        "/etc/anomalyd",
        "/root/.shiv",
        "/etc/systemd/system/multi-user.target.wants/anomalyd.service",
    ):
        path = chroot.path(gone)
        assert not path.exists() and not path.is_symlink(), f"{gone} survived purge"
