"""bench/locustfile.py against a fresh, empty ``anomalyd serve``: every scenario at once
works (no failed request) and what it stores stays bounded."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USERS = [
    "PredictUser",
    "Batch100User",
    "Batch10kUser",
    "Fit100User",
    "Fit100kUser",
    "MixedUser",
    "PlotUser",
]


def disk_bytes(directory: Path) -> int:
    """Bytes the directory's files take on disk (LMDB's file is sparse)."""
    return sum(f.stat().st_blocks * 512 for f in directory.iterdir() if f.is_file())


def test_every_locust_scenario_works_against_an_empty_service(make_server, tmp_path):
    s = make_server()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ANOMALYD_", "BENCH_"))
    }
    prefix = tmp_path / "locust"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(len(USERS)),
            "-r",
            str(len(USERS)),
            "-t",
            "12s",
            "--stop-timeout",
            "30",
            "--host",
            s.url,
            "--csv",
            str(prefix),
            "--only-summary",
            *USERS,
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    with open(f"{prefix}_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    with open(f"{prefix}_failures.csv") as f:
        failures = [
            f"{r['Occurrences']} x {r['Error'][:200]}" for r in csv.DictReader(f)
        ]
    assert failures == [], failures
    assert int(rows["Aggregated"]["Failure Count"]) == 0, run.stderr[-2000:]
    # Every scenario's request ran.
    for name in (
        "/predict/[id]",
        "/predict/[id]/batch (100)",
        "/predict/[id]/batch (10000)",
        "/fit/[id] (100)",
        "/fit/[id] (100000)",
        "/plot?series_id=[id]",
    ):
        assert int(rows[name]["Request Count"]) > 0, (name, sorted(rows))
    # The fitting users cycle through few series: bounded versions, then stop and
    # delete what they made.
    fits = int(rows["/fit/[id] (100)"]["Request Count"])
    assert fits > 4 * 4, "too few fits to reach the bound"
    assert int(rows["/series/[id] DELETE (bound)"]["Request Count"]) > 0
    listed = s.get("/series?limit=1000").json()["series"]
    assert listed == [], listed  # each user deleted its series when it stopped
    # A few 100,000-point versions at most: far below one per fit.
    used = disk_bytes(s.data_dir)
    print(
        f"{rows['Aggregated']['Request Count']} requests, data {used / 2**20:.1f} MiB"
    )
    assert used < 48 * 2**20, used
