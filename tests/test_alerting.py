"""Alerts as the domain makes them (``anomalyd.alerting``): episodes grouped until the
stream is quiet for ``resolve_after`` seconds of stream time; the same whether the
points come one by one or in batches; a part of the record a replay rebuilds."""

from __future__ import annotations

import random

import numpy as np
import pytest

from anomalyd import alerting
from anomalyd.alerting import OPENED, RESOLVED, follow, follow_learned
from anomalyd.streams import StreamConfig, learn, new_record


def points(pattern: str, step: int = 60, t0: int = 1_000_000):
    """Points from a pattern: '.' normal, 'X' anomalous, ' ' a gap of one step."""
    ts, anomalies = [], []
    t = t0
    for c in pattern:
        if c != " ":
            ts.append(t)
            anomalies.append(c == "X")
        t += step
    scores = [0.9 if a else 0.1 for a in anomalies]
    values = [float(i) for i in range(len(ts))]
    return ts, values, scores, anomalies


def run(pattern: str, resolve_after: int, step: int = 60):
    ts, xs, ss, aa = points(pattern, step)
    return follow(None, False, 0, ts, xs, ss, aa, resolve_after)


def test_an_alert_groups_episodes_until_the_stream_is_quiet_long_enough():
    # Episodes at 2, 4-5, 9; quiet from 10: resolves at the first normal point at
    # least 300 s (5 steps) after the last anomaly (t index 9 -> index 14).
    alert, changes = run("..X.XX...X.........", 300)
    assert alert is None
    assert [c.kind for c in changes] == [OPENED, RESOLVED]
    opened, resolved = changes
    assert opened.alert.episode == 1 and opened.alert.episodes == 1
    assert resolved.alert.episodes == 3
    assert resolved.alert.start == 1_000_000 + 2 * 60
    assert resolved.alert.last_anomaly == 1_000_000 + 9 * 60
    assert resolved.resolved_at == 1_000_000 + 14 * 60


def test_a_gap_in_the_points_counts_in_stream_time():
    # The first point after a long silence resolves it, if it is normal.
    alert, changes = run("X" + " " * 20 + ".", 600)
    assert alert is None and [c.kind for c in changes] == [OPENED, RESOLVED]
    assert changes[1].resolved_at == 1_000_000 + 21 * 60
    # An anomalous point after the silence extends the alert instead (and its
    # episode: no normal point came between).
    alert, changes = run("X" + " " * 20 + "X", 600)
    assert alert is not None and alert.episodes == 1
    assert alert.last_anomaly == 1_000_000 + 21 * 60
    assert [c.kind for c in changes] == [OPENED]


def test_resolve_after_zero_makes_one_alert_per_episode():
    alert, changes = run(".XX..X.X.", 0)
    assert [c.kind for c in changes] == [OPENED, RESOLVED] * 3
    assert [c.alert.episode for c in changes if c.kind == OPENED] == [1, 2, 3]
    assert alert is None


def test_the_opening_event_holds_the_first_point_and_the_peak_moves_later():
    ts, xs, _, aa = points("XXX.")
    ss = [0.6, 0.95, 0.7, 0.1]
    alert, changes = follow(None, False, 0, ts, xs, ss, aa, 10_000)
    assert changes[0].alert.peak_score == 0.6 and changes[0].alert.peak_value == 0.0
    assert alert.peak_score == 0.95 and alert.peak_value == 1.0
    assert alert.peak_timestamp == ts[1]


def test_the_given_alert_is_not_changed():
    alert, _ = run("X", 600)
    before = alerting.Alert(*[getattr(alert, f) for f in alert.__struct_fields__])
    ts, xs, ss, aa = points("...X", t0=2_000_000)
    after, _ = follow(alert, False, 1, ts, xs, ss, aa, 10**9)
    assert alert == before and after.episodes == 2


@pytest.mark.parametrize("seed", range(20))
def test_batches_of_any_size_give_what_points_one_by_one_give(seed):
    rng = random.Random(seed)
    pattern = "".join(rng.choice("....X X") for _ in range(400))
    resolve_after = rng.choice((0, 60, 300, 1200))
    ts, xs, ss, aa = points(pattern)
    whole = follow(None, False, 0, ts, xs, ss, aa, resolve_after)

    alert, episode_open, episodes, changes = None, False, 0, []
    i = 0
    while i < len(ts):
        n = rng.choice((1, 1, 2, 7, 50))
        alert, more = follow(
            alert,
            episode_open,
            episodes,
            ts[i : i + n],
            xs[i : i + n],
            ss[i : i + n],
            aa[i : i + n],
            resolve_after,
        )
        changes += more
        # What the stream's record carries between observes.
        for a in aa[i : i + n]:
            episodes += a and not episode_open
            episode_open = a
        i += n
    assert (alert, changes) == whole


def test_through_the_stream_record_batches_equal_one_by_one():
    """With the real detector: the alert in the record, and every change, are the
    same for one batch and for the points one by one."""
    config = StreamConfig(0.51, "both", 50)
    rng = np.random.default_rng(3)
    xs = 50 + rng.normal(0, 1, 3000)
    xs[[700, 1500, 1505, 1530, 2200]] += [40, 30, -35, 50, 45]
    ts = (1_700_000_000 + 60 * np.arange(3000)).tolist()
    xs = xs.tolist()

    record = new_record(config)
    done = learn(record, ts, xs)
    whole = follow_learned(record, done, 900)
    batch_record = done.record

    record, one_by_one = new_record(config), []
    for t, x in zip(ts, xs, strict=True):
        step = learn(record, [t], [x])
        one_by_one += follow_learned(record, step, 900)
        record = step.record
    assert one_by_one == whole and record == batch_record
    assert [c.kind for c in whole].count(OPENED) >= 2
