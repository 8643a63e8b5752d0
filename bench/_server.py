"""Start and stop a real `anomalyd serve` for the scripts in bench/."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Anomalyd:
    def __init__(self, *flags: str, data_dir: str | None = None) -> None:
        self.tmp = tempfile.mkdtemp(prefix="anomalyd-bench-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.flags = flags

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "anomalyd",
                "serve",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                self.data_dir,
                *self.flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthcheck", timeout=1)
                time.sleep(1.0)  # let every worker finish booting
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("anomalyd did not start")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        shutil.rmtree(self.tmp, ignore_errors=True)
