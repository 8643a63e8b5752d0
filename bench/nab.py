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

Over HTTP (a real ``anomalyd serve``, POST /observe/{id}/batch in batches of 100): the
streams service does not exist yet; that mode goes in ``replay_http`` next to
``replay_in_process`` below, and ``--mode http`` is added with it.
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
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
