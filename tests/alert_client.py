"""What the alerts' tests share: a webhook receiver of their own (it checks every
signature, looks for leaked secrets, and answers as a test tells it to), points that
open and resolve alerts, and the alerts a replay of the requests says must exist."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import threading
import time
from collections.abc import Callable

from anomalyd.alerting import follow_learned
from anomalyd.streams import StreamConfig, learn, new_record

T0 = 1_700_000_000
STEP = 60
WARMUP = 20
RESOLVE_AFTER = 300  # seconds of stream time: 5 points
# Calm points after a spike: past RESOLVE_AFTER, and past the 10 points after an
# alarm during which the detector scores at most 0.3 (docs/detector.md).
CALM_AFTER = max(RESOLVE_AFTER // STEP + 2, 11)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def alert_flags(**more) -> list[str]:
    """Flags of a service that opens alerts quickly (small warm-up)."""
    flags = [
        "--stream-warmup",
        str(WARMUP),
        "--alert-resolve-after",
        str(RESOLVE_AFTER),
    ]
    for name, value in more.items():
        for item in value if isinstance(value, list) else [value]:
            flags += ["--" + name.replace("_", "-"), str(item)]
    return flags


class Receiver:
    """A webhook receiver on a loopback port. ``answer(n, request)`` decides, for the
    n-th request (from 1), what to do: an int status, ``("hang", seconds)`` (answer
    nothing for that long, then close), or ``("redirect", location)``. Only requests
    answered 2xx count as accepted."""

    def __init__(
        self,
        secret: str | None = None,
        answer: Callable[[int, dict], object] | None = None,
        forbidden: tuple[str, ...] = (),
        path: str = "/hook",
    ) -> None:
        self.secret = secret
        self.key = None if secret is None else base64.b64decode(secret[6:])
        self.answer = answer or (lambda n, request: 200)
        # Strings that must never reach a receiver (the api token, the secret).
        self.forbidden = tuple(f for f in forbidden if f) + (
            () if secret is None else (secret, secret[6:])
        )
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.accepted: list[dict] = []  # parsed bodies answered 2xx, in order
        self.bad_signatures = 0
        self.leaks: list[str] = []
        self.inflight = 0
        self.max_inflight = 0
        self.arrived = threading.Event()  # set at each request's arrival
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        raw = (h.requestline + "\r\n" + str(h.headers)).encode() + body
        request = {
            "at": time.time(),
            "path": h.path,
            "headers": {k.lower(): v for k, v in h.headers.items()},
            "body": body,
        }
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.requests.append(request)
            n = len(self.requests)
            for secret in self.forbidden:
                if secret.encode() in raw:
                    self.leaks.append(secret)
            if self.key is not None and not self.signed(request):
                self.bad_signatures += 1
        self.arrived.set()
        action = self.answer(n, request)
        if isinstance(action, tuple) and action[0] == "hang":
            time.sleep(action[1])
            self._done()
            h.close_connection = True
            return
        if isinstance(action, int) and 200 <= action < 300:
            with self.lock:  # the receiver has it, whether its answer arrives or not
                request["accepted_at"] = time.time()
                self.accepted.append(json.loads(body))
        self._done()  # before answering: the sender may go on once it has the answer
        if isinstance(action, tuple) and action[0] == "redirect":
            h.send_response(307)
            h.send_header("Location", action[1])
        else:
            h.send_response(action)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _done(self) -> None:
        with self.lock:
            self.inflight -= 1

    def signed(self, request: dict) -> bool:
        """Standard Webhooks: HMAC-SHA256 of id.timestamp.body, within 5 minutes."""
        headers = request["headers"]
        try:
            message_id = headers["webhook-id"]
            stamp = headers["webhook-timestamp"]
            given = headers["webhook-signature"]
        except KeyError:
            return False
        if abs(time.time() - int(stamp)) > 300:
            return False
        signed = f"{message_id}.{stamp}.".encode() + request["body"]
        expected = base64.b64encode(
            hmac.new(self.key, signed, hashlib.sha256).digest()
        ).decode()
        return any(
            hmac.compare_digest(f"v1,{expected}", part) for part in given.split(" ")
        )

    def ids(self) -> list[str]:
        with self.lock:
            return [event["id"] for event in self.accepted]

    def wait_for(self, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"not received within {timeout} s: {self.summary()}")

    def summary(self) -> str:
        with self.lock:
            return (
                f"{len(self.requests)} requests, {len(self.accepted)} accepted: "
                f"{[(e['type'], e['data']['series_id']) for e in self.accepted][-10:]}"
            )


def calm(n: int, start: int = 0, t0: int = T0) -> tuple[list[int], list[float]]:
    """``n`` ordinary points from point number ``start``."""
    ts = [t0 + STEP * i for i in range(start, start + n)]
    # A small, even wobble: nothing in it looks unusual to the detector.
    return ts, [50 + (i * 7919 % 13) / 10 for i in range(start, start + n)]


def open_and_resolve(
    server, stream: str, start: int = 0, t0: int = T0, sent: list | None = None
) -> int:
    """Warm a stream (when ``start`` is 0), jump higher than ever, then calm points
    past ``RESOLVE_AFTER``: one alert opens and resolves. Returns the next point
    number; ``sent`` gets the requests (timestamps, values)."""
    sent = [] if sent is None else sent
    if start == 0:
        ts, xs = calm(WARMUP + 60, 0, t0)
        post_batch(server, stream, ts, xs)
        sent.append((ts, xs))
        start = WARMUP + 60
    t = t0 + STEP * start
    value = 500.0 * 2.0 ** (start // 12)  # beyond any earlier spike
    spike(server, stream, t, value)
    sent.append(([t], [value]))
    ts, xs = calm(CALM_AFTER, start + 1, t0)
    post_batch(server, stream, ts, xs)
    sent.append((ts, xs))
    return start + 1 + CALM_AFTER


def spike(server, stream: str, t: int, value: float = 500.0) -> dict:
    r = server.post(f"/observe/{stream}", {"timestamp": t, "value": value})
    assert r.status_code == 200, r.text
    assert r.json()["anomaly"], r.json()
    return r.json()


def post_batch(server, stream: str, ts, xs) -> dict:
    r = server.post(f"/observe/{stream}/batch", {"timestamps": ts, "values": xs})
    assert r.status_code == 200, r.text
    return r.json()


def expected_changes(
    requests: list[tuple[list[int], list[float]]],
    resolve_after: int = RESOLVE_AFTER,
    warmup: int = WARMUP,
) -> list[tuple[str, int]]:
    """(kind, episode that opened the alert) of every alert change the requests
    cause, in order, by a replay through the domain code."""
    record = new_record(StreamConfig(0.51, "both", warmup))
    found = []
    for ts, xs in requests:
        done = learn(record, ts, xs)
        found += [
            (c.kind, c.alert.episode)
            for c in follow_learned(record, done, resolve_after)
        ]
        record = done.record
    return found


def all_alerts(server, state: str | None = None, limit: int = 1000) -> list[dict]:
    """Every page of GET /alerts."""
    found, after = [], None
    while True:
        params = {"limit": limit}
        if state:
            params["state"] = state
        if after:
            params["after"] = after
        r = server.get("/alerts", params=params)
        assert r.status_code == 200, r.text
        found += r.json()["alerts"]
        after = r.json()["next"]
        if after is None:
            return found
