"""Layout 2: deleted series live in their own table, and a v1 store is migrated.

The v1 store in tests/fixtures/v1-store was made by the code before layout 2 (see its
README). Every test runs the migration for real: a 2-worker ``anomalyd serve`` whose
workers open the store at the same moment, or several processes at once.
"""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import lmdb

from anomalyd.store import SCHEMA_VERSION, Store

V1_STORE = Path(__file__).parent / "fixtures" / "v1-store"
FIVE = [1_700_000_000 + 60 * i for i in range(5)]
MiB = 1024 * 1024


def tables(data_dir) -> dict[str, int]:
    """Entries of each named database, read with py-lmdb alone."""
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=32)
    try:
        with env.begin() as txn:
            names = [bytes(k) for k, _ in txn.cursor()]
            return {
                name.decode(): txn.stat(env.open_db(name, txn=txn, create=False))[
                    "entries"
                ]
                for name in names
            }
    finally:
        env.close()


def copy_v1(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(V1_STORE / "data.mdb", data / "data.mdb")
    return data


def test_a_v1_store_is_migrated_by_two_workers_starting_at_once(make_server, tmp_path):
    data = copy_v1(tmp_path)
    assert tables(data) == {"meta": 2, "models": 5, "points": 5, "series": 4}
    server = make_server(data)
    assert server.get("/series").json() == {
        "series": [
            {"series_id": "alive", "latest": "v3", "versions": 3},
            {"series_id": "back", "latest": "v2", "versions": 1},
            {"series_id": "solo", "latest": "v1", "versions": 1},
        ],
        "next": None,
    }
    alive = server.get("/series/alive").json()["versions"]
    assert [v["model"]["center"] for v in alive] == [3.0, 3.2, 3.4]
    back = server.get("/series/back").json()["versions"]
    assert [(v["version"], v["model"]["kind"]) for v in back] == [("v2", "robust")]
    assert server.get("/series/gone").status_code == 404
    assert server.get("/healthcheck").json()["series_trained"] == 3
    # The counters carried over: nothing is numbered twice.
    body = {"timestamps": FIVE, "values": [1, 2, 3, 4, 6]}
    assert server.post("/fit/gone", body).json()["version"] == "v3"
    assert server.post("/fit/back", body).json()["version"] == "v3"
    assert server.post("/fit/alive", body).json()["version"] == "v4"
    assert server.stop() == 0
    # Once: a second start finds version 2 and changes nothing.
    after = tables(data)
    assert after["series"] == 4 and after["retired"] == 0
    server = make_server(data)
    assert server.get("/series/gone").json()["latest"] == "v3"
    assert server.stop() == 0
    store = Store(str(data), map_size=64 * MiB)
    try:
        assert store.verify() == []
        with store.env.begin() as txn:
            assert txn.get(b"schema_version", db=store._meta) == b"%d" % SCHEMA_VERSION
    finally:
        store.close()


def _open(path: str, barrier) -> None:
    barrier.wait()
    Store(path, map_size=64 * MiB).close()


def test_the_migration_is_all_or_nothing_when_many_processes_race(tmp_path):
    data = copy_v1(tmp_path)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(6)
    racers = [
        context.Process(target=_open, args=(str(data), barrier)) for _ in range(6)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    assert tables(data) == {
        "meta": 2,
        "models": 5,
        "points": 5,
        "series": 3,
        "retired": 1,
        "drawings": 0,
    }
    store = Store(str(data), map_size=64 * MiB)
    try:
        assert store.verify() == []
        assert [s for s, _, _ in store.list_series(10, None)[0]] == [
            "alive",
            "back",
            "solo",
        ]
    finally:
        store.close()


def test_deleted_series_leave_the_table_the_listing_walks(make_server):
    server = make_server()
    body = {"timestamps": FIVE, "values": [1, 2, 3, 4, 6]}
    for i in range(60):
        assert server.post(f"/fit/d{i:03d}", body).status_code == 200
    for i in range(50):
        assert server.delete(f"/series/d{i:03d}").status_code == 200
    counts = tables(server.data_dir)
    # Before layout 2 the 50 deleted series stayed in "series", walked by every page.
    assert counts["series"] == 10 and counts["retired"] == 50, counts
    page = server.get("/series?limit=1").json()
    assert page == {
        "series": [{"series_id": "d050", "latest": "v1", "versions": 1}],
        "next": "d050",
    }
    assert server.post("/fit/d000", body).json()["version"] == "v2"
    counts = tables(server.data_dir)
    assert counts["series"] == 11 and counts["retired"] == 49, counts
