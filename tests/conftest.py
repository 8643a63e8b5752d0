"""Shared fixtures: a real ``anomalyd serve`` (gunicorn, 2 workers) on a temporary LMDB."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``anomalyd serve`` process group, started and stopped by the test."""

    def __init__(
        self,
        data_dir: Path,
        workers: int = 2,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.extra = extra or []
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()

    def start(self, timeout: float = 30.0) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
        env.update(self.env)
        # Open for the server's lifetime; closed in stop().
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "anomalyd",
                "serve",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--data-dir",
                str(self.data_dir),
                *self.extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"anomalyd exited with {self.proc.returncode}")
            try:
                if requests.get(self.url + "/healthcheck", timeout=1).ok:
                    self._wait_workers(deadline)
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or listening while the workers boot
            time.sleep(0.05)
        raise RuntimeError("anomalyd did not start")

    def _wait_workers(self, deadline: float) -> None:
        while time.monotonic() < deadline and len(self.worker_pids()) < self.workers:
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)],
            check=False,
            capture_output=True,
            text=True,
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        if sig == signal.SIGKILL:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.session.close()
            self.log.close()

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return self.session.post(self.url + path, json=body, timeout=60, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.url + path, timeout=60, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.session.delete(self.url + path, timeout=60, **kw)


@pytest.fixture
def make_server(tmp_path):
    started: list[Server] = []

    def make(data_dir: Path | None = None, **kw) -> Server:
        server = Server(data_dir or tmp_path / "data", **kw).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("anomalyd") / "data").start()
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/test_browser.py's driver), one per test module."""
    import tempfile

    from test_browser import CHROMIUM, Browser

    if CHROMIUM is None:
        # Visible in the -ra summary; CI installs chromium in .ci/run, so it runs there.
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="anomalyd-chromium-") as tmp:
        profile = Path(tmp) / "profile"
        profile.mkdir()
        b = Browser(profile)
        try:
            yield b
        finally:
            b.close()
