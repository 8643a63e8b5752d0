"""Start time of the zipapp: exec to the first 200 from /healthcheck (2 workers).

Cold: an empty SHIV_ROOT, so shiv first extracts the bundled site-packages. Warm: the
same SHIV_ROOT again. Run by /usr/bin/python3 from an empty directory, as a host would.

    .venv/bin/python bench/zipapp_start.py dist/anomalyd-0.1.0.pyz [runs]
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_ready(pyz: Path, shiv_root: Path, workdir: Path) -> float:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "SHIV_ROOT": str(shiv_root), "HOME": str(workdir)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(pyz), "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthcheck", timeout=1
                ) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - started
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with {proc.returncode}") from None
                time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    pyz = Path(sys.argv[1]).resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    cold, warm = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp) / "run"
            workdir.mkdir()
            shiv_root = Path(tmp) / "shiv"
            cold.append(time_to_ready(pyz, shiv_root, workdir))
            shutil.rmtree(workdir / "data")
            warm.append(time_to_ready(pyz, shiv_root, workdir))
    size = os.path.getsize(pyz)
    print(f"{pyz.name}: {size / 1e6:.1f} MB, {runs} runs each, median (min-max)")
    for name, found in (("cold (extracts)", cold), ("warm", warm)):
        print(
            f"  {name:16s} {statistics.median(found):.2f} s "
            f"({min(found):.2f}-{max(found):.2f})"
        )


if __name__ == "__main__":
    main()
