"""Settings as a user meets them: check-config's TOML read back by --config, every
form of bind gunicorn takes, errors in words, and warnings for misspelt variables."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import msgspec
import pytest
from conftest import free_port
from test_cli import run

from anomalyd import settings as settings_module
from anomalyd.auth import is_loopback
from anomalyd.settings import Settings, SettingsError, env_name

FIT = {"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]}


# -- check-config prints TOML that --config reads back ------------------------------


def test_check_config_round_trips_through_toml(tmp_path):
    # A data directory whose name needs escaping in TOML, and a token from a file.
    data_dir = tmp_path / 'd "quoted" \\ é\tx'
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    config = tmp_path / "in.toml"
    config.write_text('lru_size = 77\nlog_level = "debug"\n')
    first = run(
        "check-config",
        "--config",
        str(config),
        "--workers",
        "3",
        "--bind",
        "localhost",
        "--data-dir",
        str(data_dir),
        "--api-token-file",
        str(token_file),
        env={"ANOMALYD_TIMEOUT": "30", "ANOMALYD_KEEPALIVE": "0"},
    )
    assert first.returncode == 0, first.stderr
    printed = tomllib.loads(first.stdout)  # valid TOML
    assert "file-token" not in first.stdout
    assert "api_token" not in printed  # a secret is commented out, masked
    assert '# api_token = "********"' in first.stdout
    saved = tmp_path / "c.toml"
    saved.write_text(first.stdout)

    second = run("check-config", "--config", str(saved))
    assert second.returncode == 0, second.stderr
    assert tomllib.loads(second.stdout) == printed
    # The same settings, field by field, as the first run had them.
    expected, _ = settings_module.load(
        {"workers": 3, "bind": "localhost", "data_dir": str(data_dir)},
        config_file=str(config),
        environ={
            "ANOMALYD_TIMEOUT": "30",
            "ANOMALYD_KEEPALIVE": "0",
            "ANOMALYD_API_TOKEN_FILE": str(token_file),
        },
    )
    assert msgspec.convert(printed, Settings) == expected
    assert expected.bind == "localhost:8000" and expected.data_dir == str(data_dir)
    # Each value's source is its comment.
    lines = {line.split(" = ")[0]: line for line in first.stdout.splitlines()}
    assert lines["workers"].endswith("# flag --workers")
    assert lines["timeout"].endswith("# env ANOMALYD_TIMEOUT")
    assert lines["lru_size"].endswith(f"# file {config}")
    assert lines["threads"].endswith("# default")
    assert f"read from api_token_file {token_file}" in lines["# api_token"]


def test_unset_settings_and_a_direct_token_are_comments(tmp_path):
    r = run(
        "check-config",
        "--data-dir",
        str(tmp_path / "d"),
        env={"ANOMALYD_API_TOKEN": "s3cret-value"},
    )
    assert r.returncode == 0, r.stderr
    assert "s3cret-value" not in r.stdout
    printed = tomllib.loads(r.stdout)
    assert "api_token" not in printed and "api_token_file" not in printed
    assert "# api_token_file = (not set)  # default" in r.stdout
    assert "ANOMALYD_API_TOKEN" in r.stdout
    # Read back, it is the same but for the secret, which is given again by its own way.
    assert (
        msgspec.convert(printed, Settings)
        == settings_module.load({"data_dir": str(tmp_path / "d")}, environ={})[0]
    )


# -- bind ------------------------------------------------------------------------

BIND_FORMS = [
    # given, kept as, loopback
    ("127.0.0.1:8000", "127.0.0.1:8000", True),
    ("localhost", "localhost:8000", True),
    ("LocalHost:9000", "localhost:9000", True),
    ("0.0.0.0", "0.0.0.0:8000", False),
    ("[::1]", "[::1]:8000", True),
    ("[::1]:8080", "[::1]:8080", True),
    ("[::]:8080", "[::]:8080", False),
    ("[fe80::1%lo]:81", "[fe80::1%lo]:81", False),
    ("tcp://127.0.0.1:81", "127.0.0.1:81", True),
    ("edge-01.example.org:80", "edge-01.example.org:80", False),
    ("192.168.1.5:8000", "192.168.1.5:8000", False),
    ("unix:/run/anomalyd/http.sock", "unix:/run/anomalyd/http.sock", True),
    ("unix:///run/a.sock", "unix:/run/a.sock", True),
    ("fd://3", "fd://3", False),
]


@pytest.mark.parametrize(("given", "kept", "loopback"), BIND_FORMS)
def test_every_bind_form_gunicorn_takes(given, kept, loopback):
    settings = Settings(bind=given)
    assert settings.bind == kept
    assert is_loopback(given) is loopback
    assert is_loopback(kept) is loopback


BAD_BINDS = [
    ("", "empty"),
    ("localhost:", "port must be a number from 1 to 65535"),
    ("localhost:http", "port must be a number from 1 to 65535, got 'http'"),
    ("127.0.0.1:70000", "got '70000'"),
    ("::1", "IPv6 address goes in brackets"),
    ("[::1", "no closing bracket"),
    ("[nope]:80", "is not an IPv6 address"),
    ("[::1]80", "only :PORT may follow"),
    (":8000", "no host before the port"),
    ("300.1.1.1:80", "not an IPv4 address"),
    ("a b:80", "give one address"),
    ("127.0.0.1:80,[::1]:80", "give one address"),
    ("unix:", "needs the socket's path"),
    ("fd://three", "file descriptor number"),
    ("bad_host!:80", "not a host name"),
]


@pytest.mark.parametrize(("given", "words"), BAD_BINDS)
def test_a_bad_bind_says_what_is_wrong_in_words(given, words):
    with pytest.raises(SettingsError) as caught:
        settings_module.load({"bind": given}, environ={})
    message = str(caught.value)
    assert message.startswith(f"setting bind (flag --bind) = {given!r}: ")
    assert words in message
    assert "regex" not in message and "Expected" not in message


# A value each setting refuses, and words its message must hold.
BAD_VALUES = {
    "bind": ("x:y", "port must be a number"),
    "workers": ("0", "a whole number from 1 to 64"),
    "worker_class": ("eventlet", "one of gthread, sync"),
    "threads": ("many", "a whole number from 1 to 64"),
    "data_dir": ("", "a non-empty string"),
    "map_size": ("lots", "a whole number of bytes from 1048576 (1 MiB) to"),
    "min_points": ("1", "a whole number from 2 to 1000000"),
    "max_body_bytes": ("1", "of bytes from 1024 (1 KiB) to 4294967296 (4 GiB)"),
    "lru_size": ("-1", "a whole number from 1 to 10000000"),
    "api_token": (5, "must be a string"),
    "api_token_file": ([1], "must be a string"),
    "log_level": ("loud", "one of critical, debug, error, info, warning"),
    "timeout": ("0", "a whole number of seconds from 1 to 3600"),
    "keepalive": ("1.5", "a whole number of seconds from 0 to 3600"),
    "session_hours": ("0", "a whole number of hours from 1 to 8760"),
    "write_threads": ("0", "a whole number from 1 to 64"),
    "max_inflight_bytes": (
        "1",
        "of bytes from 1048576 (1 MiB) to 68719476736 (64 GiB)",
    ),
    "access_log": ("", "a non-empty string"),
    "stream_threshold": ("0", "must be a number above 0 and up to 1"),
    "stream_warmup": ("-1", "a whole number from 0 to 1000000000"),
    "stream_history": ("0", "a whole number from 1 to 1000000"),
    "stream_direction": ("up", "one of both, lower, upper"),
    "max_large_requests": (-1, "a whole number from 0 to 64"),
    "alertmanager_url": (["http://am:9093,http://b"], "its port is not a number"),
    "webhook_url": (["ftp://hooks"], "must start with http:// or https://"),
    "webhook_secret": ("s3cret", "must be whsec_ followed by base64"),
    "webhook_secret_file": ("", "a non-empty string"),
    "alert_resolve_after": (-1, "a whole number of seconds from 0 to"),
    "alert_resend_interval": (0, "a whole number of seconds from 1 to 3600"),
    "alert_timeout": (0, "a whole number of seconds from 1 to 300"),
    "outbox_max_events": (10, "a whole number from 100 to 100000000"),
    "public_url": ("anomalyd.example.com", "must start with http:// or https://"),
}


def test_every_setting_has_a_worded_error(tmp_path):
    """Each setting's failure message, from a TOML file: names the setting, where it
    came from and what it must be, never a pattern or a type from msgspec."""
    missing = set(Settings.__struct_fields__) - set(BAD_VALUES)
    assert not missing, f"add a bad value for {missing}"
    for field, (value, words) in BAD_VALUES.items():
        config = tmp_path / f"{field}.toml"
        config.write_text(f"{field} = {json.dumps(value)}\n")
        with pytest.raises(SettingsError) as caught:
            settings_module.load({}, config_file=str(config), environ={})
        message = str(caught.value)
        assert message.startswith(f"setting {field} (file {config}) = {value!r}: ")
        assert words in message, message
        for raw in ("Expected", "`", "regex", "^", "$"):
            assert raw not in message, message


def unix_get(path: str, target: str) -> tuple[int, bytes]:
    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(path)

    connection = UnixConnection("localhost")
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def serve(bind: str, data_dir: Path, ready) -> subprocess.Popen:
    """``anomalyd serve --bind BIND`` (2 workers), once ``ready()`` holds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anomalyd", "serve", "--bind", bind]
        + ["--workers", "2", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ready():
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    raise AssertionError(f"anomalyd serve --bind {bind} did not answer")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_serve_on_a_unix_socket(tmp_path):
    sock = tmp_path / "http.sock"
    proc = serve(
        f"unix:{sock}", tmp_path / "d", lambda: unix_get(str(sock), "/healthcheck")[0]
    )
    try:
        status, body = unix_get(str(sock), "/healthcheck")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        assert stop(proc) == 0


def test_serve_on_a_port_less_ipv6_address_and_localhost(tmp_path):
    """``[::1]`` and ``localhost`` with a port; the port-less forms take 8000, which
    check-config shows (binding 8000 itself here could meet another service)."""
    for given, kept in (("[::1]", "[::1]:8000"), ("localhost", "localhost:8000")):
        r = run("check-config", "--bind", given, "--data-dir", str(tmp_path / "d"))
        assert tomllib.loads(r.stdout)["bind"] == kept
    for host in ("[::1]", "localhost"):
        try:
            socket.getaddrinfo(host.strip("[]"), 0)
        except OSError:
            continue  # no IPv6 loopback in this container
        port = free_port()
        proc = serve(
            f"{host}:{port}",
            tmp_path / host.strip("[]"),
            lambda h=host, p=port: _ok(h, p),
        )
        try:
            assert _ok(host, port)
        finally:
            assert stop(proc) == 0


def _ok(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host.strip("[]"), port, timeout=30)
    try:
        connection.request("GET", "/healthcheck")
        return connection.getresponse().status == 200
    finally:
        connection.close()


# -- misspelt environment variables -------------------------------------------------


def test_unknown_variables_are_warned_about_with_the_closest_name(tmp_path):
    r = run(
        "check-config",
        "--data-dir",
        str(tmp_path / "d"),
        env={"ANOMALYD_WROKERS": "3", "ANOMALYD_CONFG": "x", "ANOMALYD_COLOUR": "b"},
    )
    assert r.returncode == 0, r.stderr
    assert (
        "anomalyd: warning: ANOMALYD_WROKERS is not a setting and is ignored; "
        "did you mean ANOMALYD_WORKERS?"
    ) in r.stderr
    assert "did you mean ANOMALYD_CONFIG?" in r.stderr
    colour = next(line for line in r.stderr.splitlines() if "ANOMALYD_COLOUR" in line)
    assert "did you mean" not in colour
    assert tomllib.loads(r.stdout)["workers"] == 2
    # Known names give no warning, ANOMALYD_CONFIG included.
    known = {env_name(f): "" for f in ("log_level",)} | {"ANOMALYD_CONFIG": ""}
    assert settings_module.unknown_environment(known | {"OTHER": "1"}) == []


def test_serve_warns_about_an_unknown_variable_at_start(make_server):
    s = make_server(env={"ANOMALYD_WROKERS": "3"})
    assert s.post("/fit/a", FIT).status_code == 200
    log = Path(s.log.name).read_text()
    assert "ANOMALYD_WROKERS is not a setting" in log and "ANOMALYD_WORKERS" in log
    assert len(s.worker_pids()) == 2  # the misspelt value did nothing
