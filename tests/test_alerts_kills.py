"""SIGKILL and alerts, over a real ``anomalyd serve`` (2 workers): an answered observe
that opened an alert is delivered after a restart, however soon after the answer the
whole service died; killing the delivering worker mid-delivery loses nothing (another
worker takes over); 20 kills in a storm of observes across 100 streams deliver every
acknowledged opening. Duplicates (a delivery whose success was not yet committed)
are counted and printed."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid

import requests
from alert_client import (
    CALM_AFTER,
    STEP,
    T0,
    WARMUP,
    Receiver,
    alert_flags,
    calm,
    expected_changes,
    new_secret,
    post_batch,
    spike,
)
from conftest import Server

from anomalyd.alerting import OPENED


def opened_ids(receiver: Receiver, stream: str) -> list[str]:
    with receiver.lock:
        return [
            e["id"]
            for e in receiver.accepted
            if e["data"]["series_id"] == stream and e["type"] == OPENED
        ]


def test_an_answered_opening_is_delivered_after_the_whole_service_is_killed(
    make_server, tmp_path
):
    secret = new_secret()
    refusing = threading.Event()
    receiver = Receiver(secret, lambda n, r: 503 if refusing.is_set() else 200)
    flags = alert_flags(webhook_url=receiver.url, webhook_secret=secret)
    data_dir = tmp_path / "data"
    duplicates = 0
    for round_ in range(6):
        # Half the rounds, the receiver refuses until after the kill: the event
        # cannot have left before it. The others race the kill.
        if round_ % 2 == 0:
            refusing.set()
        server = make_server(data_dir=data_dir, extra=flags)
        stream = f"oven-{round_}"
        ts, xs = calm(WARMUP + 60)
        post_batch(server, stream, ts, xs)
        spike(server, stream, T0 + STEP * (WARMUP + 60))  # answered: it opened
        server.stop(signal.SIGKILL)
        if refusing.is_set():
            assert opened_ids(receiver, stream) == []
            refusing.clear()
        again = make_server(data_dir=data_dir, extra=flags)
        receiver.wait_for(lambda s=stream: opened_ids(receiver, s), timeout=60)
        duplicates += len(opened_ids(receiver, stream)) - 1
        again.stop()
    assert receiver.bad_signatures == 0
    print(f"\nkilled right after the answer, 6 rounds: {duplicates} duplicates")


def test_killing_the_delivering_worker_mid_delivery_loses_nothing(make_server):
    secret = new_secret()
    receiver = Receiver(secret, lambda n, r: ("hang", 4) if n == 1 else 200)
    server = make_server(
        extra=alert_flags(
            webhook_url=receiver.url, webhook_secret=secret, alert_timeout=10
        )
    )
    lock = server.data_dir / "alerts.lock"
    ts, xs = calm(WARMUP + 60)
    post_batch(server, "press", ts, xs)
    spike(server, "press", T0 + STEP * (WARMUP + 60))
    assert receiver.arrived.wait(30)  # the delivery is in flight (and held)
    holder = int(lock.read_text())
    assert holder in server.worker_pids()
    os.kill(holder, signal.SIGKILL)
    killed = time.monotonic()
    receiver.wait_for(lambda: opened_ids(receiver, "press"), timeout=60)
    print(
        f"\ndelivered {time.monotonic() - killed:.2f} s after the delivering worker's kill"
    )
    # Another worker holds the lock now (the survivor, or the one respawned).
    taker = int(lock.read_text())
    assert taker != holder and taker in server.worker_pids()
    assert len(receiver.requests) == 2  # the one cut short, and the one accepted
    assert (
        receiver.requests[0]["headers"]["webhook-id"]
        == (receiver.requests[1]["headers"]["webhook-id"])
    )


class Storm:
    """Client threads, each owning some streams, each sending that stream's requests
    in order, every one with its Idempotency-Key again until it is answered (so
    every request is learned exactly once, and the stream is a replay of them)."""

    def __init__(self, threads: int, streams_each: int) -> None:
        self.url = ""
        self.stop = threading.Event()
        self.sent: dict[str, list] = {}
        self.answered = 0
        self.lock = threading.Lock()
        self.owners = [
            [f"storm-{t}-{s}" for s in range(streams_each)] for t in range(threads)
        ]
        self.threads = [
            threading.Thread(target=self.run, args=(names, t), daemon=True)
            for t, names in enumerate(self.owners)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(300)
            assert not thread.is_alive()

    def run(self, names: list[str], seed: int) -> None:
        rng = random.Random(seed)
        at = dict.fromkeys(names, 0)
        quiet = dict.fromkeys(names, 0)
        spikes = dict.fromkeys(names, 0)
        session = requests.Session()
        while not self.stop.is_set():
            name = rng.choice(names)
            if at[name] == 0:
                ts, xs = calm(WARMUP + 40)
            elif quiet[name] >= CALM_AFTER and rng.random() < 0.3:
                spikes[name] += 1
                ts, xs = [T0 + STEP * at[name]], [500.0 * 2.0 ** spikes[name]]
                quiet[name] = -1
            else:
                ts, xs = calm(rng.choice((1, 1, 3, 6)), at[name])
            self.send(session, name, ts, xs)
            at[name] += len(ts)
            quiet[name] += len(ts)
        session.close()

    def send(self, session, name: str, ts: list, xs: list) -> None:
        key = uuid.uuid4().hex
        if len(ts) == 1:
            path, body = f"/observe/{name}", {"timestamp": ts[0], "value": xs[0]}
        else:
            path, body = f"/observe/{name}/batch", {"timestamps": ts, "values": xs}
        while True:
            try:
                r = session.post(
                    self.url + path,
                    json=body,
                    headers={"Idempotency-Key": key},
                    timeout=30,
                )
                if r.status_code == 200:
                    break
                assert r.status_code >= 500, r.text
            except requests.RequestException:
                pass
            time.sleep(0.05)
        with self.lock:
            self.sent.setdefault(name, []).append((ts, xs))
            self.answered += 1


def test_every_acknowledged_opening_is_delivered_through_20_kills(tmp_path):
    secret = new_secret()
    receiver = Receiver(secret)
    flags = alert_flags(webhook_url=receiver.url, webhook_secret=secret)
    data_dir = tmp_path / "data"
    storm = Storm(threads=4, streams_each=25)
    server = Server(data_dir, extra=flags).start()
    storm.url = server.url
    storm.start()
    rng = random.Random(13)
    try:
        for _ in range(20):
            time.sleep(rng.uniform(0.5, 1.5))
            server.stop(signal.SIGKILL)
            server = Server(data_dir, extra=flags).start()
            storm.url = server.url
        time.sleep(1)
        storm.join()
        expected = {name: expected_changes(done) for name, done in storm.sent.items()}
        opened = {
            (name, episode)
            for name, changes in expected.items()
            for kind, episode in changes
            if kind == OPENED
        }
        every = {
            (name, kind, episode)
            for name, changes in expected.items()
            for kind, episode in changes
        }
        assert len(opened) >= 50, len(opened)  # the storm opened alerts

        def got() -> set:
            with receiver.lock:
                return {
                    (e["data"]["series_id"], e["type"], e["data"]["episode"])
                    for e in receiver.accepted
                }

        receiver.wait_for(lambda: got() >= every, timeout=120)
        assert got() == every  # and none that did not happen
        ids = receiver.ids()
        duplicates = len(ids) - len(set(ids))
        # In order per stream: each stream's first deliveries follow its changes.
        seen: set[str] = set()
        by_stream: dict[str, list] = {}
        with receiver.lock:
            for e in receiver.accepted:
                if e["id"] not in seen:
                    seen.add(e["id"])
                    by_stream.setdefault(e["data"]["series_id"], []).append(
                        (e["type"], e["data"]["episode"])
                    )
        for name, changes in expected.items():
            assert by_stream.get(name, []) == changes, name
        assert receiver.bad_signatures == 0
        print(
            f"\n20 kills, {storm.answered} observes answered across 100 streams: "
            f"{len(opened)} alerts opened, {len(every)} events, all delivered; "
            f"{duplicates} duplicates ({len(ids)} deliveries)"
        )
    finally:
        server.stop(signal.SIGKILL)
        receiver.close()


def test_a_reload_hands_delivery_to_the_new_workers(make_server):
    secret = new_secret()
    receiver = Receiver(secret)
    server = make_server(
        extra=alert_flags(webhook_url=receiver.url, webhook_secret=secret)
    )
    lock = server.data_dir / "alerts.lock"
    ts, xs = calm(WARMUP + 60)
    post_batch(server, "line", ts, xs)
    spike(server, "line", T0 + STEP * (WARMUP + 60))
    receiver.wait_for(lambda: opened_ids(receiver, "line"))
    old = set(server.worker_pids())
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = set(server.worker_pids())
        if len(now) == 2 and not now & old:
            break
        time.sleep(0.1)
    assert len(now) == 2 and not now & old, (old, now)
    ts, xs = calm(CALM_AFTER, WARMUP + 61)
    post_batch(server, "line", ts, xs)  # resolves the alert
    receiver.wait_for(lambda: len(receiver.ids()) == 2)
    assert int(lock.read_text()) in now
