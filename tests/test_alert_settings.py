"""The alert settings as a user meets them: lists from a repeated flag, the
environment (separated by spaces) and TOML arrays, round-tripping through
check-config; the secret masked, read from its file, and required by webhooks."""

from __future__ import annotations

import tomllib

import msgspec
from alert_client import new_secret
from test_cli import run

from anomalyd import settings as settings_module
from anomalyd.settings import Settings


def test_lists_round_trip_through_check_config(tmp_path):
    secret = new_secret()
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    config = tmp_path / "in.toml"
    config.write_text('alertmanager_url = ["http://am-1:9093", "http://am-2:9093"]\n')
    first = run(
        "check-config",
        "--config",
        str(config),
        "--webhook-url",
        "http://hooks.example.com/a",
        "--webhook-url",
        "https://user:pw@hooks.example.com/b?x=1 http://[::1]:8080/c",
        "--webhook-secret-file",
        str(secret_file),
        env={"ANOMALYD_ALERT_RESOLVE_AFTER": "900"},
    )
    assert first.returncode == 0, first.stderr
    printed = tomllib.loads(first.stdout)
    assert printed["alertmanager_url"] == ["http://am-1:9093", "http://am-2:9093"]
    assert printed["webhook_url"] == [
        "http://hooks.example.com/a",
        "https://user:pw@hooks.example.com/b?x=1",
        "http://[::1]:8080/c",
    ]
    assert printed["alert_resolve_after"] == 900
    assert secret not in first.stdout and "webhook_secret" not in printed
    assert "# webhook_secret = " in first.stdout
    assert f"read from webhook_secret_file {secret_file}" in first.stdout
    saved = tmp_path / "saved.toml"
    saved.write_text(first.stdout)
    second = run("check-config", "--config", str(saved))
    assert second.returncode == 0, second.stderr
    assert tomllib.loads(second.stdout) == printed
    found, _ = settings_module.load({}, config_file=str(saved), environ={})
    assert msgspec.convert(printed, Settings) == found
    assert found.webhook_url[1] == "https://user:pw@hooks.example.com/b?x=1"

    # The environment: one variable, the URLs separated by white space.
    by_env = run(
        "check-config",
        env={
            "ANOMALYD_ALERTMANAGER_URL": "http://am-1:9093\n  http://am-2:9093",
            "ANOMALYD_WEBHOOK_SECRET": secret,
        },
    )
    assert by_env.returncode == 0, by_env.stderr
    assert (
        tomllib.loads(by_env.stdout)["alertmanager_url"] == printed["alertmanager_url"]
    )


def test_webhooks_need_a_secret_and_a_bad_secret_file_says_why(tmp_path):
    r = run("check-config", "--webhook-url", "http://hooks.example.com/a")
    assert r.returncode == 2
    assert "webhook_url (flag --webhook-url): webhooks are signed" in r.stderr
    assert "webhook_secret or webhook_secret_file" in r.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = run("check-config", "--webhook-secret-file", str(empty))
    assert r.returncode == 2
    assert f"setting webhook_secret_file (flag --webhook-secret-file) = '{empty}'" in (
        r.stderr
    )
    assert "the file is empty" in r.stderr
    short = tmp_path / "short"
    short.write_text("whsec_c2hvcnQ=")
    r = run("check-config", "--webhook-secret-file", str(short))
    assert r.returncode == 2 and "holds 5 bytes once decoded" in r.stderr
    r = run("serve", "--webhook-url", "http://hooks.example.com/a")
    assert r.returncode == 2 and "webhooks are signed" in r.stderr
