"""A consistent, compacted copy of a running store (LMDB's own copy)."""

from __future__ import annotations

import os

import lmdb

from anomalyd.settings import Settings


def backup(settings: Settings, dest: str) -> str:
    """Copy the store into ``dest`` (created, must be empty) and return its path.

    LMDB's copy runs in one read transaction, so it is a consistent snapshot taken
    while the service keeps writing; ``compact=True`` leaves out free pages.
    """
    os.makedirs(dest, mode=0o700, exist_ok=True)
    if os.listdir(dest):
        raise SystemExit(f"anomalyd: backup destination {dest} is not empty")
    env = lmdb.open(
        os.path.abspath(settings.data_dir), readonly=True, lock=True, max_dbs=4,
        map_size=settings.map_size, create=False,
    )
    try:
        env.copy(dest, compact=True)
    finally:
        env.close()
    return os.path.join(dest, "data.mdb")
