"""Write docs/plot.png, docs/stream.png and docs/dashboard.png from a real
``anomalyd serve``.

``make screenshots`` runs it: it starts the service on a free port with a temporary
LMDB directory (keeping 30,000 points of each stream's history, so the sample's plot
shows it whole), fits the NAB machine-temperature sample (tests/sample/) twice (the
default 3sigma rule, then robust with both bounds) plus two small series, replays the
sample into a stream with ``anomalyd replay`` (and into a second one that alerts only
on drops, and its hourly means into a third), and has headless Chromium screenshot the
version's plot, the stream's plot and the dashboard. Needs ``chromium`` (Debian:
``apt-get install chromium``).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "sample" / "machine_temperature_system_failure.csv"
DOCS = ROOT / "docs"
SERIES = "machine_temperature"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_sample() -> tuple[list[int], list[float]]:
    with SAMPLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    timestamps = [
        int(
            dt.datetime.fromisoformat(r["timestamp"]).replace(tzinfo=dt.UTC).timestamp()
        )
        for r in rows
    ]
    return timestamps, [float(r["value"]) for r in rows]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"anomalyd exited with {proc.returncode}")
        try:
            if requests.get(url + "/healthcheck", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    sys.exit("anomalyd did not start")


def screenshot(chromium: str, url: str, out: Path, size: str, profile: str) -> None:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes) from {url}")


def streams(url: str, hourly: dict) -> None:
    """The sample replayed into streams by the replay command, as the README does."""
    requests.put(
        f"{url}/streams/{SERIES}.drops", json={"direction": "lower"}, timeout=60
    ).raise_for_status()
    for name in (SERIES, f"{SERIES}.drops"):
        subprocess.run(
            [sys.executable, "-m", "anomalyd", "replay", str(SAMPLE), "--series", name]
            + ["--url", url, "--out-of-order", "clamp"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    requests.post(
        f"{url}/observe/{SERIES}.hourly/batch", json=hourly, timeout=60
    ).raise_for_status()


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (Debian: apt-get install chromium)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="anomalyd-screenshots-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "anomalyd", "serve", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", "2", "--data-dir", f"{tmp}/data"]
            + ["--stream-history", "30000"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_up(url, proc)
            timestamps, values = load_sample()
            body = {"timestamps": timestamps, "values": values}
            for detector in (None, {"kind": "robust", "direction": "both"}):
                fit = requests.post(
                    f"{url}/fit/{SERIES}",
                    json=body | ({"detector": detector} if detector else {}),
                    timeout=60,
                )
                fit.raise_for_status()
            # A few more rows for the dashboard: hourly means of the same sensor.
            hours = {}
            for t, v in zip(timestamps, values):
                hours.setdefault(t // 3600 * 3600, []).append(v)
            hourly = {
                "timestamps": list(hours),
                "values": [sum(v) / len(v) for v in hours.values()],
            }
            for name, detector in (
                ("machine_temperature.hourly", {"kind": "3sigma", "direction": "both"}),
                ("machine_temperature.hourly_robust", {"kind": "robust", "k": 2.5}),
            ):
                requests.post(
                    f"{url}/fit/{name}",
                    json=hourly | {"detector": detector},
                    timeout=60,
                ).raise_for_status()
            streams(url, hourly)
            screenshot(
                chromium,
                f"{url}/plot?stream={SERIES}",
                DOCS / "stream.png",
                "1000,500",
                f"{tmp}/profile",
            )
            screenshot(
                chromium,
                f"{url}/plot?series_id={SERIES}&version=v2",
                DOCS / "plot.png",
                "1000,500",
                f"{tmp}/profile",
            )
            screenshot(
                chromium,
                f"{url}/",
                DOCS / "dashboard.png",
                "1100,600",
                f"{tmp}/profile",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
