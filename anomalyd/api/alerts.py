"""GET /alerts: what the alerts' outbox holds, and how each receiver is getting on;
the alerts' lines of /metrics."""

from __future__ import annotations

import re

import falcon

from anomalyd import schemas
from anomalyd.alert_schemas import (
    AlertEvent,
    AlertsPage,
    alert_data,
    receiver_state,
    wall,
)
from anomalyd.api.common import parse_limit
from anomalyd.delivery import AlertService
from anomalyd.delivery.sender import ALERTMANAGER, WEBHOOK
from anomalyd.errors import BadRequest
from anomalyd.store import outbox_reads
from anomalyd.store.outbox import Outbox

STATES = ("pending", "failed", "delivered")
EVENT_ID = re.compile(r"([0-9a-f]{16})-([0-9]{1,19})")
_encode = schemas.encoder.encode


def _params(req: falcon.Request) -> tuple[str | None, int | None, int]:
    state = req.get_param("state")
    if state is not None and state not in STATES:
        raise BadRequest(
            f"state must be one of {', '.join(STATES)}, got {state[:40]!r}"
        )
    raw = req.get_param("after")
    after = None
    if raw is not None:
        match = EVENT_ID.fullmatch(raw)
        if match is None:
            raise BadRequest(
                f"after must be an event id (the 'next' of a previous page), got "
                f"{raw[:60]!r}"
            )
        after = int(match.group(2))
    return state, after, parse_limit(req, 100)


class AlertsResource:
    def __init__(self, alerts: AlertService) -> None:
        self._outbox = alerts.outbox
        self._public_url = alerts.public_url

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state, after, limit = _params(req)
        listed, following = outbox_reads.page(self._outbox, state, after, limit)
        events = []
        for item in listed:
            receivers = [
                shown
                for row, delivery in item.receivers
                if (shown := receiver_state(item.seq, row, delivery)) is not None
            ]
            event = item.event
            events.append(
                AlertEvent(
                    event.id,
                    event.kind,
                    wall(event.created_at),
                    alert_data(event, self._public_url),
                    item.state,
                    receivers,
                )
            )
        next_id = None
        if following is not None:
            next_id = f"{self._outbox.epoch}-{following}"
        resp.data = _encode(AlertsPage(events, next_id))
        resp.cache_control = ["no-store"]


def add_alert_routes(app: falcon.App, alerts: AlertService) -> None:
    app.add_route("/alerts", AlertsResource(alerts))


def metrics_lines(outbox: Outbox) -> list[str]:
    """The alerts' part of /metrics: per receiver kind, and the outbox's state."""
    found = outbox_reads.figures(outbox, (ALERTMANAGER, WEBHOOK))
    lines = []
    for name, key, kind_of, text in (
        ("sent_total", "sent", "counter", "Alert events delivered, by receiver kind."),
        (
            "failed_total",
            "failed",
            "counter",
            "Alert events a receiver refused for good (see GET /alerts?state=failed).",
        ),
        (
            "attempts_failed_total",
            "attempts_failed",
            "counter",
            "Delivery attempts that failed (retried with backoff), by receiver kind.",
        ),
        (
            "pending",
            "pending",
            "gauge",
            "Alert events not yet delivered, summed over the receivers of a kind.",
        ),
    ):
        metric = f"anomalyd_alerts_{name}"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind_of}"]
        for kind, counts in sorted(found.by_kind.items()):
            lines.append(f'{metric}{{kind="{kind}"}} {counts[key]}')
    for name, kind_of, text, value in (
        (
            "oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest alert event some receiver has not got yet (0: none).",
            round(found.oldest_pending_age, 3),
        ),
        (
            "dropped_total",
            "counter",
            (
                "Alert events dropped undelivered because the outbox was full "
                "(outbox_max_events)."
            ),
            found.dropped,
        ),
        ("firing", "gauge", "Streams with an alert firing.", found.firing),
        ("events", "gauge", "Alert events kept in the outbox.", found.kept),
    ):
        metric = f"anomalyd_alerts_{name}"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind_of}"]
        lines.append(f"{metric} {value}")
    return lines
