"""``anomalyd replay FILE.csv --series ID``: reading the file (unit tests), and the
command end to end against a real ``anomalyd serve`` (2 workers): a known anomaly
found, the same file twice learning nothing twice, a bad line named before anything
is sent, a 409 explained, retries after a lost answer and a 503, the token, the exit
statuses, the progress bar only on a terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import requests
from conftest import ROOT, Server

from anomalyd import cli, replay_http
from anomalyd.replay import _ranges
from anomalyd.replay_file import BadFile, read

T0 = 1_694_336_400  # 2023-09-10 09:00:00 UTC


def replay(*args: str, env: dict | None = None, timeout: float = 120):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "anomalyd", "replay", *args],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        cwd=ROOT,
    )


def write_csv(path: Path, rows: list[tuple], header: str | None = "timestamp,value"):
    lines = ([header] if header else []) + [f"{t},{v}" for t, v in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def known_anomaly(n: int = 400, at: int = 350, seed: int = 1) -> list[tuple]:
    """NAB-style rows, every 5 minutes, calm noise and one spike at row ``at``."""
    rng = np.random.default_rng(seed)
    values = np.round(50 + rng.normal(0, 1, n), 3)
    if at < n:
        values[at] = 120.0
    return [
        (str(np.datetime64(T0 + 300 * i, "s")).replace("T", " "), values[i])
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("replay") / "data").start()
    yield s
    assert s.stop() == 0


# -- reading the file ------------------------------------------------------------


def test_every_timestamp_form_with_or_without_a_header():
    data = (
        "\ufeffValue , TIMESTAMP\n"
        "1.5,1694336400\n"
        "\n"
        "2.5,1694336460.75\n"
        "3.5,2023-09-10 09:02:00\n"
        "4.5,2023-09-10T11:03:00+02:00\n"
        '"5.5","2023-09-10T09:04:00Z"\n'
    ).encode()
    rows = read(data)
    assert rows.timestamps.tolist() == [T0, T0 + 60, T0 + 120, T0 + 180, T0 + 240]
    assert rows.values.tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]
    assert rows.lines.tolist() == [2, 4, 5, 6, 7]
    bare = read(b"1694336400,1\n1694336400,2\n")  # no header; equal times are fine
    assert bare.timestamps.tolist() == [T0, T0] and bare.lines.tolist() == [1, 2]
    assert bare.digest != read(b"1694336400,1\n1694336400,3\n").digest


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"timestamp,value\n1,2\nyesterday,3\n", "line 3: timestamp must be"),
        (b"timestamp,value\n1,2\n3,warm\n", "line 3: value 'warm' is not a number"),
        (b"timestamp,value\n1,nan\n", "line 2: value 'nan' is not a finite number"),
        (b"timestamp,value\n1,2,3\n", "line 2: 3 fields; expected 2"),
        (b"timestamp,value\n\n", "the file has no rows of data"),
        (b"timestamp,value\n1,2\n\xff,3\n", "line 3: not UTF-8 text"),
        (b"t,v\n1,2\n", "line 1: timestamp must be"),
        (b'timestamp,value\n1,"2\n', "not valid CSV"),
        (
            b"timestamp,value\n100,1\n200,2\n150,3\n",
            (
                "line 4: timestamp 1970-01-01 00:02:30 is earlier than the row "
                "before it (line 3, 1970-01-01 00:03:20)"
            ),
        ),
    ],
)
def test_a_bad_line_is_named(data, words):
    with pytest.raises(BadFile, match=re.escape(words)):
        read(data)


def test_rows_back_in_time_are_clamped_or_skipped_when_asked():
    data = b"timestamp,value\n100,1\n200,2\n150,3\n210,4\n"
    clamped = read(data, "clamp")
    assert clamped.timestamps.tolist() == [100, 200, 200, 210] and clamped.moved == [4]
    skipped = read(data, "skip")
    assert skipped.timestamps.tolist() == [100, 200, 210] and skipped.skipped == [4]
    assert skipped.lines.tolist() == [2, 3, 5]


def test_lines_moved_or_skipped_are_told_as_runs():
    assert _ranges([7]) == "line 7"
    assert _ranges([3, 4, 5, 9, 11, 12]) == "lines 3 to 5, 9, 11 to 12"
    assert _ranges(list(range(0, 40, 2)), most=3) == ("lines 0, 2, 4 and 17 more runs")


# -- against a real service ----------------------------------------------------


def test_a_known_anomaly_is_found_and_printed(server, tmp_path):
    rows = known_anomaly()
    path = write_csv(tmp_path / "spike.csv", rows)
    done = replay(str(path), "--series", "spiky", "--url", server.url, "--batch", "64")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar: stdout is not a terminal
    out = done.stdout
    assert f"Replayed {path} into stream spiky at {server.url}." in out
    assert "400 points sent; 400 learned; the stream has 400." in out
    episodes = server.get("/streams/spiky/anomalies").json()["anomalies"]
    spike = str(np.datetime64(T0 + 300 * 350, "s")).replace("T", " ")
    (found,) = [e for e in episodes if e["peak_value"] == 120.0]
    assert found["start"] == spike.replace(" ", "T") + "Z"
    header = f"{len(episodes)} anomaly episode{'s' if len(episodes) > 1 else ''}"
    assert f"{header} since 2023-09-10 09:00:00 UTC:" in out
    assert f"  {spike}  {spike}       1" in out and "120" in out
    assert server.get("/streams/spiky").json()["points"] == 400


def test_the_same_file_twice_learns_nothing_twice(server, tmp_path):
    rows = known_anomaly(seed=2)
    path = write_csv(tmp_path / "twice.csv", rows)
    first = replay(str(path), "--series", "twice", "--url", server.url, "--batch", "50")
    assert first.returncode == 0, first.stderr
    state = server.get("/streams/twice").json()
    second = replay(
        str(path), "--series", "twice", "--url", server.url, "--batch", "50"
    )
    assert second.returncode == 0, second.stderr
    assert "400 points sent; 0 learned; the stream has 400." in second.stdout
    assert "Nothing new was learned" in second.stdout
    assert server.get("/streams/twice").json() == state
    # The same episodes are listed both times.
    assert first.stdout.split("UTC:")[1] == second.stdout.split("UTC:")[1]


def test_a_bad_line_stops_everything_before_it_is_sent(server, tmp_path):
    rows = known_anomaly(20)
    rows[12] = (rows[12][0], "12,5")  # a third field
    path = write_csv(tmp_path / "bad.csv", rows)
    done = replay(str(path), "--series", "never", "--url", server.url)
    assert done.returncode == 2
    assert f"anomalyd replay: {path}: line 14: 3 fields; expected 2" in done.stderr
    assert server.get("/streams/never").status_code == 404


def test_the_sample_steps_back_once_and_says_how_to_go_on(server):
    sample = ROOT / "tests" / "sample" / "machine_temperature_system_failure.csv"
    done = replay(str(sample), "--series", "machine", "--url", server.url)
    assert done.returncode == 2
    assert "line 10151: timestamp 2014-01-07 02:00:00 is earlier" in done.stderr
    assert "--out-of-order clamp" in done.stderr
    clamped = replay(
        str(sample), "--series", "machine", "--url", server.url, "--out-of-order",
        "clamp",
    )  # fmt: skip
    assert clamped.returncode == 0, clamped.stderr
    assert "22,695 points sent; 22,695 learned" in clamped.stdout
    assert (
        "11 rows sent with the timestamp of the row before (earlier than it): "
        "lines 10151 to 10161." in clamped.stdout
    )
    # tests/test_streams_quality.py: 22 episodes with the shipped settings.
    assert "22 anomaly episodes since 2013-12-02 21:15:00 UTC:" in clamped.stdout


def test_points_before_the_streams_last_are_refused_with_their_line(server, tmp_path):
    rows = known_anomaly(300, seed=3)
    later = T0 + 300 * 200
    r = server.post("/observe/ahead", {"timestamp": later, "value": 1.0})
    assert r.status_code == 200
    path = write_csv(tmp_path / "behind.csv", rows)
    done = replay(str(path), "--series", "ahead", "--url", server.url, "--batch", "100")
    assert done.returncode == 1
    assert "line 2: the service refused the batch of lines 2 to 101 (409)" in (
        done.stderr
    )
    assert "earlier than the stream's last point" in done.stderr
    assert "nothing of this file was learned" in done.stderr
    assert server.get("/streams/ahead").json()["points"] == 1
    assert "(2023-09-11T01:40:00Z)" in done.stderr  # the stream's last point


class Flaky(BaseHTTPRequestHandler):
    """A proxy in front of the service that answers the first POST with a 503 and
    Retry-After, and forwards the third POST (the second batch) but drops its answer
    (the service learned it; the client saw the connection close)."""

    protocol_version = "HTTP/1.1"
    target = ""
    posts: ClassVar[list[str]] = []
    lock = threading.Lock()

    def _forward(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if method == "POST":
            with self.lock:
                Flaky.posts.append(self.headers["Idempotency-Key"])
                n = len(Flaky.posts)
            if n == 1:
                payload = b'{"title":"Busy","description":"busy, retry"}'
                self.send_response(503)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        r = requests.request(
            method, self.target + self.path, data=body, headers=headers, timeout=60
        )
        if method == "POST" and n == 3:
            self.close_connection = True  # the answer is lost on the way back
            return
        self.send_response(r.status_code)
        self.send_header("Content-Type", r.headers.get("Content-Type", ""))
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")

    def log_message(self, *args) -> None:
        pass


def test_a_lost_answer_and_a_503_are_retried_and_nothing_is_learned_twice(
    server, tmp_path
):
    Flaky.target, Flaky.posts = server.url, []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        rows = known_anomaly(250, seed=4)
        path = write_csv(tmp_path / "flaky.csv", rows)
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        done = replay(str(path), "--series", "flaky", "--url", url, "--batch", "50")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert done.returncode == 0, done.stderr
    assert "503 busy, retry; retrying in 1 s (1 of 5)" in done.stderr
    assert "RemoteDisconnected" in done.stderr and "(1 of 5)" in done.stderr
    # 5 batches: the first sent twice (503), the second twice (its answer lost
    # after the service learned it), with the same key each time.
    keys = Flaky.posts
    assert len(keys) == 7 and keys[0] == keys[1] and keys[2] == keys[3]
    assert len(set(keys)) == 5
    assert "250 points sent; 250 learned; the stream has 250." in done.stdout
    assert server.get("/streams/flaky").json()["points"] == 250


def test_an_unreachable_service_is_given_up_after_the_retries(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(replay_http, "BACKOFF", 0.001)
    path = write_csv(tmp_path / "a.csv", known_anomaly(5))
    with socket_closed() as url:
        status = cli.main(["replay", str(path), "--series", "x", "--url", url])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("retrying in") == 5
    assert "failed 6 times; the last: ConnectionRefusedError" in err


class socket_closed:
    """A URL where nothing listens."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{s.getsockname()[1]}"

    def __exit__(self, *exc) -> None:
        pass


def test_the_token_comes_from_the_environment(make_server, tmp_path):
    token = "replay-token"
    s = make_server(env={"ANOMALYD_API_TOKEN": token})
    path = write_csv(tmp_path / "t.csv", known_anomaly(30))
    refused = replay(str(path), "--series", "t", "--url", s.url)
    assert refused.returncode == 1 and "answered 401" in refused.stderr
    assert "give the service's api_token: ANOMALYD_API_TOKEN" in refused.stderr
    ok = replay(
        str(path), "--series", "t", "--url", s.url, env={"ANOMALYD_API_TOKEN": token}
    )
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "token").write_text(token + "\n")
    again = replay(
        str(path),
        "--series",
        "t2",
        "--url",
        s.url,
        "--token-file",
        str(tmp_path / "token"),
    )
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--series", "a b"], "--series must be 1 to 200 characters"),
        (["--series", "a", "--batch", "0"], "argument --batch: must be an integer"),
        (["--series", "a", "--url", "ftp://x"], "--url must be http://"),
        (["--series", "a", "--timeout", "-1"], "argument --timeout: must be seconds"),
        (["--series", "a", "--token-file", "/nonexistent"], "cannot be read"),
        ([], "the following arguments are required: --series"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, words):
    path = write_csv(tmp_path / "u.csv", known_anomaly(3))
    done = replay(str(path), *args)
    assert done.returncode == 2 and words in done.stderr, done.stderr


def test_a_missing_file_is_a_usage_error():
    done = replay("/nonexistent.csv", "--series", "a")
    assert done.returncode == 2
    assert "anomalyd replay: /nonexistent.csv: No such file or directory" in done.stderr


def test_a_progress_bar_on_a_terminal(server, tmp_path):
    path = write_csv(tmp_path / "tty.csv", known_anomaly(300, seed=6))
    leader, follower = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anomalyd", "replay", str(path), "--series", "tty"]
        + ["--url", server.url, "--batch", "100"],
        stdout=follower,
        stderr=follower,
        env=environment,
        cwd=ROOT,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(60) == 0
    text = seen.decode()
    assert "\r[##########....................] 100/300 points" in text
    assert "\r[##############################] 300/300 points" in text
    assert "\r\x1b[K" in text and "300 points sent; 300 learned" in text
