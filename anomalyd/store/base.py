"""The LMDB environment and the one durable write path every table uses.

``StoreBase`` opens the environment in the process that uses it (never across fork),
checks that ``lock.mdb`` is the lock table the service started with (before opening,
just after, and before every write transaction), and gives other parts of anomalyd
``env``, ``open_db(name)`` and ``write(need_bytes, reserve)``:

    with store.write(need_bytes=len(blob)) as txn:
        txn.put(key, blob, db=table)

``write`` refuses with ``StoreFull`` before the map is completely full: the last
``headroom`` bytes are kept for writes that free space (``reserve=False``: deletes), so
a full store can always be emptied. Whatever still fails for lack of room, the map
(``MapFullError``) or the disk (ENOSPC, EDQUOT, and EIO, which LMDB reports for a short
write), is a ``StoreFull`` that says which. The commit is fsync'd (``sync=True``).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import lmdb

from anomalyd.store import files
from anomalyd.store.errors import LockFileMismatch, StoreFull, StoreUnavailable

log = logging.getLogger("anomalyd")

MAX_DBS = 32
MiB = 1024 * 1024
_META_PAGES = 2

_DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EIO: "a write came up short or failed (EIO: the disk is full or failing)",
}


def headroom_bytes(map_size: int) -> int:
    """Bytes of the map kept free for deletes: 1/64 of it, 256 KiB to 64 MiB."""
    return min(max(map_size // 64, 256 * 1024), 64 * MiB)


class StoreBase:
    """One LMDB environment and its write path. ``lock_file``: the identity of
    ``lock.mdb`` the master recorded (None: not checked, for tools and tests)."""

    def __init__(
        self,
        path: str,
        map_size: int,
        max_readers: int = 126,
        lock_file: files.LockIdentity | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = path
        self.map_size = map_size
        self.headroom = headroom_bytes(map_size)
        self._lock_file = lock_file
        self._on_fatal = on_fatal
        self._lock_lost = False
        # Before opening: LMDB would create a missing lock.mdb, a second lock table.
        self.check_lock_file()
        self.env = lmdb.open(
            path,
            map_size=map_size,
            max_readers=max_readers,
            max_dbs=MAX_DBS,
            sync=True,
            metasync=True,
            readahead=False,
            meminit=False,
        )
        try:
            # Just after: the file may have been replaced between the check and open.
            self.check_lock_file()
        except LockFileMismatch:
            self.env.close()
            raise
        # Slots left by workers killed with SIGKILL would otherwise leak.
        self.env.reader_check()
        self._main = self.env.open_db(None)
        self._tables: dict[bytes, object] = {}

    # -- the API other tables use ------------------------------------------------

    def open_db(self, name: bytes):
        """A named database (created if missing), counted in the headroom check."""
        db = self._tables.get(name)
        if db is None:
            db = self._tables[name] = self.env.open_db(name)
        return db

    @contextmanager
    def write(self, need_bytes: int = 0, reserve: bool = True) -> Iterator:
        """One durable write transaction; see the module docstring."""
        self.check_lock_file()
        try:
            with self.env.begin(write=True) as txn:
                if reserve:
                    self._check_room(txn, need_bytes)
                yield txn
        except lmdb.MapFullError:
            raise StoreFull(
                f"the store is full (map_size {self.map_size} bytes reached): raise "
                "map_size and restart, or delete series; existing models still answer"
            ) from None
        except lmdb.Error as exc:
            reason = _DISK_ERRORS.get(getattr(exc, "code", None) or _errno_of(exc))
            if reason is None:
                raise
            log.error("store write failed in %s: %s", self.path, exc)
            raise StoreFull(
                f"the disk holding {self.path} is full: {reason}. Nothing was stored; "
                "free space there and retry (models already stored still answer)"
            ) from None

    # -- checks ------------------------------------------------------------------

    def check_lock_file(self) -> None:
        """Refuse (LockFileMismatch) if lock.mdb is not the one the service started
        with; the first time, log it loudly and ask the service to stop."""
        if self._lock_file is None:
            return
        found = files.lock_identity(self.path)
        if found == self._lock_file and not self._lock_lost:
            return
        lock_path = os.path.join(self.path, files.LOCK_FILE)
        what = "was removed" if found is None else "was replaced by another file"
        message = (
            f"{lock_path} {what} while anomalyd was running. It is LMDB's lock table: "
            "a second one would let two writers run at once and corrupt the store. "
            "Writes are refused and the service stops; nothing stored is lost. Make "
            "sure nothing deletes files in the data directory, then start anomalyd "
            "again (a fresh lock table is safe once every old process is gone)"
        )
        if not self._lock_lost:
            self._lock_lost = True
            log.critical("%s", message)
            if self._on_fatal is not None:
                self._on_fatal(message)
        raise LockFileMismatch(message)

    def used_bytes(self, txn) -> int:
        """Bytes of the map the stored data occupies: the pages of every database's
        tree (``last_pgno`` never shrinks after deletes; this does)."""
        pages = _META_PAGES
        for db in (self._main, *self._tables.values()):
            stat = txn.stat(db)
            pages += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return pages * self.page_size

    @property
    def page_size(self) -> int:
        return self.env.stat()["psize"]

    def _check_room(self, txn, need_bytes: int) -> None:
        used = self.used_bytes(txn)
        if used + need_bytes + self.headroom > self.map_size:
            raise StoreFull(
                f"the store is nearly full: {used} of map_size {self.map_size} bytes "
                f"are in use, this write needs about {need_bytes} more, and the last "
                f"{self.headroom} are kept free so deletes always work. Delete series "
                "you no longer need (DELETE /series/{id}) or raise map_size and "
                "restart; existing models still answer"
            )

    def probe(self, txn) -> None:
        """Raise StoreUnavailable unless ``txn`` (a read transaction just begun) sees
        the data file this environment committed to: a file copied over the live
        ``data.mdb`` holds older transactions than the lock table has seen."""
        self.check_lock_file()
        committed = self.env.info()["last_txnid"]
        if txn.id() > committed:
            raise StoreUnavailable(
                f"{os.path.join(self.path, files.DATA_FILE)} was replaced or rolled "
                f"back under the running service (it holds transaction {committed}, the "
                f"service had reached {txn.id()}): reads and writes are unreliable. Stop "
                "anomalyd; to go back to a backup use anomalyd restore"
            )

    def close(self) -> None:
        self.env.close()


def _errno_of(exc: lmdb.Error) -> int | None:
    # The C extension's errors carry no code attribute; their message ends with
    # strerror's text.
    text = str(exc)
    for code in _DISK_ERRORS:
        if text.endswith(os.strerror(code)):
            return code
    return None
