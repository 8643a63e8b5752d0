"""Streams under concurrency and crashes, over a real ``anomalyd serve`` (2 workers).

The stored records are read straight from LMDB once the service is stopped and
compared, byte for byte (the detector's state included), with a sequential replay
of the requests in process (``anomalyd.streams.learn``).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import lmdb
import requests
from stream_client import T0, assert_error

from anomalyd.alerting import follow_learned
from anomalyd.settings import Settings
from anomalyd.store import MAX_DBS
from anomalyd.store.streams import _encode, decode_record
from anomalyd.streams import StreamConfig, learn, new_record

DEFAULTS = Settings()
CONFIG = StreamConfig(
    DEFAULTS.stream_threshold, DEFAULTS.stream_direction, DEFAULTS.stream_warmup
)


def stored_records(data_dir) -> tuple[dict, int]:
    """Every stream's record, and the last transaction id (commits made), read from
    the store of a stopped service."""
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=MAX_DBS)
    try:
        with env.begin() as txn:
            db = env.open_db(b"streams", txn=txn, create=False)
            records = {
                bytes(k).decode(): decode_record(bytes(v), bytes(k))
                for k, v in txn.cursor(db=db)
            }
        return records, env.info()["last_txnid"]
    finally:
        env.close()


def replay(requests_in_order) -> object:
    record = new_record(CONFIG)
    for ts, xs in requests_in_order:
        done = learn(record, ts, xs)
        follow_learned(record, done, DEFAULTS.alert_resolve_after)  # its alert
        record = done.record
    return record


def same_state(found, expected) -> None:
    """The stored record is the replay's, but for the storage bookkeeping."""
    found.keys = expected.keys = 0
    found.history_from = expected.history_from = 0
    assert _encode(found) == _encode(expected)


# -- 100 concurrent observes of one stream ---------------------------------------------


def test_concurrent_observes_of_one_stream_apply_one_after_another(make_server):
    server = make_server()
    values = [50.0 + (i * 7919 % 101) / 10 for i in range(100)]

    def send(i: int) -> dict:
        with requests.Session() as session:
            r = session.post(
                f"{server.url}/observe/hot",
                json={"timestamp": T0, "value": values[i]},
                timeout=60,
            )
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, range(100)))
    # Each request saw its own place in the sequence: points 1..100, no two alike.
    assert sorted(a["points"] for a in answers) == list(range(1, 101))
    points = server.get("/streams/hot/points", params={"limit": 1000}).json()["points"]
    order = [p["value"] for p in points]
    assert sorted(order) == sorted(values)
    # The stored history is the order they were learned in: each answer is the one
    # the replay gives at its place.
    by_place = {a["points"]: a for a in answers}
    replayed = new_record(CONFIG)
    for place, value in enumerate(order, start=1):
        done = learn(replayed, (T0,), (value,))
        follow_learned(replayed, done, DEFAULTS.alert_resolve_after)
        replayed = done.record
        assert by_place[place]["score"] == done.scores[0]
        assert values[answers.index(by_place[place])] == value
    server.stop()
    records, commits = stored_records(server.data_dir)
    same_state(records["hot"], replayed)
    # Concurrent observes shared commits: fewer durable commits than observes
    # (the store's creation and migration take a few).
    print(f"100 concurrent observes in {commits} commits")
    assert commits < 100


# -- SIGKILL during an observe storm ---------------------------------------------------


def route(name: str, ts: list, xs: list) -> tuple[str, dict]:
    """One point goes to the single-point route, more to the batch route."""
    if len(ts) == 1:
        return f"/observe/{name}", {"timestamp": ts[0], "value": xs[0]}
    return f"/observe/{name}/batch", {"timestamps": ts, "values": xs}


class Storm:
    """Client threads, each owning some streams, sending keyed single and batch
    observes with rising timestamps; every acknowledged request is recorded."""

    def __init__(self, url: str, threads: int, streams_each: int, retry: bool):
        self.url = url
        self.retry = retry  # retry a failed request with its key until answered
        self.stop = threading.Event()
        self.acked: dict[str, list[tuple]] = {}  # stream -> [(ts, xs, key, answer)]
        self.unknown: dict[str, tuple] = {}  # stream -> the request in flight
        self.sent = 0
        self.lock = threading.Lock()
        self.owners = [
            [f"storm-{t}-{s}" for s in range(streams_each)] for t in range(threads)
        ]
        self.threads = [
            threading.Thread(target=self.run, args=(names, t), daemon=True)
            for t, names in enumerate(self.owners)
        ]

    def start(self) -> Storm:
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def run(self, names: list[str], seed: int) -> None:
        rng = random.Random(seed)
        clock = dict.fromkeys(names, T0)
        live = list(names)
        session = requests.Session()
        while live and not self.stop.is_set():
            name = rng.choice(live)
            n = rng.choice((1, 1, 1, 5, 40))
            ts = [clock[name] + 60 * i for i in range(n)]
            xs = [round(rng.gauss(50, 2) + (30 if rng.random() < 0.02 else 0), 3)]
            xs += [round(rng.gauss(50, 2), 3) for _ in range(n - 1)]
            key = uuid.uuid4().hex
            answer = self.send(session, name, ts, xs, key)
            if answer is None:
                with self.lock:
                    self.unknown[name] = (ts, xs, key)
                live.remove(name)  # its next request would depend on this one
                continue
            clock[name] = ts[-1] + 60
            with self.lock:
                self.acked.setdefault(name, []).append((ts, xs, key, answer))
        session.close()

    def send(self, session, name, ts, xs, key) -> bytes | None:
        path, body = route(name, ts, xs)
        while True:
            with self.lock:
                self.sent += 1
            try:
                r = session.post(
                    self.url + path,
                    json=body,
                    headers={"Idempotency-Key": key},
                    timeout=30,
                )
                if r.status_code == 200:
                    return r.content
                assert r.status_code >= 500, r.text
            except requests.RequestException:
                pass
            if not self.retry or self.stop.is_set():
                return None
            time.sleep(0.05)


def check_against_replay(storm: Storm, records: dict, learned_unknown: set) -> None:
    for names in storm.owners:
        for name in names:
            done = [(ts, xs) for ts, xs, _, _ in storm.acked.get(name, [])]
            if name in learned_unknown:
                ts, xs, _ = storm.unknown[name]
                done.append((ts, xs))
            if not done:
                assert name not in records
                continue
            same_state(records[name], replay(done))


def test_sigkill_of_the_service_during_a_storm_loses_and_doubles_nothing(make_server):
    server = make_server()
    storm = Storm(server.url, threads=12, streams_each=5, retry=False).start()
    time.sleep(3.0)
    server.stop(signal.SIGKILL)
    storm.join()
    acked = sum(len(v) for v in storm.acked.values())
    assert acked > 50, f"only {acked} requests answered before the kill"
    assert storm.unknown, "no request was in flight at the kill"

    # After a restart every acknowledged point is there exactly once, and at most
    # the requests in flight on top.
    server = make_server(data_dir=server.data_dir)
    learned_unknown = set()
    for names in storm.owners:
        for name in names:
            acked_points = sum(len(ts) for ts, *_ in storm.acked.get(name, []))
            r = server.get(f"/streams/{name}")
            points = r.json()["points"] if r.status_code == 200 else 0
            if r.status_code != 200:
                assert_error(r, 404)
            in_flight = len(storm.unknown[name][0]) if name in storm.unknown else 0
            assert points in (acked_points, acked_points + in_flight), name
            if in_flight and points == acked_points + in_flight:
                learned_unknown.add(name)

    print(
        f"{acked} requests answered before the kill; {len(storm.unknown)} in flight, "
        f"{len(learned_unknown)} of which had been committed"
    )
    # Retries of the requests in flight with their keys learn each exactly once:
    # those the kill had committed answer from their key and learn nothing.
    for name, (ts, xs, key) in storm.unknown.items():
        r = server.post(*route(name, ts, xs), headers={"Idempotency-Key": key})
        assert r.status_code == 200, r.text
        acked_points = sum(len(t) for t, *_ in storm.acked.get(name, []))
        assert r.json()["points"] == acked_points + len(ts)
        # Retrying an answered request gives its first answer and learns nothing.
        for ts0, xs0, key0, answer in storm.acked.get(name, [])[-1:]:
            again = server.post(
                *route(name, ts0, xs0), headers={"Idempotency-Key": key0}
            )
            assert again.content == answer
        assert server.get(f"/streams/{name}").json()["points"] == acked_points + len(ts)
    server.stop()
    records, _ = stored_records(server.data_dir)
    check_against_replay(storm, records, set(storm.unknown))


def test_sigkill_of_single_workers_during_a_storm(make_server):
    server = make_server()
    storm = Storm(server.url, threads=12, streams_each=4, retry=True).start()
    killed = 0
    for _ in range(3):
        time.sleep(1.0)
        pids = server.worker_pids()
        if pids:
            os.kill(random.choice(pids), signal.SIGKILL)
            killed += 1
        deadline = time.monotonic() + 30
        while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(1.0)
    storm.join()
    assert killed == 3
    assert not storm.unknown, "every request is answered in the end (retried)"
    retried = storm.sent - sum(len(v) for v in storm.acked.values())
    print(f"{storm.sent} requests sent, {retried} of them retries after a kill")
    for names in storm.owners:
        for name in names:
            sent_points = sum(len(ts) for ts, *_ in storm.acked.get(name, []))
            got = server.get(f"/streams/{name}").json()["points"]
            assert got == sent_points, name
    server.stop()
    records, _ = stored_records(server.data_dir)
    check_against_replay(storm, records, set())


# -- a full store ------------------------------------------------------------------


def test_a_full_store_refuses_observes_and_still_deletes(make_server):
    server = make_server(extra=["--map-size", str(2 << 20)])
    ts = [T0 + 60 * i for i in range(300)]
    assert server.post(
        "/observe/kept/batch", {"timestamps": ts, "values": [50.0] * 300}
    ).ok
    # Fill the store with fits until it refuses, smaller and smaller.
    fits = 0
    for n in (4000, 400, 40, 3):
        while True:
            fits += 1
            r = server.post(
                f"/fit/filler-{fits}",
                {
                    "timestamps": list(range(n)),
                    "values": [float(j % 7) for j in range(n)],
                },
            )
            if r.status_code == 507:
                break
            assert r.status_code == 200, r.text
            assert fits < 2000, "the store never filled up"
    before = server.get("/streams/kept").json()
    history = server.get("/streams/kept/points", params={"limit": 1000}).json()
    # New streams and new points are refused (507) and change nothing...
    big = [T0 + 60 * (300 + i) for i in range(3000)]
    refused = server.post(
        "/observe/kept/batch", {"timestamps": big, "values": [51.0] * 3000}
    )
    assert_error(refused, 507, "full")
    r = server.post("/observe/new-1", {"timestamp": T0, "value": 1.0})
    assert_error(r, 507, "full")
    r = server.post("/observe/kept", {"timestamp": big[0], "value": 1.0})
    assert_error(r, 507, "full")
    assert server.get("/streams/kept").json() == before
    assert server.get("/streams/kept/points", params={"limit": 1000}).json() == history
    assert_error(server.get("/streams/new-1"), 404)
    # ... and a stream can always be deleted.
    deleted = server.delete("/streams/kept")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"series_id": "kept", "deleted_points": 300}
    assert server.get("/streams/kept").status_code == 404
