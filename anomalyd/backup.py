"""A consistent, compacted copy of a running store (LMDB's own copy)."""

from __future__ import annotations

import os

import lmdb

from anomalyd.settings import Settings
from anomalyd.store import MAX_DBS
from anomalyd.store.files import LOCK_FILE, is_held, lock_identity, read_holder


class BackupError(Exception):
    """The copy could not be taken; the message says why and where."""


def backup(settings: Settings, dest: str) -> str:
    """Copy the store into ``dest`` (created, must be empty) and return its path.

    LMDB's copy runs in one read transaction, so it is a consistent snapshot taken
    while the service keeps writing: every fit acknowledged before it began is in it
    (a fit is acknowledged only after its commit), none is half in it. The reader slot
    it holds keeps the writer from reusing the pages it copies. ``compact=True`` leaves
    out free pages.

    The copy's read transaction must be in the service's own lock table, or the writer
    would not see it: while a service holds the directory, ``lock.mdb`` must be the one
    it recorded, checked before opening (py-lmdb, read-only or not, creates a missing
    lock file: a second, private lock table) and again just after.
    """
    data_dir = os.path.abspath(settings.data_dir)
    if not os.path.isfile(os.path.join(data_dir, "data.mdb")):
        raise BackupError(
            f"no store in {data_dir} (no data.mdb); give the service's data_dir, "
            "e.g. --data-dir /var/lib/anomalyd"
        )
    os.makedirs(dest, mode=0o700, exist_ok=True)
    if os.listdir(dest):
        raise BackupError(f"backup destination {dest} is not empty")
    _check_lock_table(data_dir)
    try:
        env = lmdb.open(
            data_dir,
            readonly=True,
            lock=True,
            max_dbs=MAX_DBS,
            map_size=settings.map_size,
            create=False,
        )
        try:
            _check_lock_table(data_dir)
            env.copy(dest, compact=True)
        finally:
            env.close()
    except lmdb.Error as exc:
        raise BackupError(f"copying {data_dir} to {dest}: {exc}") from None
    return os.path.join(dest, "data.mdb")


def _check_lock_table(data_dir: str) -> None:
    if not is_held(data_dir):
        return  # no service: this process's lock table is the only one
    holder = read_holder(data_dir)
    if lock_identity(data_dir) != holder.lock_file:
        lock_path = os.path.join(data_dir, LOCK_FILE)
        raise BackupError(
            f"{lock_path} is not the lock table of the anomalyd using {data_dir} "
            f"(pid {holder.pid}): it was removed or replaced, and a copy taken now "
            "could read pages the service is rewriting. Restart the service (it "
            "stopped writing when it noticed), then take the backup"
        )
