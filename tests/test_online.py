"""The streams' online detector: causal, the same in any batches and across restarts,
bounded state, scores in [0, 1] in the asked direction, never NaN; and a quality check
on NAB's machine-temperature series."""

import csv
import datetime
import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalyd import online
from anomalyd.online import (
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    STATE_SIZE,
    InvalidPoints,
    new_state,
    observe,
    points_learned,
)

SAMPLE = Path(__file__).parent / "sample" / "machine_temperature_system_failure.csv"
NAB_LABELS = Path(
    os.environ.get("NAB_DIR", Path(__file__).resolve().parents[2] / "shared" / "nab")
) / ("labels/combined_windows.json")
START = 1_700_000_000


def series(n, seed=1):
    """A noisy daily wave with a few spikes, dips and a level shift: every channel
    and both sides get exercised."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    values = 50 + 10 * np.sin(i * 2 * np.pi / 288) + rng.normal(0, 1, n)
    for at in rng.integers(n // 10, n, size=max(1, n // 400)):
        values[at] += rng.choice([-1, 1]) * rng.uniform(5, 60)
    values[n * 2 // 3 :] += 15
    return START + 300 * i, values


def run(timestamps, values, direction="both", splits=None, state=None):
    """Observe in batches ending at the given split points; return state and scores."""
    state = new_state() if state is None else state
    bounds = [0, *(splits or []), len(values)]
    parts = []
    for a, b in itertools.pairwise(bounds):
        state, scores = observe(state, timestamps[a:b], values[a:b], direction)
        parts.append(scores)
    return state, np.concatenate(parts)


def same_bits(a, b):
    return np.array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))


# ---------------------------------------------------------------- state and interface
def test_state_is_fixed_and_small():
    assert STATE_SIZE <= 3584  # leaves >= 512 bytes of the 4 KiB for the stream record
    assert len(new_state()) == STATE_SIZE
    ts, values = series(20_000)
    state, _ = run(ts, values, splits=list(range(1000, 20_000, 1000)))
    assert isinstance(state, bytes)
    assert len(state) == STATE_SIZE
    assert points_learned(state) == 20_000


def test_scores_are_one_float_per_point_in_unit_interval():
    ts, values = series(5000)
    for direction in ("both", "upper", "lower"):
        _, scores = run(ts, values, direction)
        assert scores.dtype == np.float64
        assert scores.shape == values.shape
        assert np.all(np.isfinite(scores))
        assert scores.min() >= 0.0
        assert scores.max() <= 1.0
        assert scores.max() >= DEFAULT_THRESHOLD  # the spikes are seen


def test_empty_batch_changes_nothing():
    ts, values = series(500)
    state, _ = run(ts, values)
    again, scores = observe(state, [], [])
    assert again == state
    assert scores.shape == (0,)


# ---------------------------------------------------------------- determinism
def test_causal_a_later_point_never_changes_an_earlier_score():
    ts, values = series(3000, seed=2)
    _, base = run(ts, values)
    rng = np.random.default_rng(3)
    for k in [1, 2, 51, 256, 257, 1000, 2999]:
        changed = values.copy()
        changed[k:] = rng.normal(0, 1e6, len(values) - k)
        _, scores = run(ts, changed)
        assert same_bits(scores[:k], base[:k]), k
        assert not same_bits(scores[k:], base[k:]), k
    # and a prefix alone scores exactly as the start of the whole
    _, prefix = run(ts[:1234], values[:1234])
    assert same_bits(prefix, base[:1234])


@pytest.mark.parametrize(
    "splits",
    [
        list(range(1, 3000)),  # one by one
        list(range(7, 3000, 7)),
        list(range(100, 3000, 100)),
        [1, 2, 3, 255, 256, 257, 1000, 2999],
        "random",
    ],
    ids=["one-by-one", "7", "100", "edges", "random"],
)
def test_batches_of_any_size_give_the_same_bits(splits):
    ts, values = series(3000, seed=4)
    if splits == "random":
        rng = np.random.default_rng(5)
        splits = sorted(set(rng.integers(1, 3000, 60).tolist()))
    for direction in ("both", "upper", "lower"):
        whole_state, whole = run(ts, values, direction)
        state, scores = run(ts, values, direction, splits=splits)
        assert same_bits(scores, whole)
        assert state == whole_state


def test_restart_at_random_points_gives_the_same_bits(tmp_path):
    ts, values = series(4000, seed=6)
    whole_state, whole = run(ts, values)
    rng = np.random.default_rng(7)
    cuts = sorted(set(rng.integers(1, 4000, 25).tolist()))
    state = new_state()
    parts = []
    bounds = [0, *cuts, 4000]
    for a, b in itertools.pairwise(bounds):
        state, scores = observe(state, ts[a:b], values[a:b])
        parts.append(scores)
        # what a store does: write the bytes out, read them back into a new object
        (tmp_path / "state").write_bytes(state)
        state = (tmp_path / "state").read_bytes()
    assert same_bits(np.concatenate(parts), whole)
    assert state == whole_state


def test_state_does_not_depend_on_direction():
    ts, values = series(2000, seed=8)
    states = {d: run(ts, values, d)[0] for d in ("both", "upper", "lower")}
    assert states["both"] == states["upper"] == states["lower"]
    # so a stream can change direction half way and score as if it had always had it
    mid = 1200
    state, _ = observe(new_state(), ts[:mid], values[:mid], "upper")
    _, later = observe(state, ts[mid:], values[mid:], "lower")
    _, always = run(ts, values, "lower")
    assert same_bits(later, always[mid:])


# ---------------------------------------------------------------- direction
@pytest.mark.parametrize("period", [50, 97, 288])
@pytest.mark.parametrize("jump", [-40.0, 40.0])
def test_direction_counts_only_deviations_that_way(jump, period):
    i = np.arange(1500)
    calm = 100 + np.sin(i * 2 * np.pi / period) + 0.1 * np.sin(i * 2 * np.pi / 7.3)
    values = np.concatenate([calm, np.full(30, 100 + jump)])
    ts = START + 60 * np.arange(values.size)
    n = calm.size
    scores = {d: run(ts, values, d)[1] for d in ("both", "upper", "lower")}
    seen = "upper" if jump > 0 else "lower"
    blind = "lower" if jump > 0 else "upper"
    assert scores[seen][n] == 1.0
    assert scores["both"][n] == 1.0
    assert np.all(scores[blind][n:] == 0.0)
    for direction in ("both", "upper", "lower"):
        assert scores[direction][300:n].max() < DEFAULT_THRESHOLD, direction


# ---------------------------------------------------------------- awkward inputs
def test_constant_series_scores_zero_and_any_change_is_seen():
    ts = START + 60 * np.arange(1200)
    values = np.full(1200, 7.25)
    state, scores = run(ts, values)
    assert np.all(scores == 0.0)
    _, after = observe(state, [ts[-1] + 60], [7.26])
    assert after[0] == 1.0
    _, after = observe(state, [ts[-1] + 60], [7.25])
    assert after[0] == 0.0


@pytest.mark.parametrize(
    "values",
    [
        [1e300, -1e300] * 300,
        [1.7976931348623157e308, -1.7976931348623157e308, 0.0] * 200,
        [1e-300, -1e-300, 5e-324, 0.0] * 150,
        [-1e9 + i for i in range(600)],
        [0.0] * 300 + [1e300] + [0.0] * 299,
        [1e-300] * 300 + [1e300] * 300,
    ],
    ids=["huge", "float-max", "tiny", "negative", "spike-1e300", "tiny-then-huge"],
)
def test_extreme_values_give_scores_in_range_never_nan(values):
    values = np.array(values, dtype=np.float64)
    ts = START + np.arange(values.size)
    for direction in ("both", "upper", "lower"):
        state, scores = run(ts, values, direction, splits=[1, 300, 301])
        assert np.all(np.isfinite(scores)), direction
        assert scores.min() >= 0.0
        assert scores.max() <= 1.0
        # and the state it leaves still works on ordinary values
        _, more = observe(state, ts[-1] + np.arange(1, 101), np.linspace(0, 1, 100))
        assert np.all(np.isfinite(more))
        assert more.min() >= 0.0
        assert more.max() <= 1.0


def test_timestamps_only_order_the_points():
    _, values = series(2000, seed=10)
    regular = START + 300 * np.arange(2000)
    bumpy = regular.copy()
    bumpy[500:510] = bumpy[500]  # repeated timestamps
    bumpy[1000:] += 86_400 * 30  # a month's gap
    _, a = run(regular, values)
    _, b = run(bumpy, values, splits=[505, 1000])
    assert same_bits(a, b)


def test_bad_points_are_refused_and_nothing_is_learned():
    ts, values = series(100)
    state, _ = run(ts, values)
    cases = [
        (([ts[-1] - 1], [1.0]), r"timestamps\[0\]: .* earlier than the last point"),
        (
            ([ts[-1], ts[-1] - 1], [1.0, 2.0]),
            r"timestamps\[1\]: .* earlier than the one",
        ),
        (
            ([ts[-1] + 1, ts[-1] + 2], [1.0, math.nan]),
            r"values\[1\]: nan is not a finite",
        ),
        (([ts[-1] + 1], [math.inf]), r"values\[0\]: inf is not a finite"),
        (([ts[-1] + 1, ts[-1] + 2], [1.0]), r"values: 1 values for 2 timestamps"),
    ]
    for (stamps, vals), message in cases:
        with pytest.raises(InvalidPoints, match=message):
            observe(state, stamps, vals)
    with pytest.raises(InvalidPoints, match="direction: 'up' is not upper"):
        observe(state, [ts[-1] + 1], [1.0], "up")
    with pytest.raises(InvalidPoints, match=f"state: 3 bytes, expected {STATE_SIZE}"):
        observe(b"abc", [1], [1.0])
    other_version = (online.FORMAT_VERSION + 1).to_bytes(2, "little") + state[2:]
    with pytest.raises(InvalidPoints, match="state: format"):
        observe(other_version, [ts[-1] + 1], [1.0])
    assert points_learned(state) == 100
    # a repeat of the last timestamp is fine (real feeds repeat)
    state2, _ = observe(state, [ts[-1]], [1.0])
    assert points_learned(state2) == 101


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.floats(allow_nan=False, allow_infinity=False)
        | st.floats(-10, 10)
        | st.sampled_from([0.0, 1.0, -1.0]),
        min_size=1,
        max_size=400,
    ),
    steps=st.lists(st.integers(0, 3), max_size=400),
    cuts=st.lists(st.integers(1, 399), max_size=8),
    direction=st.sampled_from(["both", "upper", "lower"]),
)
def test_any_finite_values_any_split_same_bits_and_scores_in_range(
    values, steps, cuts, direction
):
    values = np.array(values, dtype=np.float64)
    steps = (steps + [1] * len(values))[: len(values)]
    ts = START + np.cumsum(steps)  # repeats (step 0) and gaps
    whole_state, whole = run(ts, values, direction)
    assert np.all(np.isfinite(whole))
    assert whole.min() >= 0.0
    assert whole.max() <= 1.0
    splits = sorted({c for c in cuts if c < len(values)})
    state, scores = run(ts, values, direction, splits=splits)
    assert same_bits(scores, whole)
    assert state == whole_state


# ---------------------------------------------------------------- quality
def read_sample():
    stamps, values = [], []
    with open(SAMPLE, newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        last = 0
        for when, value in rows:
            t = int(
                datetime.datetime.fromisoformat(when)
                .replace(tzinfo=datetime.UTC)
                .timestamp()
            )
            last = max(t, last)  # one row of the file steps back in time
            stamps.append(last)
            values.append(float(value))
    return np.array(stamps), np.array(values)


def episodes(anomalous):
    """(first, last) index of each run of anomalous points."""
    edges = np.diff(np.r_[0, anomalous.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def utc(text):
    return int(
        datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()
    )


def test_machine_temperature_failure_is_flagged_before_it_happens():
    """NAB's labelled windows for this file (from ../shared/nab when present, else
    the same four windows written here); the failure is NAB's label 2014-02-08 14:30."""
    key = "realKnownCause/machine_temperature_system_failure.csv"
    if NAB_LABELS.exists():
        windows = json.loads(NAB_LABELS.read_text())[key]
    else:
        windows = [
            ["2013-12-10 06:25:00", "2013-12-12 05:35:00"],
            ["2013-12-15 17:50:00", "2013-12-17 17:00:00"],
            ["2014-01-27 14:20:00", "2014-01-29 13:30:00"],
            ["2014-02-07 14:55:00", "2014-02-09 14:05:00"],
        ]
    windows = [(utc(a), utc(b)) for a, b in windows]
    failure_window = windows[-1]
    failure = utc("2014-02-08 14:30:00")

    ts, values = read_sample()
    _, scores = run(ts, values, splits=list(range(1000, len(values), 1000)))
    anomalous = scores >= DEFAULT_THRESHOLD
    anomalous[:DEFAULT_WARMUP] = False
    found = episodes(anomalous)

    def inside(i):
        return any(a <= ts[i] <= b for a, b in windows)

    in_failure = [a for a, _ in found if failure_window[0] <= ts[a] < failure]
    elsewhere = [a for a, _ in found if not inside(a)]
    # Measured (threshold 0.51, warm-up 200): 22 episodes, each one point long. 7 open
    # in the failure window before the failure, the first on 2014-02-08 01:05, 13 h
    # before it; 10 open outside all four windows: 3 in the stream's first three days
    # (learning its range), 1 an hour after the third window, 6 in the 76 days after.
    assert in_failure
    assert ts[in_failure[0]] <= failure - 12 * 3600
    assert len(elsewhere) <= 10
    assert len([a for a in elsewhere if ts[a] >= ts[0] + 3 * 86_400]) <= 7
    assert len(found) <= 25
