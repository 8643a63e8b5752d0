"""What recording one request costs: ``Stats.observe`` in ns per call.

    .venv/bin/python bench/record_latency.py [--calls N] [--repeat R]

Measures, in one run and interleaved round by round so that a noisy machine hits them
alike: an empty Python function taking the same four arguments (the price of any call,
the reference), ``observe`` counting a request without a latency, and ``observe`` counting
a predict and recording its latency (what every single-point predict pays). Prints the
best and the median of R rounds of N calls each, and each cost as a multiple of the
empty call. The region is a real shared file mapping, as in the service.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import timeit

from anomalyd.stats import LocalStats, counter_of, histogram_of


def empty(counter: int, histogram: int, status: int, seconds: float) -> None:
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    stats = LocalStats(threads=1)
    counter = counter_of("/predict/{series_id}", "POST")
    inference = histogram_of("inference")
    observe = stats.observe
    observe(counter, inference, 200, 1.2e-4)  # the thread claims its slot once
    # name -> (function, histogram argument); the same arguments otherwise.
    cases = {
        "empty function call (reference)": (empty, inference),
        "observe, count only": (observe, -1),
        "observe, count + latency": (observe, inference),
    }
    rounds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, (function, histogram) in cases.items():
            timer = timeit.Timer(
                f"f({counter}, {histogram}, 200, 1.2e-4)", globals={"f": function}
            )
            rounds[name].append(timer.timeit(args.calls) / args.calls * 1e9)

    recorded = stats.histogram("inference").count
    expected = 1 + args.repeat * args.calls
    assert recorded == expected, (recorded, expected)
    stats.remove()

    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{args.repeat} rounds x {args.calls:,} calls"
    )
    reference = min(rounds["empty function call (reference)"])
    for name, times in rounds.items():
        best, median = min(times), statistics.median(times)
        print(
            f"{name:34} best {best:6.1f} ns  median {median:6.1f} ns  "
            f"({best / reference:4.1f}x the empty call)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
