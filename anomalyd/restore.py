"""``anomalyd restore BACKUP --data-dir DIR [--yes]``: roll a store back to a backup.

A restore is a rollback: versions fitted after the backup are gone, series deleted after
it come back. What it never does is reuse a version label: every series' counter is kept
at least at what it was before the restore (the larger of the store's and the backup's),
so the next fit of a series whose v4 and v5 were rolled back is v6, and ``v4`` never
names two different models.

It refuses while a service uses the directory (it takes the directory lock the service
holds, and keeps it until done), prints what it will roll back, and changes nothing
without ``--yes``. With it: the backup is copied next to the store, migrated to the
current layout, given the counters, checked (``Store.verify``), then renamed over
``data.mdb`` in one step (a crash leaves either the old store or the new one).
"""

from __future__ import annotations

import os
import shutil
import struct
from typing import NamedTuple, TextIO

import lmdb

from anomalyd.store import MAX_DBS, Store
from anomalyd.store import schema as layout
from anomalyd.store.errors import DataFileError, DirectoryInUse, StoreError
from anomalyd.store.files import DATA_FILE, DirectoryLock, check_data_file
from anomalyd.store.outbox import new_epoch


class RestoreError(Exception):
    """The restore cannot be done; the message says why."""


class State(NamedTuple):
    counter: int  # last version number ever assigned
    live: frozenset[int]  # the versions stored (empty: not live)


NONE = State(0, frozenset())


def read_state(path: str) -> tuple[dict[bytes, State], dict[bytes, bytes]]:
    """Every series' state and every model record, from a store of layout 1 or 2
    (a data directory, or a data.mdb file), opened read-only without a lock file."""
    if not os.path.exists(path):
        return {}, {}
    env = lmdb.open(
        path,
        subdir=os.path.isdir(path),
        readonly=True,
        lock=False,
        max_dbs=MAX_DBS,
    )
    try:
        with env.begin() as txn:
            names = {bytes(k) for k, _ in txn.cursor()}

            def table(name: bytes):
                if name not in names:
                    return []
                return txn.cursor(db=env.open_db(name, txn=txn, create=False))

            version = b"1"
            for key, raw in table(b"meta"):
                if key == b"schema_version":
                    version = bytes(raw)
            if int(version) > layout.SCHEMA_VERSION:
                raise RestoreError(
                    f"{path} holds schema version {int(version)}; this anomalyd "
                    f"reads versions up to {layout.SCHEMA_VERSION}"
                )
            counters: dict[bytes, int] = {}
            for key, raw in table(b"series"):
                # The counter leads both layouts' records (v1: last, first).
                counters[bytes(key)] = layout.COUNTER.unpack_from(raw)[0]
            for key, raw in table(b"retired"):
                counters[bytes(key)] = layout.RETIRED.unpack(raw)[0]
            models = {bytes(k): bytes(v) for k, v in table(b"models")}
    finally:
        env.close()
    live: dict[bytes, set[int]] = {}
    for vkey in models:
        live.setdefault(vkey[:-5], set()).add(layout.VERSION.unpack(vkey[-4:])[0])
    states = {
        key: State(counter, frozenset(live.get(key, ())))
        for key, counter in counters.items()
    }
    return states, models


def _spans(versions: set[int]) -> str:
    """``v1..v3, v6``: runs of consecutive versions."""
    runs: list[list[int]] = []
    for v in sorted(versions):
        if runs and runs[-1][1] == v - 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"v{a}" if a == b else f"v{a}..v{b}" for a, b in runs)


class Change(NamedTuple):
    series_id: str
    now: State
    backup: State
    counter: int  # after the restore

    def describe(self) -> str:
        now, then = self.now.live, self.backup.live
        parts = []
        if now - then:
            parts.append(f"loses {_spans(now - then)}")
        if then - now:
            parts.append(f"gets back {_spans(then - now)}")
        if now & then:
            parts.append(f"keeps {_spans(now & then)}")
        if not then:
            parts.append("is absent from the backup")
        return f"  {self.series_id}: {', '.join(parts)}; its next fit is v{self.counter + 1}"


def plan(
    current: str, backup: str
) -> tuple[list[Change], int, list[str], dict[bytes, State]]:
    """What restoring ``backup`` over ``current`` does: the series that change, how
    many do not, warnings, and every series' counter after the restore."""
    now, now_models = read_state(current)
    then, then_models = read_state(backup)
    changes, unchanged, warnings = [], 0, []
    counters: dict[bytes, State] = {}
    for key in sorted(now.keys() | then.keys()):
        a, b = now.get(key, NONE), then.get(key, NONE)
        counter = max(a.counter, b.counter)
        counters[key] = State(counter, b.live)
        if a.live == b.live:
            unchanged += 1
        else:
            changes.append(Change(key.decode(), a, b, counter))
        for v in sorted(a.live & b.live):
            vkey = layout.version_key(key, v)
            if now_models.get(vkey) != then_models.get(vkey):
                warnings.append(
                    f"  WARNING: {key.decode()} v{v} in the backup is not the v{v} "
                    "stored now: is this a backup of another store?"
                )
    return changes, unchanged, warnings, counters


def _backup_file(backup: str) -> str:
    path = os.path.join(backup, DATA_FILE) if os.path.isdir(backup) else backup
    if not os.path.isfile(path):
        raise RestoreError(f"no backup at {backup} (no {DATA_FILE})")
    try:
        check_data_file(os.path.dirname(os.path.abspath(path)))
    except DataFileError as exc:
        raise RestoreError(f"the backup is damaged: {exc}") from None
    return path


def restore(backup: str, data_dir: str, map_size: int, yes: bool, out: TextIO) -> int:
    """Print the plan; with ``yes``, do it. Returns the exit status."""
    source = _backup_file(backup)
    lock = DirectoryLock(data_dir)
    try:
        lock.acquire("restore", wait=0)
    except DirectoryInUse as exc:
        raise RestoreError(
            f"{exc}. Stop the service (systemctl stop anomalyd)"
        ) from None
    with lock:
        lock.record(None)
        changes, unchanged, warnings, counters = plan(data_dir, source)
        print(
            f"restore {source} into {data_dir}: a rollback to the backup. Version "
            "labels are never reused: each series' next version follows the highest "
            "it ever had.",
            file=out,
        )
        for line in [c.describe() for c in changes] + warnings:
            print(line, file=out)
        print(f"  {unchanged} series unchanged", file=out)
        if not yes:
            print("Nothing was changed: run again with --yes to restore.", file=out)
            return 1
        _apply(source, data_dir, map_size, counters)
        print(f"restored: {os.path.join(data_dir, DATA_FILE)}", file=out)
    return 0


def _apply(source: str, data_dir: str, map_size: int, counters: dict) -> None:
    work = os.path.join(data_dir, f".restore-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work, mode=0o700)
    try:
        staged = os.path.join(work, DATA_FILE)
        shutil.copyfile(source, staged)
        size = os.path.getsize(staged)
        store = Store(work, map_size=max(map_size, 2 * size))
        try:
            with store.write(reserve=False) as txn:
                for key, state in counters.items():
                    txn.delete(key, db=store._retired)
                    if state.live:
                        live = state.live
                        record = (state.counter, min(live), max(live), len(live))
                        txn.put(key, layout.SERIES.pack(*record), db=store._series)
                    else:
                        txn.put(
                            key, layout.RETIRED.pack(state.counter), db=store._retired
                        )
                # Alert event ids are epoch-sequence: the sequence rolls back with
                # the store, so a new epoch keeps every id new.
                new_epoch(txn, store.open_db(b"meta"))
            problems = store.verify()
            if problems:
                raise RestoreError(f"the restored copy does not verify: {problems[:5]}")
        except (StoreError, struct.error) as exc:
            raise RestoreError(f"restoring {source}: {exc}") from None
        finally:
            store.close()
        target = os.path.join(data_dir, DATA_FILE)
        owner = os.stat(target if os.path.exists(target) else data_dir)
        if os.geteuid() == 0:  # e.g. by hand for a DynamicUser service
            os.chown(staged, owner.st_uid, owner.st_gid)
        os.chmod(staged, 0o600)
        fd = os.open(staged, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(staged, target)
        fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
