"""Event ids survive ``anomalyd restore``: a rollback brings back the outbox of the
backup (its events keep their ids, so receivers drop the ones they had), and the
events made after it never reuse an id given out before it."""

from __future__ import annotations

from alert_client import alert_flags, all_alerts, open_and_resolve
from test_cli import run


def test_no_event_id_is_given_twice_across_a_restore(make_server, tmp_path):
    data_dir = tmp_path / "data"
    backup = tmp_path / "backup"
    server = make_server(data_dir=data_dir, extra=alert_flags())
    open_and_resolve(server, "before-backup")
    before = [e["id"] for e in all_alerts(server)]
    r = run("backup", str(backup), "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    open_and_resolve(server, "after-backup")
    issued = [e["id"] for e in all_alerts(server)]
    assert server.stop() == 0

    r = run("restore", str(backup), "--data-dir", str(data_dir), "--yes")
    assert r.returncode == 0, r.stderr
    server = make_server(data_dir=data_dir, extra=alert_flags())
    assert [e["id"] for e in all_alerts(server)] == before  # the backup's, as they were
    open_and_resolve(server, "after-restore")
    after = [e["id"] for e in all_alerts(server)][len(before) :]
    assert len(after) == 2
    assert not set(after) & set(issued), (after, issued)
