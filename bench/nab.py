"""Replay a NAB-layout folder through the streams' online detector and score it.

    .venv/bin/python bench/nab.py                      # ../shared/nab, shipped threshold
    .venv/bin/python bench/nab.py --nab DIR --threshold 0.5 --per-file
    .venv/bin/python bench/nab.py --write-scores /tmp/online.json
    python3 ../shared/nab/score.py --scores /tmp/online.json --threshold 0.5

Each file is replayed from its first row, in batches (``--batch``, default 1,000 points)
through ``anomalyd.online.observe`` in this process, one stream per file, with the
shipped threshold, direction and warm-up (no per-file tuning). Scoring is done by the
folder's own ``score.py`` (imported from it), so the figures are NAB's: the three
profiles with the fixed threshold, then the threshold sweep for reference (in-sample,
optimistic). Points inside the warm-up are given score 0, as the service never calls
them anomalies. Also prints the detector's time per point and its state size.

A row whose timestamp is earlier than the row before it (one row of NAB's
machine_temperature file) is sent with the previous row's timestamp: a stream refuses
points that go back in time, and the detector only uses timestamps for their order.

``--mode http`` replays the same points through a real ``anomalyd serve`` (default
settings, a temporary data directory, started here): one stream per file, POST
/observe/{id}/batch in batches of ``--http-batch`` (default 100), four files at a
time, and scores the answers the service gave. ``--mode both`` does both and checks
that every score is the same, bit for bit, in process and over HTTP.

    .venv/bin/python bench/nab.py --mode both
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from anomalyd import online

DEFAULT_NAB = ROOT.parent / "shared" / "nab"
BUDGET_US = 20.0  # issue 11: at most 20 us per point in batches of 1,000


def load_scorer(nab_dir: Path):
    """NAB's score.py from the folder itself, so our figures are its figures."""
    spec = importlib.util.spec_from_file_location("nab_score", nab_dir / "score.py")
    if spec is None or spec.loader is None:
        sys.exit(f"no score.py in {nab_dir}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (Unix seconds, never going back) and values of one NAB data file."""
    stamps: list[int] = []
    values: list[float] = []
    with open(path, newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        last = -(2**63)
        for row in rows:
            if not row:
                continue
            when = datetime.datetime.fromisoformat(row[0]).replace(tzinfo=datetime.UTC)
            t = max(int(when.timestamp()), last)
            last = t
            stamps.append(t)
            values.append(float(row[1]))
    return np.array(stamps, dtype=np.int64), np.array(values, dtype=np.float64)


def load_corpus(nab_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with open(nab_dir / "labels" / "combined_windows.json") as fh:
        files = sorted(json.load(fh))
    return {rel: read_series(nab_dir / "data" / rel) for rel in files}


def replay_in_process(
    stamps: np.ndarray, values: np.ndarray, direction: str, batch: int, warmup: int
) -> tuple[np.ndarray, float]:
    """Scores of one file replayed through the detector, and the seconds spent in it."""
    state = online.new_state()
    parts = []
    spent = 0.0
    for start in range(0, values.size, batch):
        t0 = time.perf_counter()
        state, scores = online.observe(
            state,
            stamps[start : start + batch],
            values[start : start + batch],
            direction,
        )
        spent += time.perf_counter() - t0
        parts.append(scores)
    scores = np.concatenate(parts)
    scores[:warmup] = 0.0
    return scores, spent


def stream_id(rel: str) -> str:
    """A stream id for a NAB file: ``realKnownCause:machine_temperature...csv``."""
    return rel.replace("/", ":")


def replay_http(
    corpus: dict, direction: str, batch: int, warmup: int
) -> tuple[dict[str, np.ndarray], float]:
    """Scores of every file replayed through a real ``anomalyd serve``, and the
    seconds the replay took (wall clock, four files at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from _server import Anomalyd

    def replay(url: str, rel: str, stamps: np.ndarray, values: np.ndarray):
        stream = stream_id(rel)
        scores: list[float] = []
        with requests.Session() as session:
            put = session.put(f"{url}/streams/{stream}", json={"direction": direction})
            put.raise_for_status()
            for start in range(0, values.size, batch):
                body = {
                    "timestamps": stamps[start : start + batch].tolist(),
                    "values": values[start : start + batch].tolist(),
                }
                r = session.post(f"{url}/observe/{stream}/batch", json=body, timeout=60)
                if r.status_code != 200:
                    raise RuntimeError(
                        f"{rel} at row {start}: {r.status_code} {r.text}"
                    )
                scores += r.json()["score"]
        out = np.array(scores, dtype=np.float64)
        out[:warmup] = 0.0
        return rel, out

    with Anomalyd() as server, ThreadPoolExecutor(4) as pool:
        t0 = time.perf_counter()
        found = dict(
            pool.map(lambda item: replay(server.url, item[0], *item[1]), corpus.items())
        )
        spent = time.perf_counter() - t0
    return found, spent


def bare_loop_us(corpus: dict) -> float:
    """Time per point of the least a per-point Python loop costs: a sum of floats."""
    values = [v for _, series in corpus.values() for v in series.tolist()]
    t0 = time.perf_counter()
    total = 0.0
    for x in values:
        total += x
    return (time.perf_counter() - t0) / len(values) * 1e6


def single_call_us(corpus: dict, calls: int = 2000) -> float:
    """Time of one observe call with one point (what a single-point observe costs),
    on the first points of the first file."""
    stamps, values = next(iter(corpus.values()))
    stamps = stamps[:calls].tolist()
    values = values[:calls].tolist()
    state = online.new_state()
    t0 = time.perf_counter()
    for t, x in zip(stamps, values, strict=True):
        state, _ = online.observe(state, (t,), (x,))
    return (time.perf_counter() - t0) / len(values) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB-layout folder")
    ap.add_argument("--threshold", type=float, default=online.DEFAULT_THRESHOLD)
    ap.add_argument("--warmup", type=int, default=online.DEFAULT_WARMUP)
    ap.add_argument("--direction", choices=("upper", "lower", "both"), default="both")
    ap.add_argument("--batch", type=int, default=1000, help="points per observe call")
    ap.add_argument("--per-file", action="store_true", help="standard profile per file")
    ap.add_argument("--write-scores", type=Path, help="write the scores as JSON here")
    ap.add_argument(
        "--mode",
        choices=("process", "http", "both"),
        default="process",
        help="replay in this process, through a real anomalyd serve, or both",
    )
    ap.add_argument("--http-batch", type=int, default=100, help="points per request")
    args = ap.parse_args(argv)
    if args.mode != "process":
        return main_http(args)

    scorer = load_scorer(args.nab)
    corpus = load_corpus(args.nab)
    results: dict[str, np.ndarray] = {}
    spent = 0.0
    n_points = 0
    for rel, (stamps, values) in corpus.items():
        results[rel], seconds = replay_in_process(
            stamps, values, args.direction, args.batch, args.warmup
        )
        spent += seconds
        n_points += values.size

    fixed = scorer.score(results, threshold=args.threshold, nab_dir=str(args.nab))
    print(
        f"in process, direction {args.direction}, warm-up {args.warmup} points, "
        f"batches of {args.batch}"
    )
    print(scorer.format_report(fixed, per_file=args.per_file))
    swept = scorer.score(results, sweep=True, nab_dir=str(args.nab))
    print()
    print("for reference only (thresholds chosen with the labels in hand):")
    print(scorer.format_report(swept))
    print()
    print(
        f"speed: {spent / n_points * 1e6:.2f} us per point in online.observe "
        f"({n_points} points, batches of {args.batch})"
    )
    per_point = spent / n_points * 1e6
    print(
        f"        {per_point / BUDGET_US:.2f} of the {BUDGET_US:.0f} us budget (issue 11)"
    )
    print(
        f"        {per_point / bare_loop_us(corpus):.0f} times a bare Python loop "
        "summing the same values (same run)"
    )
    print(f"        one point per call: {single_call_us(corpus):.1f} us per call")
    print(f"state: {online.STATE_SIZE} bytes per stream")
    if args.write_scores:
        with open(args.write_scores, "w") as fh:
            json.dump({rel: s.tolist() for rel, s in results.items()}, fh)
        print(f"scores written to {args.write_scores}")
    return 0


def main_http(args: argparse.Namespace) -> int:
    scorer = load_scorer(args.nab)
    corpus = load_corpus(args.nab)
    n_points = sum(values.size for _, values in corpus.values())
    runs: dict[str, dict[str, np.ndarray]] = {}
    if args.mode == "both":
        runs["in process"] = {
            rel: replay_in_process(
                stamps, values, args.direction, args.batch, args.warmup
            )[0]
            for rel, (stamps, values) in corpus.items()
        }
    runs["over HTTP"], seconds = replay_http(
        corpus, args.direction, args.http_batch, args.warmup
    )
    print(
        f"direction {args.direction}, warm-up {args.warmup} points, threshold "
        f"{args.threshold}; in process in batches of {args.batch}, over HTTP "
        f"(anomalyd serve, default settings) in batches of {args.http_batch}"
    )
    reports = {
        name: scorer.score(scores, threshold=args.threshold, nab_dir=str(args.nab))
        for name, scores in runs.items()
    }
    print()
    print("| profile | " + " | ".join(reports) + " |")
    print("|---|" + "---:|" * len(reports))
    for profile in scorer.PROFILES:
        row = " | ".join(
            f"{r['profiles'][profile]['normalised']:.2f}" for r in reports.values()
        )
        print(f"| {profile} | {row} |")
    print()
    for name, report in reports.items():
        print(f"{name}:")
        print(scorer.format_report(report, per_file=args.per_file))
    if args.mode == "both":
        same = all(
            np.array_equal(runs["in process"][rel], runs["over HTTP"][rel])
            for rel in corpus
        )
        print(
            f"scores identical in process and over HTTP: {'yes' if same else 'NO'} "
            f"({n_points:,} points, {len(corpus)} files)"
        )
        if not same:
            return 1
    print(
        f"over HTTP: {n_points:,} points in {seconds:.1f} s "
        f"({n_points / seconds:,.0f} points/s, 4 clients, batches of {args.http_batch})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
