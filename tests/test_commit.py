"""anomalyd.commit.GroupCommit on a real LMDB store, with real threads."""

from __future__ import annotations

import threading
import time

import lmdb
import pytest

from anomalyd.commit import GroupCommit
from anomalyd.store import Store, StoreFull


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "data"), map_size=4 << 20)
    yield s
    s.close()


def noop(txn) -> None:
    return None


def read(store: Store, db, key: bytes) -> bytes | None:
    with store.env.begin() as txn:
        return txn.get(key, db=db)


def test_concurrent_callers_share_commits_and_each_gets_its_own_answer(store):
    table = store.open_db(b"test")
    group = GroupCommit(store)
    slow = threading.Event()
    results: dict[int, object] = {}

    def op(i: int):
        def check(txn):
            if i == 0:
                slow.wait(5)  # the first commit holds the writer until all queued
            if i % 7 == 3:
                raise ValueError(f"op {i} refused")
            return b"v%d" % i

        def write(txn, value):
            txn.put(b"k%d" % i, value, db=table)
            return i * 10

        return check, write

    def call(i: int) -> None:
        try:
            results[i] = group.run(*op(i), 100)
            # Answered only once committed: a new read transaction sees it.
            assert read(store, table, b"k%d" % i) == b"v%d" % i
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    threads[0].start()
    time.sleep(0.2)
    for t in threads[1:]:
        t.start()
    time.sleep(0.3)
    slow.set()
    for t in threads:
        t.join(30)
    for i in range(40):
        if i % 7 == 3:
            assert isinstance(results[i], ValueError) and f"op {i}" in str(results[i])
            assert read(store, table, b"k%d" % i) is None
        else:
            assert results[i] == i * 10
    assert group.operations == 40
    # The 39 that queued while the first commit held the writer went in one or two.
    assert group.commits <= 3, group.commits


def test_an_operation_that_does_not_fit_gets_store_full_alone(store):
    table = store.open_db(b"test")
    group = GroupCommit(store)
    with pytest.raises(StoreFull, match="nearly full"):
        group.run(noop, lambda txn, _: txn.put(b"big", b"x", db=table), store.map_size)
    assert group.run(noop, lambda txn, _: txn.put(b"small", b"x", db=table), 10)
    assert read(store, table, b"big") is None and read(store, table, b"small") == b"x"


def test_a_full_map_at_commit_fails_the_whole_group_and_stores_nothing(store):
    table = store.open_db(b"test")
    group = GroupCommit(store)
    gate = threading.Event()
    errors: list[BaseException] = []

    def filler(txn, _):
        for i in range(10_000):  # far more than the 4 MiB map holds
            txn.put(b"fill-%d" % i, b"y" * 1000, db=table)

    def small(txn, _):
        txn.put(b"small-two", b"x", db=table)

    def call(write) -> None:
        try:
            group.run(noop, write)
        except StoreFull as exc:
            errors.append(exc)

    first = threading.Thread(target=call, args=(lambda txn, _: gate.wait(5),))
    first.start()
    time.sleep(0.2)
    others = [threading.Thread(target=call, args=(op,)) for op in (filler, small)]
    for t in others:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in (first, *others):
        t.join(30)
    # The filler's MapFullError doomed the group it was in: both got StoreFull.
    assert len(errors) == 2 and all("full" in str(e) for e in errors)
    assert read(store, table, b"small-two") is None
    assert read(store, table, b"fill-0") is None
    # The store still takes writes.
    group.run(noop, lambda txn, _: txn.put(b"after", b"z", db=table))
    assert read(store, table, b"after") == b"z"


def test_an_lmdb_error_is_not_swallowed(store):
    group = GroupCommit(store)

    def bad(txn):
        raise lmdb.BadValsizeError("made up")

    with pytest.raises(lmdb.BadValsizeError):
        group.run(bad, lambda txn, _: None)


def test_a_write_that_fails_aborts_its_whole_group(store):
    table = store.open_db(b"test")
    group = GroupCommit(store)
    gate = threading.Event()
    errors: list[BaseException] = []

    def broken(txn, _):
        txn.put(b"half", b"x", db=table)
        raise RuntimeError("a bug after a put")

    def good(txn, _):
        txn.put(b"good", b"x", db=table)

    def call(write) -> None:
        try:
            group.run(noop, write)
        except RuntimeError as exc:
            errors.append(exc)

    first = threading.Thread(target=call, args=(lambda txn, _: gate.wait(5),))
    first.start()
    time.sleep(0.2)
    others = [threading.Thread(target=call, args=(w,)) for w in (good, broken)]
    for t in others:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in (first, *others):
        t.join(30)
    # Never a part of a group: neither the good write nor the broken one's put.
    assert len(errors) == 2 and all("a bug" in str(e) for e in errors)
    assert read(store, table, b"half") is None and read(store, table, b"good") is None


def test_a_leader_waits_for_announced_operations(store, monkeypatch):
    monkeypatch.setattr("anomalyd.commit.ARRIVAL_WAIT", 5.0)
    table = store.open_db(b"test")
    group = GroupCommit(store)
    group.announce()  # another caller is preparing its operation
    leader = threading.Thread(
        target=group.run, args=(noop, lambda txn, _: txn.put(b"a", b"1", db=table))
    )
    leader.start()
    time.sleep(0.3)
    assert leader.is_alive(), "the leader waits for the announced operation"
    group.run(noop, lambda txn, _: txn.put(b"b", b"2", db=table), announced=True)
    leader.join(10)
    assert group.commits == 1 and group.operations == 2
    # A withdrawn announcement is not waited for.
    group.announce()
    group.withdraw()
    started = time.monotonic()
    group.run(noop, lambda txn, _: txn.put(b"c", b"3", db=table))
    assert time.monotonic() - started < 2.5
    assert read(store, table, b"c") == b"3"


def test_an_observe_that_is_refused_or_replayed_withdraws_its_announcement(store):
    from anomalyd.delivery import AlertService
    from anomalyd.observer import Observer
    from anomalyd.settings import Settings
    from anomalyd.store.streams import StreamTables
    from anomalyd.streams import KeyReused, PointsOutOfOrder, StreamConfig

    alerts = AlertService(Settings(), store).alerts
    observer = Observer(
        store, StreamTables(store, 100), StreamConfig(0.5, "both", 0), alerts
    )

    def answer(learned) -> bytes:
        return b"%d" % learned.record.points

    first = observer.observe("s", (10,), (1.0,), answer, b"k", b"d" * 16)
    assert first.answer == b"1"
    assert observer.observe("s", (10,), (1.0,), answer, b"k", b"d" * 16).answer == b"1"
    with pytest.raises(KeyReused):
        observer.observe("s", (10,), (2.0,), answer, b"k", b"e" * 16)
    with pytest.raises(PointsOutOfOrder):
        observer.observe("s", (5,), (1.0,), answer)
    assert observer.observe("s", (11,), (1.0,), answer).answer == b"2"
    # Nothing announced is left behind: a leader never waits for a phantom.
    assert observer.group._coming == 0
