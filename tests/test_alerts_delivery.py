"""Alert delivery through a real ``anomalyd serve`` (2 workers) to webhook receivers
run by the test: signed, retried, in order per stream, never stalled by another
receiver, no redirect followed, no secret sent; GET /alerts and /metrics say so."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from alert_client import (
    STEP,
    T0,
    Receiver,
    alert_flags,
    all_alerts,
    calm,
    expected_changes,
    new_secret,
    open_and_resolve,
    post_batch,
    spike,
)
from conftest import free_port

from anomalyd.alerting import OPENED, RESOLVED
from anomalyd.delivery.sender import REFUSALS

TOKEN = "alerts-api-token-that-must-stay-home"
ROOT = Path(__file__).resolve().parent.parent


def authorized(server):
    server.session.headers["Authorization"] = f"Bearer {TOKEN}"
    return server


def metric(server, name: str) -> float:
    text = server.get("/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def readme_verify():
    """The signature check the README gives receivers, as it is written there."""
    readme = (ROOT / "README.md").read_text()
    (code,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
        if "def verify(" in b
    ]
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the README's own example, run as written
    return scope["verify"]


def first_seen(accepted: list[dict]) -> list[dict]:
    seen, found = set(), []
    for event in accepted:
        if event["id"] not in seen:
            seen.add(event["id"])
            found.append(event)
    return found


def test_webhooks_are_signed_retried_and_arrive_in_order_at_least_once(
    make_server, tmp_path
):
    secret = new_secret()
    secret_file = tmp_path / "webhook_secret"
    secret_file.write_text(secret + "\n")

    def answer(n: int, request: dict):
        if n <= 2:
            return 500
        if n == 3:
            return ("hang", 2.5)  # past alert_timeout (1 s)
        return 200

    receiver = Receiver(secret, answer, forbidden=(TOKEN,))
    server = authorized(
        make_server(
            extra=alert_flags(
                webhook_url=receiver.url,
                webhook_secret_file=secret_file,
                alert_timeout=1,
                public_url="https://anomalyd.example.com/",
            ),
            env={"ANOMALYD_API_TOKEN": TOKEN},
        )
    )
    sent: dict[str, list] = {}
    streams = ["pump-1", "pump-2", "pump-3"]
    for stream in streams:
        r = server.session.put(
            f"{server.url}/streams/{stream}",
            json={"labels": {"site": "plant-2", "severity": "page"}},
            timeout=30,
        )
        assert r.status_code == 200, r.text
    at = dict.fromkeys(streams, 0)
    for _ in range(2):
        for stream in streams:
            sent.setdefault(stream, [])
            at[stream] = open_and_resolve(server, stream, at[stream], sent=sent[stream])
    expected = {stream: expected_changes(sent[stream]) for stream in streams}
    # Each spike opened an alert and calm points resolved it.
    for changes in expected.values():
        assert [kind for kind, _ in changes] == [OPENED, RESOLVED] * 2, expected
    total = sum(len(changes) for changes in expected.values())

    receiver.wait_for(lambda: len(set(receiver.ids())) == total, timeout=90)
    assert receiver.bad_signatures == 0
    assert receiver.leaks == []
    assert receiver.max_inflight <= 2  # the hung request, and the retry after it
    verify = readme_verify()  # the README's check accepts them, and only them
    for request in receiver.requests:
        assert verify(secret, request["headers"], request["body"])["id"]
        with pytest.raises(ValueError, match="bad signature"):
            verify(secret, request["headers"], request["body"] + b" ")
    received = first_seen(receiver.accepted)
    for stream in streams:
        mine = [e for e in received if e["data"]["series_id"] == stream]
        # In order per stream: the changes a replay of the requests makes.
        assert [(e["type"], e["data"]["episode"]) for e in mine] == expected[stream]
        assert all(
            e["data"]["labels"] == {"site": "plant-2", "severity": "page"} for e in mine
        )
        assert mine[0]["data"]["plot_url"] == (
            f"https://anomalyd.example.com/plot?stream={stream}"
        )
        assert mine[1]["data"]["resolved_at"] is not None
    # No event that did not happen: each one is in the outbox, the same document
    # (delivered once the sender has committed, within SAVE_AFTER).
    deadline = time.monotonic() + 10
    while all_alerts(server, "pending") and time.monotonic() < deadline:
        time.sleep(0.1)
    stored = {e["id"]: e for e in all_alerts(server)}
    assert len(stored) == total
    for event in received:
        assert stored[event["id"]]["type"] == event["type"]
        assert stored[event["id"]]["data"] == event["data"]
        assert stored[event["id"]]["timestamp"] == event["timestamp"]
    # Every attempt of one event carries its id; the failed ones show in the outbox.
    first = receiver.requests[0]["headers"]["webhook-id"]
    assert [r["headers"]["webhook-id"] for r in receiver.requests[:4]] == [first] * 4
    webhook = stored[first]["receivers"][0]
    assert webhook["state"] == "delivered" and webhook["attempts"] == 4
    assert all(e["state"] == "delivered" for e in stored.values())
    assert metric(server, 'anomalyd_alerts_sent_total{kind="webhook"}') == total
    assert metric(server, 'anomalyd_alerts_attempts_failed_total{kind="webhook"}') == 3
    assert metric(server, 'anomalyd_alerts_pending{kind="webhook"}') == 0
    assert metric(server, "anomalyd_alerts_firing") == 0
    receiver.close()


def test_redirects_are_not_followed_and_refused_events_are_marked_failed(make_server):
    secret = new_secret()
    elsewhere = Receiver(secret, forbidden=(TOKEN,))
    redirecting = Receiver(
        secret, lambda n, r: ("redirect", elsewhere.url), forbidden=(TOKEN,)
    )
    server = authorized(
        make_server(
            extra=alert_flags(
                webhook_url=redirecting.url, webhook_secret=secret, alert_timeout=2
            ),
            env={"ANOMALYD_API_TOKEN": TOKEN},
        )
    )
    sent = []
    open_and_resolve(server, "valve", sent=sent)
    expected = expected_changes(sent)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        failed = all_alerts(server, "failed")
        if len(failed) == len(expected):
            break
        time.sleep(0.5)
    assert [(e["type"], e["data"]["episode"]) for e in failed] == expected
    for event in failed:
        (state,) = event["receivers"]
        assert state["state"] == "failed" and state["attempts"] == REFUSALS
        assert "redirect" in state["last_error"]
        assert "not followed" in state["last_error"]
    assert len(redirecting.requests) == len(expected) * REFUSALS
    assert elsewhere.requests == []  # never followed
    assert redirecting.leaks == [] and redirecting.bad_signatures == 0
    assert all_alerts(server, "pending") == []
    assert metric(server, 'anomalyd_alerts_failed_total{kind="webhook"}') == len(
        expected
    )


def test_a_receiver_that_never_answers_holds_only_itself(make_server):
    secret = new_secret()
    silent = Receiver(secret, lambda n, r: ("hang", 60))
    good = Receiver(secret)
    closed = f"http://127.0.0.1:{free_port()}/nobody"  # connection refused
    server = make_server(
        extra=alert_flags(
            webhook_url=[silent.url, good.url, closed],
            webhook_secret=secret,
            alert_timeout=1,
        )
    )
    took = []
    for i in range(4):
        started = time.perf_counter()
        open_and_resolve(server, f"line-{i}")
        took.append(time.perf_counter() - started)
    good.wait_for(lambda: len(set(good.ids())) == 8, timeout=60)
    received = first_seen(good.accepted)
    for i in range(4):
        mine = [e["type"] for e in received if e["data"]["series_id"] == f"line-{i}"]
        assert mine == [OPENED, RESOLVED]
    assert silent.accepted == [] and silent.requests  # tried, and it hung
    # Observes never wait for a receiver: four streams' requests (warm-up, spike,
    # calm: 3 requests each) took far less than one hung attempt each.
    assert max(took) < 10, took
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until each has failed at least once
        pending = all_alerts(server, "pending")
        kinds = {r["url"]: r for r in pending[0]["receivers"]}
        if (
            kinds[silent.url]["last_error"]
            and kinds[closed]["last_error"]
            and all(
                {r["url"]: r for r in e["receivers"]}[good.url]["state"] == "delivered"
                for e in pending
            )
        ):
            break
        time.sleep(0.2)
    assert len(pending) == 8
    assert kinds[good.url]["state"] == "delivered"
    assert kinds[silent.url]["state"] == "pending"
    assert "no answer within 1 s" in (kinds[silent.url]["last_error"] or "")
    assert kinds[closed]["state"] == "pending"
    assert "refused" in (kinds[closed]["last_error"] or "")
    assert metric(server, 'anomalyd_alerts_pending{kind="webhook"}') == 16
    assert metric(server, "anomalyd_alerts_oldest_pending_age_seconds") > 0
    good.close()


def test_one_worker_delivers_at_a_time(make_server):
    secret = new_secret()
    receiver = Receiver(secret)
    server = make_server(
        extra=alert_flags(webhook_url=receiver.url, webhook_secret=secret)
    )
    lock = server.data_dir / "alerts.lock"
    for i in range(12):
        open_and_resolve(server, f"mixer-{i}")
    receiver.wait_for(lambda: len(set(receiver.ids())) == 24, timeout=60)
    assert receiver.max_inflight == 1  # never two deliveries at once
    assert len(receiver.ids()) == 24  # nothing twice without a failure
    holder = int(lock.read_text())
    assert holder in server.worker_pids()
    assert os.path.exists(f"/proc/{holder}")


def test_deleting_a_stream_resolves_its_alert(make_server):
    secret = new_secret()
    receiver = Receiver(secret)
    server = make_server(
        extra=alert_flags(webhook_url=receiver.url, webhook_secret=secret)
    )
    ts, xs = calm(80)
    post_batch(server, "kiln", ts, xs)
    spike(server, "kiln", T0 + STEP * 80)
    html = server.get("/", headers={"Accept": "text/html"}).text
    assert "1 alert firing" in html and "/plot?stream=kiln" in html
    assert server.delete("/streams/kiln").status_code == 200
    receiver.wait_for(lambda: len(receiver.ids()) == 2)
    opened, resolved = receiver.accepted
    assert (opened["type"], resolved["type"]) == (OPENED, RESOLVED)
    assert resolved["data"]["deleted"] is True
    assert resolved["data"]["resolved_at"] is None
    html = server.get("/", headers={"Accept": "text/html"}).text
    assert "alert firing" not in html


def test_alerts_pages_and_refuses_bad_parameters(make_server):
    server = make_server(extra=alert_flags())  # no receiver: events are still kept
    for i in range(3):
        open_and_resolve(server, f"belt-{i}")
    everything = all_alerts(server)
    assert len(everything) == 6
    assert all(e["state"] == "delivered" and e["receivers"] == [] for e in everything)
    one_by_one = all_alerts(server, limit=1)
    assert [e["id"] for e in one_by_one] == [e["id"] for e in everything]
    assert all_alerts(server, "pending") == [] and all_alerts(server, "failed") == []
    for params, words in (
        ({"state": "sent"}, "state must be one of pending, failed, delivered"),
        ({"after": "12"}, "after must be an event id"),
        ({"after": everything[0]["id"] + "\n"}, "after must be an event id"),
        ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ({"limit": ""}, "limit must be an integer"),
    ):
        r = server.get("/alerts", params=params)
        assert r.status_code == 400, (params, r.text)
        assert words in r.json()["description"], r.json()


@pytest.mark.parametrize("workers", [2])
def test_a_full_outbox_drops_the_oldest_undelivered_and_says_so(make_server, workers):
    closed = f"http://127.0.0.1:{free_port()}/down"
    server = make_server(
        workers=workers,
        extra=alert_flags(
            webhook_url=closed,
            webhook_secret=new_secret(),
            outbox_max_events=100,
            alert_resolve_after=0,
        ),
    )
    # A low threshold: an episode at every spike, one alert each (resolve_after 0).
    assert (
        server.session.put(
            f"{server.url}/streams/spiky", json={"threshold": 0.05}, timeout=30
        ).status_code
        == 200
    )
    ts, xs = calm(40)
    post_batch(server, "spiky", ts, xs)
    ts, xs = calm(1200, 40)
    xs = [x + (400 * (1 + i // 12) if i % 12 == 0 else 0) for i, x in enumerate(xs)]
    post_batch(server, "spiky", ts, xs)
    kept = all_alerts(server)
    assert len(kept) == 100
    dropped = metric(server, "anomalyd_alerts_dropped_total")
    assert dropped > 0
    assert metric(server, "anomalyd_alerts_events") == 100
    # The newest are kept, in order, with no gap.
    numbers = [int(e["id"].split("-")[1]) for e in kept]
    assert numbers == list(range(numbers[0], numbers[0] + 100))
    assert numbers[0] == dropped
    log = (server.data_dir.parent / f"server-{server.port}.log").read_text()
    assert "the alerts' outbox is full (outbox_max_events 100)" in log


def test_receivers_are_known_by_url_across_restarts(make_server, tmp_path):
    secret = new_secret()
    first, second = Receiver(secret), Receiver(secret)
    data_dir = tmp_path / "data"
    flags = alert_flags(webhook_url=first.url, webhook_secret=secret)
    server = make_server(data_dir=data_dir, extra=flags)
    open_and_resolve(server, "old")
    first.wait_for(lambda: len(first.ids()) == 2)
    assert server.stop() == 0
    # Restarted with another receiver: the first is forgotten (said in the log), the
    # second gets what happens from now on, not what came before it.
    flags = alert_flags(webhook_url=second.url, webhook_secret=secret)
    server = make_server(data_dir=data_dir, extra=flags)
    open_and_resolve(server, "new")
    second.wait_for(lambda: len(second.ids()) == 2)
    time.sleep(0.5)
    assert {e["data"]["series_id"] for e in second.accepted} == {"new"}
    assert len(first.ids()) == 2
    events = all_alerts(server)
    assert [len(e["receivers"]) for e in events] == [0, 0, 1, 1]
    log = (server.data_dir.parent / f"server-{server.port}.log").read_text()
    assert f"alert receiver webhook {first.url} is no longer configured" in log
