"""What each kind of receiver is sent: Alertmanager's v2 alerts, signed webhooks.

Alertmanager (``POST /api/v2/alerts``, a JSON list): an alert is identified by its
labels, ``alertname="AnomalydAnomaly"``, ``series_id`` and the stream's labels (as
they were when the alert opened; ours win over a stream label of the same name).
``startsAt`` and ``endsAt`` are wall-clock times: Alertmanager merges alerts of the
same labels whose time ranges overlap, so stream time (a replay of last year's data,
a sensor whose clock is ahead) would merge distinct alerts or keep a resolved one
alive; the stream-time start is an annotation. A firing alert's ``endsAt`` is
``ENDS_AFTER`` resend intervals ahead, as Prometheus does, and it is re-sent every
interval, so Alertmanager never times it out; a resolved one's ``endsAt`` is when it
resolved.

Webhooks: one JSON document per event (``anomalyd.alert_schemas.WebhookEvent``),
signed as Standard Webhooks specifies: HMAC-SHA256 under the secret's key of
``{webhook-id}.{webhook-timestamp}.{body}``, sent as ``webhook-signature: v1,<base64>``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import msgspec

from anomalyd.alert_schemas import plot_url, webhook_event
from anomalyd.alerting import OPENED, Alert
from anomalyd.store.outbox import Event, Firing
from anomalyd.streams import utc

ALERTNAME = "AnomalydAnomaly"
# A firing alert ends this many resend intervals ahead unless re-sent (Prometheus: 4).
ENDS_AFTER = 4
ALERTS_PATH = "/api/v2/alerts"

_encode = msgspec.json.Encoder().encode


def alertmanager_url(base: str) -> str:
    """Where alerts are posted: the base URL given, plus ``/api/v2/alerts``."""
    if base.rstrip("/").endswith(ALERTS_PATH):
        return base
    return base.rstrip("/") + ALERTS_PATH


def _iso(seconds: float) -> str:
    return (
        dt.datetime.fromtimestamp(seconds, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _number(x: float) -> str:
    return f"{x:.6g}"


def _alert(
    series_id: str,
    labels: dict[str, str],
    threshold: float,
    alert: Alert,
    opened_at: float,
    ends_at: float,
    event_id: str,
    public_url: str | None,
) -> dict:
    since = f"{utc(alert.start):%Y-%m-%d %H:%M:%S}"
    identity = {k: v for k, v in labels.items() if v}
    identity.update(alertname=ALERTNAME, series_id=series_id)
    annotations = {
        "summary": f"anomaly in stream {series_id}",
        "description": (
            f"{alert.episodes} anomaly episode(s) since {since} UTC; peak score "
            f"{_number(alert.peak_score)} (threshold {_number(threshold)}) at value "
            f"{_number(alert.peak_value)}"
        ),
        "peak_value": _number(alert.peak_value),
        "peak_score": _number(alert.peak_score),
        "threshold": _number(threshold),
        "start": _iso(alert.start),
        "episodes": str(alert.episodes),
        "event_id": event_id,
    }
    found = {
        "labels": identity,
        "annotations": annotations,
        "startsAt": _iso(min(opened_at, ends_at)),
        "endsAt": _iso(ends_at),
    }
    link = plot_url(public_url, series_id)
    if link is not None:
        annotations["plot"] = link
        found["generatorURL"] = link
    return found


def alertmanager_body(
    events: list[Event], now: float, resend: int, public_url: str | None
) -> bytes:
    """The events in order, as one list of alerts."""
    alerts = [
        _alert(
            e.series_id,
            e.labels,
            e.threshold,
            e.alert,
            e.opened_at,
            now + ENDS_AFTER * resend if e.kind == OPENED else e.created_at,
            e.id,
            public_url,
        )
        for e in events
    ]
    return _encode(alerts)


def resend_body(
    firing: list[tuple[str, Firing, Alert | None]],
    now: float,
    resend: int,
    public_url: str | None,
) -> bytes:
    """The alerts still firing, each as it is now (its peak so far)."""
    return _encode(
        [
            _alert(
                series_id,
                f.labels,
                f.threshold,
                alert,
                f.opened_at,
                now + ENDS_AFTER * resend,
                f.event_id,
                public_url,
            )
            for series_id, f, alert in firing
            if alert is not None
        ]
    )


def webhook_body(event: Event, public_url: str | None) -> bytes:
    return _encode(webhook_event(event, public_url))


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    key: bytes, event: Event, body: bytes, timestamp: int
) -> dict[str, str]:
    return {
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, event.id, timestamp, body),
    }
