"""Regions of dead services: found and removed at start.

A region (``stats.Stats``) is marked ``LOCKED_MAGIC`` by a service that holds an
``flock`` on it for its whole life (master and workers share the lock). A marked region
whose lock can be taken belongs to no live process: its service was killed (SIGKILL
leaves it behind). Regions made by an anomalyd that did not lock them are never
touched: nothing tells whether their service still runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile

from anomalyd.stats import LOCKED_MAGIC, MAGIC_WORD


def _stale(path: str) -> bool:
    """A region marked as locked whose lock nobody holds: its service is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if os.pread(fd, 8, 8 * MAGIC_WORD) != LOCKED_MAGIC.to_bytes(8, "little"):
            return False  # not made by an anomalyd that locks its region
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        return True
    finally:
        os.close(fd)


def remove_stale_regions(runtime_dir: str | None) -> list[str]:
    """Remove the regions of dead services: in ``runtime_dir`` (a given runtime
    directory), or, when None, whole ``anomalyd-*`` directories of this user in the
    temporary directory. Returns what was removed."""
    removed = []
    if runtime_dir is not None:
        for entry in os.scandir(runtime_dir):
            if entry.name.startswith("stats-") and _stale(entry.path):
                os.unlink(entry.path)
                removed.append(entry.path)
        return removed
    for entry in os.scandir(tempfile.gettempdir()):
        if not entry.name.startswith("anomalyd-") or not entry.is_dir(
            follow_symlinks=False
        ):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            regions = [
                r.path for r in os.scandir(entry.path) if r.name.startswith("stats-")
            ]
        except OSError:
            continue
        if regions and all(_stale(r) for r in regions):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed
