"""The machine-temperature sample (tests/sample/, NAB) replayed through a real
``anomalyd serve`` in batches: the failure is caught ahead of time, with few false
alarms.

NAB labels four anomaly windows in this file; the last holds the failure (labelled
2014-02-08 14:30, the machine failed on 2014-02-09). Measured with the shipped
settings (threshold 0.51, warm-up 200, direction both): 22 episodes; the first inside
the failure window opens 2014-02-08 01:05 (13 h ahead of the labelled point), 7 in that
window, 5 in the three other labelled windows, 10 outside every window (79 days of
data: one every 8 days). With direction ``lower`` (this machine's temperature drops
as it fails): 17 episodes, 7 in the failure window from 2014-02-08 01:05, 6 outside
every window.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent / "sample" / "machine_temperature_system_failure.csv"
WINDOWS = [
    ("2013-12-10 06:25:00", "2013-12-12 05:35:00"),
    ("2013-12-15 17:50:00", "2013-12-17 17:00:00"),
    ("2014-01-27 14:20:00", "2014-01-29 13:30:00"),
    ("2014-02-07 14:55:00", "2014-02-09 14:05:00"),  # the failure
]
FAILURE = "2014-02-09 00:00:00"


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def rows() -> tuple[list[str], list[float]]:
    """NAB's timestamps as written (``YYYY-MM-DD HH:MM:SS``); the one row that steps
    back in time is sent with the timestamp of the row before it, as bench/nab.py
    does (a stream refuses points earlier than its last)."""
    stamps, values = [], []
    with open(SAMPLE, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for when, value in reader:
            if stamps and utc(when) < utc(stamps[-1]):
                when = stamps[-1]
            stamps.append(when)
            values.append(float(value))
    return stamps, values


@pytest.mark.parametrize(
    "direction, most_outside, failure_episodes", [("both", 10, 7), ("lower", 6, 7)]
)
def test_the_failure_is_caught_ahead_with_few_false_alarms(
    make_server, direction, most_outside, failure_episodes
):
    server = make_server()
    stream = f"machine_{direction}"
    r = server.session.put(
        f"{server.url}/streams/{stream}", json={"direction": direction}
    )
    assert r.status_code == 200, r.text
    stamps, values = rows()
    for start in range(0, len(values), 1000):
        r = server.post(
            f"/observe/{stream}/batch",
            {
                "timestamps": stamps[start : start + 1000],
                "values": values[start : start + 1000],
            },
        )
        assert r.status_code == 200, r.text[:300]
    assert r.json()["points"] == len(values) == 22_695
    episodes = server.get(f"/streams/{stream}/anomalies", params={"limit": 1000}).json()
    starts = [utc(e["start"]) for e in episodes["anomalies"]]
    windows = [(utc(a), utc(b)) for a, b in WINDOWS]
    warm = utc(stamps[200])
    in_failure = [s for s in starts if windows[3][0] <= s < utc(FAILURE)]
    outside = [
        s for s in starts if s >= warm and not any(a <= s <= b for a, b in windows)
    ]
    print(
        f"{direction}: {len(starts)} episodes, {len(in_failure)} in the failure window "
        f"before the failure (first {min(in_failure, default=None)}), "
        f"{len(outside)} outside every labelled window"
    )
    assert in_failure, "no episode inside the failure window before the failure"
    assert min(in_failure) <= utc("2014-02-08 14:30:00")  # ahead of NAB's label
    assert len(in_failure) >= failure_episodes
    assert len(outside) <= most_outside
    assert server.get(f"/streams/{stream}").json()["anomalies"] == len(starts)
