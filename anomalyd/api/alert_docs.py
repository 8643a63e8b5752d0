"""The alerts' part of ``/openapi.json``: ``GET /alerts``, and the two events the
service sends to webhooks, as OpenAPI 3.1 ``webhooks`` (``anomalyd.api.docs`` builds
the rest). Bodies come from ``anomalyd.alert_schemas`` through the same msgspec
schema components."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anomalyd.alert_settings import SECRET_PREFIX
from anomalyd.api.alerts import EVENT_ID, STATES

_REF = "#/components/schemas/{name}"

_SIGNED = (
    "Signed as Standard Webhooks specifies (https://www.standardwebhooks.com): "
    "webhook-signature is 'v1,' and the base64 HMAC-SHA256, under the key that "
    f"webhook_secret ({SECRET_PREFIX} + base64) encodes, of "
    "'{webhook-id}.{webhook-timestamp}.{the raw body}'. Check it before trusting the "
    "body, and drop a webhook-id already seen: an event is sent again, with the same "
    "id, when its delivery was not confirmed (a timeout, a failure, a crash)."
)
_WHEN = {
    "episode_opened": "An alert opened: a stream's anomaly episode began while no "
    "alert of that stream was firing.",
    "episode_resolved": "An alert resolved: its stream's first normal point at least "
    "alert_resolve_after seconds (stream time) after its last anomalous point; or "
    "the stream was deleted (data.deleted).",
}


def _header(name: str, description: str, pattern: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def webhooks() -> dict[str, Any]:
    headers = [
        _header(
            "webhook-id",
            "The event's id, the same for every attempt to send it.",
            f"^{EVENT_ID.pattern}$",
        ),
        _header(
            "webhook-timestamp",
            "When this attempt was signed, Unix seconds: refuse one far from now.",
            "^[0-9]+$",
        ),
        _header(
            "webhook-signature",
            "'v1,' and the base64 signature (see the description).",
            "^v1,[A-Za-z0-9+/=]+$",
        ),
    ]
    found = {}
    for kind, when in _WHEN.items():
        found[kind] = {
            "post": {
                "operationId": kind.replace("_", "-"),
                "summary": when,
                "description": f"One JSON document per event. {_SIGNED}",
                "parameters": headers,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": _REF.format(name="WebhookEvent")}
                        }
                    },
                },
                "responses": {
                    "2XX": {"description": "Received: the event is delivered."},
                    "default": {
                        "description": "Not received: sent again later with backoff "
                        "(no answer, 408, 429, 5xx: without end; a 3xx, never "
                        "followed, or another 4xx: a few times, then the event is "
                        "marked failed for this receiver)."
                    },
                },
                "security": [],
            }
        }
    return found


def alert_paths(
    op: Callable[..., dict[str, Any]], limit_query: dict[str, Any]
) -> dict[str, Any]:
    """``GET /alerts``; ``op`` builds one operation (docs.py)."""
    return {
        "/alerts": {
            "get": op(
                "listAlerts",
                "The alerts' outbox, oldest event first, paged: each event with "
                "how each receiver got on (state, attempts, last error).",
                {
                    "description": "One page of events; a page filtered by state may "
                    "hold fewer than limit while next is not null.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": _REF.format(name="AlertsPage")}
                        }
                    },
                },
                (400,),
                parameters=[
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "description": "pending: a receiver has yet to get it; "
                        "failed: a receiver refused it for good; delivered: every "
                        "receiver has it. Absent: every event.",
                        "schema": {"type": "string", "enum": list(STATES)},
                    },
                    {
                        **limit_query,
                        "description": "Most events on one page (1 to 1000, "
                        "default 100).",
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "Start after this event id: the `next` of "
                        "the previous page.",
                        "schema": {
                            "type": "string",
                            "pattern": f"^{EVENT_ID.pattern}$",
                        },
                    },
                ],
            )
        }
    }
