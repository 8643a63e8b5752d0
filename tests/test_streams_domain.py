"""anomalyd.streams (pure): verdicts, warm-up, episodes, batch = one by one, records."""

from __future__ import annotations

import itertools

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalyd import online, streams
from anomalyd.alerting import Alert
from anomalyd.settings import Settings
from anomalyd.store.streams import _encode
from anomalyd.stream_schemas import LABEL_BYTES, MAX_LABELS, settings_decoder
from anomalyd.streams import (
    InvalidPoints,
    PointsOutOfOrder,
    StreamConfig,
    learn,
    new_record,
)

T0 = 1_694_336_400


def series(n: int, seed: int = 0, spikes: tuple[int, ...] = ()) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    values = (50 + rng.normal(0, 1, n)).tolist()
    for i in spikes:
        values[i] += 40
    return [T0 + 60 * i for i in range(n)], values


def one_by_one(record, ts, xs):
    out = []
    for t, x in zip(ts, xs, strict=True):
        done = learn(record, (t,), (x,))
        out.append(done)
        record = done.record
    return record, out


def test_defaults_are_the_detectors():
    s = Settings()
    assert s.stream_threshold == online.DEFAULT_THRESHOLD
    assert s.stream_warmup == online.DEFAULT_WARMUP
    assert s.stream_direction == online.DEFAULT_DIRECTION


def test_warmup_and_threshold_make_the_verdict():
    ts, xs = series(400, spikes=(150, 300))
    done = learn(new_record(StreamConfig(0.51, "both", 200)), ts, xs)
    high = [i for i, s in enumerate(done.scores) if s >= 0.51]
    # Scores at or above the threshold both inside the warm-up and after it.
    assert any(i < 200 for i in high) and 300 in high, high
    assert done.anomalies == [s >= 0.51 and i >= 200 for i, s in enumerate(done.scores)]
    # Without a warm-up, the early ones are anomalies too.
    early = learn(new_record(StreamConfig(0.51, "both", 0)), ts, xs)
    assert [i for i, a in enumerate(early.anomalies) if a] == high
    assert early.record.episodes == sum(
        1
        for i, a in enumerate(early.anomalies)
        if a and (i == 0 or not early.anomalies[i - 1])
    )


def test_episodes_are_runs_of_anomalous_points():
    # Under 0.3: the score a sustained anomaly keeps between its alarms (the
    # detector's refractory caps it there), so a run of far points is one episode.
    config = StreamConfig(0.25, "both", 0)
    record = new_record(config)
    ts, xs = series(300)
    record = learn(record, ts, xs).record
    before = record.episodes
    t = ts[-1]
    done = learn(record, [t + 60, t + 120, t + 180], [500.0, 900.0, 50.0])
    assert done.anomalies[:2] == [True, True]
    assert done.anomalies[2] is False
    (episode,) = done.episodes
    assert episode.number == before + 1 == done.record.episodes
    assert (episode.start, episode.end, episode.points) == (t + 60, t + 120, 2)
    assert episode.open is False
    assert episode.peak_score == max(done.scores[:2])
    assert done.opened == 1
    assert done.record.open_episode is None
    assert done.record.last_anomaly == t + 120


def test_an_open_episode_is_extended_across_calls():
    record = learn(new_record(StreamConfig(0.25, "both", 0)), *series(300)).record
    t = T0 + 60 * 300
    first = learn(record, (t,), (1000.0,))
    assert first.anomalies == [True] and first.opened == 1
    assert first.record.open_episode.open is True
    assert first.episodes[0].open is True
    # The input record is never changed.
    assert record.open_episode is None and record.points == 300
    second = learn(first.record, (t + 60,), (5000.0,))
    assert second.anomalies == [True]
    assert second.opened == 0
    (episode,) = second.episodes
    assert episode.number == first.episodes[0].number
    assert episode.points == 2 and episode.open
    assert first.record.open_episode.points == 1  # not mutated by the second call
    third = learn(second.record, (t + 120,), (50.0,))
    assert third.anomalies == [False]
    assert third.episodes[0].open is False and third.record.open_episode is None


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.integers(1, 599), max_size=8),
    threshold=st.sampled_from([0.2, 0.51, 0.9]),
    warmup=st.sampled_from([0, 30, 200]),
    direction=st.sampled_from(["upper", "lower", "both"]),
)
def test_a_batch_answers_exactly_what_one_by_one_answers(
    seed, cuts, threshold, warmup, direction
):
    ts, xs = series(600, seed, spikes=(100, 101, 102, 350, 500))
    config = StreamConfig(threshold, direction, warmup)
    single, answers = one_by_one(new_record(config), ts, xs)
    record = new_record(config)
    scores, anomalies, episodes = [], [], {}
    bounds = [0, *sorted(set(cuts)), 600]
    for a, b in itertools.pairwise(bounds):
        done = learn(record, ts[a:b], xs[a:b])
        scores += done.scores
        anomalies += done.anomalies
        for e in done.episodes:
            episodes[e.number] = e
        record = done.record
    assert scores == [d.scores[0] for d in answers]
    assert anomalies == [d.anomalies[0] for d in answers]
    one_episodes = {}
    for d in answers:
        for e in d.episodes:
            one_episodes[e.number] = e
    assert episodes == one_episodes
    assert _encode(record) == _encode(single)


def test_points_out_of_order_and_bad_points_learn_nothing():
    record = learn(
        new_record(StreamConfig(0.5, "both", 0)), [T0, T0 + 60], [1, 2]
    ).record
    with pytest.raises(PointsOutOfOrder, match=r"earlier than the stream's last"):
        learn(record, (T0,), (3.0,))
    with pytest.raises(InvalidPoints, match=r"values\[1\]: nan is not a finite"):
        learn(record, [T0 + 60, T0 + 120], [1.0, float("nan")])
    with pytest.raises(InvalidPoints, match=r"timestamps\[2\]"):
        learn(record, [T0 + 60, T0 + 120, T0 + 90], [1.0, 2.0, 3.0])
    # Repeated timestamps are fine.
    assert learn(record, [T0 + 60, T0 + 60], [1.0, 2.0]).record.points == 4
    assert record.points == 2


def test_configure_keeps_what_is_not_given():
    record = learn(new_record(StreamConfig(0.51, "both", 200)), *series(10)).record
    changed = streams.configure(record, threshold=0.9, labels={"room": "a"})
    assert changed.config == StreamConfig(0.9, "both", 200, {"room": "a"})
    assert changed.state == record.state and changed.points == 10
    assert streams.configure(changed, warmup=5).config.labels == {"room": "a"}


def test_record_with_the_largest_labels_stays_within_4_kib():
    ts, xs = series(1000, spikes=(500,))
    record = learn(new_record(StreamConfig(0.5, "both", 0)), ts, xs).record
    labels = {f"l{i:02d}" + "x" * 60: "" for i in range(MAX_LABELS)}
    room = LABEL_BYTES - sum(map(len, labels))
    names = list(labels)
    for i, name in enumerate(names):
        labels[name] = "v" * min(128, room // MAX_LABELS + (i < room % MAX_LABELS))
    given = settings_decoder.decode(msgspec.json.encode({"labels": labels}))
    record = streams.configure(record, labels=given.labels)
    record.open_episode = streams.Episode(1, T0, T0, 1, 1.0, 1e300, T0, True, 0)
    record.keys = record.history_from = 2**62
    big = 2**62
    record.alert = Alert(big, big, big, big, 0.123456789, 1e300, big)
    size = len(_encode(record))
    assert size <= 4096, size
    too_many = {**labels, "extra": "x"}
    with pytest.raises(msgspec.ValidationError, match="length <= 20"):
        settings_decoder.decode(msgspec.json.encode({"labels": too_many}))
    wide = {name: "é" * 128 for name in "abcdefghi"}  # 9 x 257 bytes
    with pytest.raises(msgspec.ValidationError, match="bytes of names and values"):
        settings_decoder.decode(msgspec.json.encode({"labels": wide}))
    with pytest.raises(msgspec.ValidationError, match="matching regex"):
        settings_decoder.decode(b'{"labels": {"__name__": "x"}}')
