"""What alerts look like outside: the webhook document, and ``GET /alerts``' page.

As in ``anomalyd.schemas``: the service encodes with these Structs, and
``/openapi.json`` is generated from them (the webhooks under ``webhooks``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

from anomalyd.store.outbox import Delivery, Event, ReceiverRow, redact
from anomalyd.streams import utc

Kind = Literal["episode_opened", "episode_resolved"]
State = Literal["pending", "failed", "delivered"]
ReceiverKind = Literal["alertmanager", "webhook"]


class AlertData(msgspec.Struct):
    """An alert of a stream: one or more anomaly episodes with no quiet spell of
    alert_resolve_after seconds between them."""

    series_id: str
    labels: dict[str, str]  # the stream's, when the alert opened
    threshold: float
    episode: int  # the number of the episode that opened it (its identity)
    episodes: int  # episodes in it so far
    start: dt.datetime  # its first anomalous point (stream time)
    end: dt.datetime  # its last anomalous point so far
    peak_score: float
    peak_value: float
    peak_timestamp: dt.datetime
    opened_at: dt.datetime  # wall clock of the observe that opened it
    resolved_at: dt.datetime | None  # the point that resolved it (stream time)
    deleted: bool  # resolved because the stream was deleted
    plot_url: str | None  # public_url + /plot?stream=ID, when public_url is set


class WebhookEvent(msgspec.Struct):
    """One event, the body of one webhook POST (Standard Webhooks payload shape)."""

    type: Kind
    id: str  # also the webhook-id header: the same for every retry of the event
    timestamp: dt.datetime  # when it happened (wall clock)
    data: AlertData


class ReceiverState(msgspec.Struct):
    kind: ReceiverKind
    url: str  # without the password of its user information
    state: State
    attempts: int  # attempts made (for a pending event: failed so far)
    last_error: str | None
    at: dt.datetime | None  # when it was delivered or refused for good
    next_attempt: dt.datetime | None  # pending after failures: not before


class AlertEvent(msgspec.Struct):
    id: str
    type: Kind
    timestamp: dt.datetime
    data: AlertData
    state: State  # pending: a receiver has yet to get it; failed: one refused it
    receivers: list[ReceiverState]


class AlertsPage(msgspec.Struct):
    alerts: list[AlertEvent]
    next: str | None  # pass as after for the following page


def alert_data(event: Event, public_url: str | None) -> AlertData:
    a = event.alert
    return AlertData(
        event.series_id,
        event.labels,
        event.threshold,
        a.episode,
        a.episodes,
        utc(a.start),
        utc(a.last_anomaly),
        a.peak_score,
        a.peak_value,
        utc(a.peak_timestamp),
        wall(event.opened_at),
        None if event.resolved_at is None else utc(event.resolved_at),
        event.deleted,
        plot_url(public_url, event.series_id),
    )


def webhook_event(event: Event, public_url: str | None) -> WebhookEvent:
    return WebhookEvent(
        event.kind, event.id, wall(event.created_at), alert_data(event, public_url)
    )


def plot_url(public_url: str | None, series_id: str) -> str | None:
    # Series ids are [A-Za-z0-9._:-]: nothing in them needs escaping in a query.
    if public_url is None:
        return None
    return f"{public_url.rstrip('/')}/plot?stream={series_id}"


def receiver_state(
    seq: int, row: ReceiverRow, delivery: Delivery | None
) -> ReceiverState | None:
    """What became of event ``seq`` at a receiver (None: it came before the
    receiver was configured, so it is not the receiver's)."""
    if seq < row.since:
        return None
    url = redact(row.url)
    if delivery is not None:
        return ReceiverState(
            row.kind,
            url,
            "delivered" if delivery.delivered else "failed",
            delivery.attempts,
            delivery.last_error,
            wall(delivery.at),
            None,
        )
    if seq < row.cursor:  # passed, with no record of it kept: delivered
        return ReceiverState(row.kind, url, "delivered", 0, None, None, None)
    head = seq == row.cursor
    return ReceiverState(
        row.kind,
        url,
        "pending",
        row.attempts if head else 0,
        row.last_error if head else None,
        None,
        wall(row.next_at) if head and row.next_at else None,
    )


def wall(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


webhook_encoder = msgspec.json.Encoder()
BODY_TYPES = (WebhookEvent, AlertsPage)
