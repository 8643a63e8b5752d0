"""A real Alertmanager (Debian's ``prometheus-alertmanager``), started by the test on
a loopback port with its own storage and a webhook receiver back into the test: a
replayed stream that opens an episode is shown firing by Alertmanager's own API, with
the stream's labels, kept alive by re-sends, then resolved; Alertmanager notifies
the test's webhook of both."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from alert_client import (
    CALM_AFTER,
    STEP,
    T0,
    Receiver,
    alert_flags,
    all_alerts,
    calm,
    post_batch,
    spike,
)
from conftest import free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="prometheus-alertmanager is not installed (apt-get install "
    "prometheus-alertmanager; .ci/run does)",
)

CONFIG = """\
route:
  receiver: test
  group_by: ['series_id']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


@pytest.fixture
def alertmanager(tmp_path):
    """(Alertmanager's URL, the test's receiver of its notifications)."""
    notified = Receiver(path="/alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=notified.url))
    port = free_port()
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: a lone instance
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (
            tmp_path / "alertmanager.log"
        ).read_text()
        time.sleep(0.1)
    yield url, notified
    proc.terminate()
    proc.wait(30)
    log.close()
    notified.close()


def am_alerts(url: str) -> list[dict]:
    r = requests.get(f"{url}/api/v2/alerts", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait(check, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_alertmanager_shows_the_alert_firing_then_resolved(make_server, alertmanager):
    am_url, notified = alertmanager
    server = make_server(
        extra=alert_flags(
            alertmanager_url=am_url,
            alert_resend_interval=2,
            public_url="http://anomalyd.example.com:8000",
        )
    )
    labels = {"site": "plant-2", "severity": "page"}
    r = server.session.put(
        f"{server.url}/streams/boiler-7", json={"labels": labels}, timeout=30
    )
    assert r.status_code == 200, r.text
    ts, xs = calm(80)
    post_batch(server, "boiler-7", ts, xs)  # a replay of ordinary points...
    spike(server, "boiler-7", T0 + STEP * 80)  # ...then the jump: an episode opens

    wanted = {"alertname": "AnomalydAnomaly", "series_id": "boiler-7", **labels}
    (firing,) = wait(
        lambda: [a for a in am_alerts(am_url) if a["labels"] == wanted],
        what="the alert in Alertmanager's /api/v2/alerts",
    )
    assert firing["status"]["state"] == "active"
    annotations = firing["annotations"]
    assert annotations["peak_value"] == "500"
    assert annotations["peak_score"] == "1" and annotations["threshold"] == "0.51"
    start = dt.datetime.fromtimestamp(T0 + STEP * 80, dt.UTC)
    assert annotations["start"] == f"{start:%Y-%m-%dT%H:%M:%S}.000Z"  # stream time
    assert annotations["plot"] == (
        "http://anomalyd.example.com:8000/plot?stream=boiler-7"
    )
    assert firing["generatorURL"] == annotations["plot"]
    notified.wait_for(lambda: any(n["status"] == "firing" for n in notified.accepted))
    (note,) = [n for n in notified.accepted if n["status"] == "firing"]
    assert note["alerts"][0]["labels"] == wanted

    # Re-sent while it fires: Alertmanager sees it again, ending later each time.
    ends = firing["endsAt"]
    again = wait(
        lambda: [
            a for a in am_alerts(am_url) if a["labels"] == wanted and a["endsAt"] > ends
        ],
        timeout=30,
        what="a re-send moving endsAt on",
    )
    assert again[0]["startsAt"] == firing["startsAt"]

    # Calm points past alert_resolve_after: resolved, with endsAt.
    ts, xs = calm(CALM_AFTER, 81)
    post_batch(server, "boiler-7", ts, xs)
    wait(
        lambda: not [a for a in am_alerts(am_url) if a["labels"] == wanted],
        what="the alert leaving Alertmanager's active alerts",
    )
    notified.wait_for(lambda: any(n["status"] == "resolved" for n in notified.accepted))
    (note,) = [n for n in notified.accepted if n["status"] == "resolved"]
    (resolved,) = note["alerts"]
    assert resolved["labels"] == wanted and resolved["status"] == "resolved"
    assert resolved["endsAt"] > resolved["startsAt"]
    # And anomalyd's outbox says both were delivered to Alertmanager.
    events = all_alerts(server)
    assert [e["type"] for e in events] == ["episode_opened", "episode_resolved"]
    for event in events:
        (state,) = event["receivers"]
        assert state["kind"] == "alertmanager" and state["state"] == "delivered"


@pytest.mark.skipif(AMTOOL is None, reason="amtool (prometheus-alertmanager) missing")
def test_the_readme_alertmanager_config_is_valid(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Alerts\n") :]
    (block,) = re.findall(
        r"```yaml\n(.*?)```", section[: section.index("\n## ", 5)], re.DOTALL
    )
    assert 'alertname="AnomalydAnomaly"' in block
    config = tmp_path / "alertmanager.yml"
    config.write_text(block)
    r = subprocess.run(
        [AMTOOL, "check-config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
