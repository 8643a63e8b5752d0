"""A consistent, compacted copy of a running store (LMDB's own copy)."""

from __future__ import annotations

import os

import lmdb

from anomalyd.settings import Settings


class BackupError(Exception):
    """The copy could not be taken; the message says why and where."""


def backup(settings: Settings, dest: str) -> str:
    """Copy the store into ``dest`` (created, must be empty) and return its path.

    LMDB's copy runs in one read transaction, so it is a consistent snapshot taken
    while the service keeps writing: every fit acknowledged before it began is in it
    (a fit is acknowledged only after its commit), none is half in it. The reader slot
    it holds keeps the writer from reusing the pages it copies. ``compact=True`` leaves
    out free pages.
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
    try:
        env = lmdb.open(
            data_dir,
            readonly=True,
            lock=True,
            max_dbs=4,
            map_size=settings.map_size,
            create=False,
        )
        try:
            env.copy(dest, compact=True)
        finally:
            env.close()
    except lmdb.Error as exc:
        raise BackupError(f"copying {data_dir} to {dest}: {exc}") from None
    return os.path.join(dest, "data.mdb")
