"""Alerts: a stream's anomaly episodes grouped into alerts (the domain: no LMDB, no HTTP).

The detector rations its alarms (docs/detector.md): a sustained anomaly gives a first
alarm, then a one-point episode every 10 or more points while it lasts. One pager
message per episode would be noise, so an alert groups a stream's episodes:

- it opens with an episode that opens while the stream has no alert firing (event
  ``episode_opened``, with that first point's time, score and value);
- episodes that open while it fires belong to it (counted in ``episodes``);
- it resolves (event ``episode_resolved``) at the first normal point whose timestamp
  is at least ``resolve_after`` seconds after the alert's last anomalous point. Time
  here is stream time, the points' own timestamps, so a replay of old data behaves as
  the live data did.

``follow`` works this out from the points one observe learned, the same whether they
came one by one or in batches of any size (tested), and depends on nothing but the
points: the alert is part of the stream's durable record, which a replay rebuilds bit
for bit. Wall-clock times belong to the outbox (``anomalyd.store.outbox``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import msgspec

OPENED = "episode_opened"
RESOLVED = "episode_resolved"
Kind = Literal["episode_opened", "episode_resolved"]


class Alert(msgspec.Struct, array_like=True):
    """A stream's firing alert, kept in its record while it fires."""

    episode: int  # the number of the episode that opened it: its identity
    start: int  # Unix seconds (stream time) of its first anomalous point
    last_anomaly: int  # ... of its last anomalous point
    episodes: int  # episodes in it so far
    peak_score: float
    peak_value: float
    peak_timestamp: int


class Change(NamedTuple):
    """An alert opened or resolved by a point: what the outbox records."""

    kind: Kind
    alert: Alert  # as it was then (a copy)
    resolved_at: int | None  # stream time of the point that resolved it


def follow(
    alert: Alert | None,
    episode_open: bool,
    episodes: int,
    timestamps: Sequence[int],
    values: Sequence[float],
    scores: Sequence[float],
    anomalies: Sequence[bool],
    resolve_after: int,
) -> tuple[Alert | None, list[Change]]:
    """The alert after these points, and the alerts they opened or resolved.

    ``alert``, ``episode_open`` and ``episodes`` are the stream's before the points
    (its firing alert, whether an episode was in progress, episodes ever opened);
    the points are those it just learned, with their verdicts. ``alert`` is not
    changed (the returned one is a new object when anything moved)."""
    changes: list[Change] = []
    if alert is not None:
        alert = msgspec.structs.replace(alert)
    for t, x, s, a in zip(timestamps, values, scores, anomalies, strict=True):
        if a:
            opens = not episode_open
            if opens:
                episode_open = True
                episodes += 1
            if alert is None:
                alert = Alert(episodes, t, t, 1, s, x, t)
                changes.append(Change(OPENED, msgspec.structs.replace(alert), None))
                continue
            if opens:
                alert.episodes += 1
            alert.last_anomaly = t
            if s > alert.peak_score:
                alert.peak_score = s
                alert.peak_value = x
                alert.peak_timestamp = t
        else:
            episode_open = False
            if alert is not None and t - alert.last_anomaly >= resolve_after:
                changes.append(Change(RESOLVED, alert, t))
                alert = None
    return alert, changes


NO_CHANGES: tuple[Change, ...] = ()


def follow_learned(before, learned, resolve_after: int) -> Sequence[Change]:
    """``follow`` for one observe: ``before`` the stream's record before it,
    ``learned`` what ``streams.learn`` made of its points (its record gets the new
    alert). Nothing to do, the usual case, when no alert fires and no episode
    opened."""
    if before.alert is None and not learned.opened:
        return NO_CHANGES
    alert, changes = follow(
        before.alert,
        before.open_episode is not None,
        before.episodes,
        learned.timestamps,
        learned.values,
        learned.scores,
        learned.anomalies,
        resolve_after,
    )
    learned.record.alert = alert
    return changes


def resolved_by_deletion(alert: Alert) -> Change:
    """The stream was deleted while its alert fired: the alert resolves with it."""
    return Change(RESOLVED, msgspec.structs.replace(alert), None)
