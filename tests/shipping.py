"""Helpers for the packaging tests: build the artifacts once, run them as systemd would.

Not a conftest: only tests/test_packaging.py, tests/test_systemd.py and
tests/test_debian.py use it.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "anomalyd.service"
VERSION = re.search(
    r'__version__ = "([^"]+)"', (ROOT / "anomalyd" / "__init__.py").read_text()
).group(1)
PACKAGE = "anomalyd"
# An unprivileged uid standing in for DynamicUser's.
NOBODY = 65534

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


_built: dict[int, tuple[Path, Path]] = {}


def build(tmp_path_factory) -> tuple[Path, Path]:
    """Build the zipapp and the .deb once per session (the factory is per session) with
    the same scripts as `make package`, from the working tree: never a stale dist/."""
    if id(tmp_path_factory) not in _built:
        _built[id(tmp_path_factory)] = _build(tmp_path_factory.mktemp("dist"))
    return _built[id(tmp_path_factory)]


def _build(out: Path, root: Path = ROOT, version: str = VERSION) -> tuple[Path, Path]:
    env = {**os.environ, "PYTHON": sys.executable, "DIST": str(out), "BUILD": str(out)}
    for script in ("build_pyz.sh", "build_deb.sh"):
        done = subprocess.run(
            ["sh", str(root / "packaging" / script)],
            cwd=root,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
    return out / f"anomalyd-{version}.pyz", out / f"anomalyd_{version}_amd64.deb"


def unit_settings(text: str) -> dict[str, list[str]]:
    """The [Service] lines of a unit: key -> every value, in order."""
    found: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def mdwe_supported() -> bool:
    """Whether the kernel has PR_SET_MDWE (6.3+), probed in a throwaway child."""
    probe = (
        "import ctypes,sys; libc = ctypes.CDLL(None, use_errno=True); "
        f"sys.exit(libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0))"
    )
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def harden() -> None:
    """preexec_fn: NoNewPrivileges=yes and MemoryDenyWriteExecute=yes, from the kernel.

    PR_SET_MDWE is the kernel's own form of MemoryDenyWriteExecute (systemd uses it where
    the kernel has it): no mapping may become writable and executable, inherited across
    fork and exec.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE")


class Service:
    """A command run as systemd runs a Type=notify service, and the datagrams it sends.

    ``dirs`` maps "state", "runtime", "cache", "configuration" to the directories systemd
    would create; they are exported as $STATE_DIRECTORY etc., and %C/%S/%t in the unit's
    Environment= lines expand to their parents.
    """

    def __init__(
        self,
        argv: list[str],
        workdir: Path,
        env: dict[str, str],
        cwd: Path | None = None,
        user: int | None = None,
        hardened: bool = False,
    ) -> None:
        self.argv = argv
        self.workdir = workdir
        self.env = env
        self.cwd = cwd or workdir
        self.user = user
        self.hardened = hardened
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.notified: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Service:
        notify_path = self.workdir / f"notify-{self.port}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify_path))
        os.chmod(notify_path, 0o777)  # the service may run as another uid
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "NOTIFY_SOCKET": str(notify_path),
            "ANOMALYD_BIND": f"127.0.0.1:{self.port}",
            **self.env,
        }
        self.log_path = self.workdir / f"service-{self.port}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            umask=0o077,
            # Only prctl() between fork and exec: safe with threads about.
            preexec_fn=harden if self.hardened else None,  # noqa: PLW1509
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while "READY=1" not in self.notified:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"exited with {self.proc.returncode}: {self.output()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"no READY=1 within {timeout}s: {self.output()}")
            self.notify.settimeout(0.5)
            try:
                datagram = self.notify.recv(4096).decode()
            except TimeoutError:
                continue
            self.notified.extend(datagram.split("\n"))
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthcheck", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"READY=1 but /healthcheck never answered: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM to the main process only, as KillMode=mixed does; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.notify.close()
            self.log.close()

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group; close the socket and log."""
        if self.proc is not None:
            try:  # workers may outlive a master that died
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for opened in ("notify", "log"):
            if hasattr(self, opened):
                getattr(self, opened).close()


def unit_service(unit_text: str, base: Path, workdir: Path, **kw) -> Service:
    """The unit's own ExecStart and Environment=, with systemd's directories under base,
    run from / as systemd does; the notify socket and the log go into workdir.

    The layout is DynamicUser's: /var/lib/private/NAME with /var/lib/NAME linking to it
    (the same for the cache), /run/NAME plain. Outside the service's mount namespace
    private/ is 0700 root; a test running the service as another uid makes it 0755, as
    the service itself sees it.
    """
    settings = unit_settings(unit_text)
    (exec_start,) = settings["ExecStart"]
    user = kw.get("user")
    roots = {
        "state": base / "var/lib",
        "runtime": base / "run",
        "cache": base / "var/cache",
    }
    env = {}
    for kind, key in (
        ("state", "StateDirectory"),
        ("runtime", "RuntimeDirectory"),
        ("cache", "CacheDirectory"),
    ):
        if key not in settings:
            continue
        (name,) = settings[key]
        path = roots[kind] / name
        if kind == "runtime":
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            real = path
        else:
            private = roots[kind] / "private"
            private.mkdir(
                parents=True, exist_ok=True, mode=0o700 if user is None else 0o755
            )
            real = private / name
            real.mkdir(exist_ok=True, mode=0o700)
            if not path.is_symlink():
                path.symlink_to(Path("private") / name)
        if user is not None:
            os.chown(real, user, user)
        env[f"{kind.upper()}_DIRECTORY"] = str(path)
    (name,) = settings["ConfigurationDirectory"]
    env["CONFIGURATION_DIRECTORY"] = f"/etc/{name}"
    specifiers = {
        "%C": str(roots["cache"]),
        "%S": str(roots["state"]),
        "%t": str(roots["runtime"]),
        "%E": "/etc",
        "%%": "%",
    }
    credentials = load_credentials(settings, base, user)
    if credentials is not None:
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
    for line in settings.get("Environment", []):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            env[key] = re.sub(r"%[CStE%]", lambda m: specifiers[m.group(0)], value)
    return Service(shlex.split(exec_start), workdir, env, cwd=Path("/"), **kw)


def load_credentials(
    settings: dict[str, list[str]], base: Path, user: int | None
) -> Path | None:
    """$CREDENTIALS_DIRECTORY as systemd fills it from the unit's LoadCredential= lines
    (sources read under base): ID:FILE gives the credential ID, ID:DIRECTORY one
    credential ID_NAME per file in it, a missing source stops the start. Each copy is
    0400 and owned by the service's uid, the originals stay as they are."""
    lines = settings.get("LoadCredential", [])
    if not lines:
        return None
    found: dict[str, bytes] = {}
    for line in lines:
        cred_id, _, source = line.partition(":")
        path = base / source.lstrip("/")
        if path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.is_file():
                    found[f"{cred_id}_{entry.name}"] = entry.read_bytes()
        elif path.is_file():
            found[cred_id] = path.read_bytes()
        else:
            raise RuntimeError(f"LoadCredential={line}: {path} missing: no start")
    directory = base / "run/credentials/anomalyd.service"
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in found.items():
        target = directory / name
        target.write_bytes(data)
        os.chmod(target, 0o400)
        if user is not None:
            os.chown(target, user, user)
    os.chmod(directory, 0o500)
    if user is not None:
        os.chown(directory, user, user)
    return directory


def find_python(minor: str) -> str | None:
    """An interpreter of CPython 3.<minor>: on PATH, in /usr/bin or in pyenv's versions."""
    name = f"python3.{minor}"
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")]
    candidates += sorted(pyenv.glob(f"3.{minor}.*/bin/{name}"), reverse=True)
    for found in candidates:
        if found and os.access(found, os.X_OK) and "shims" not in str(found):
            return str(found)
    return None


def build_version(tmp_path_factory, version: str) -> tuple[Path, Path]:
    """The zipapp and .deb of this tree, but numbered ``version``: a second release to
    upgrade to. Built from a copy with anomalyd.__version__ changed, by the same scripts."""
    copy = tmp_path_factory.mktemp("release")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    for name in ("anomalyd", "packaging", "systemd", "docs"):
        shutil.copytree(
            ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    init = copy / "anomalyd" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{VERSION}"', f'"{version}"'))
    return _build(tmp_path_factory.mktemp("dist"), copy, version)


def round_trip(url: str, series_id: str) -> str:
    """Fit a series and check a predict against it; the version the fit got."""
    timestamps = list(range(1_700_000_000, 1_700_000_000 + 60 * 50, 60))
    values = [20.0 + (i % 7) * 0.5 for i in range(50)]
    fit = requests.post(
        f"{url}/fit/{series_id}",
        timeout=60,
        json={"timestamps": timestamps, "values": values},
    )
    assert fit.status_code == 200, fit.text
    version = fit.json()["version"]
    predict = requests.post(
        f"{url}/predict/{series_id}",
        timeout=60,
        json={"timestamp": timestamps[-1] + 60, "value": 99.0},
    )
    assert predict.status_code == 200, predict.text
    assert predict.json()["anomaly"] is True
    assert predict.json()["model_version"] == version
    return version


def series_versions(url: str, series_id: str) -> list[str]:
    found = requests.get(f"{url}/series/{series_id}", timeout=60)
    assert found.status_code == 200, found.text
    return [v["version"] for v in found.json()["versions"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dpkg(*args: str) -> subprocess.CompletedProcess:
    """dpkg, waiting out another apt/dpkg run holding the lock."""
    deadline = time.monotonic() + 300
    while True:
        done = subprocess.run(
            ["dpkg", *args], check=False, capture_output=True, text=True
        )
        if "lock" not in done.stderr or time.monotonic() > deadline:
            assert done.returncode == 0, done.stdout + done.stderr
            return done
        time.sleep(2)


def unowned_files(directory: str, root: str = "/") -> list[str]:
    """Files under directory (inside root) that no package owns, but for the bytecode
    postinst compiles (prerm removes it)."""
    owned = set(
        subprocess.run(
            [shutil.which("chroot") or "/usr/sbin/chroot", root, "dpkg", "-L", PACKAGE],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    )
    found = []
    for path in (Path(root) / directory.lstrip("/")).rglob("*"):
        inside = "/" + str(path.relative_to(root))
        if "__pycache__" in path.parts or path.is_dir():
            continue
        if inside not in owned:
            found.append(inside)
    return found
