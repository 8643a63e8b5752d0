"""The files of a data directory, checked without opening LMDB.

- ``check_data_file``: is ``data.mdb`` whole? LMDB maps the file and reads pages up to
  the last page its newest meta page names; a file shorter than that makes every
  process that opens it die of SIGBUS. Here the two meta pages are read with ``pread``
  (never mapped) and the file's size is compared with what they promise.
- ``lock_identity``: device and inode of ``lock.mdb``, LMDB's lock table (the reader
  slots and the writer mutex every process must share). The master records it before
  forking; a worker refuses a store whose lock file is another one.
- ``DirectoryLock``: an ``flock`` on ``anomalyd.lock`` taken by the master and inherited
  by its workers (``flock`` locks belong to the open file, which ``fork`` shares), so a
  second service, or a restore, on the same directory is refused while one runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from typing import NamedTuple, Self

from anomalyd.store.errors import DataFileError, DirectoryInUse

DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"
DIRECTORY_LOCK = "anomalyd.lock"

# LMDB 0.9 on a 64-bit host (lmdb.h / mdb.c): a page starts with a 16-byte header
# (pgno u64, pad u16, flags u16, lower u16, upper u16); the meta page's MDB_meta follows:
# magic u32, version u32, address u64, mapsize u64, two MDB_db of 48 bytes (the first,
# the free DB, keeps the page size in its md_pad u32), last_pg u64, txnid u64.
_P_META = 0x08
_MDB_MAGIC = 0xBEEFC0DE
_MDB_DATA_VERSION = 1
_FLAGS = struct.Struct("<H")  # at offset 10
_META = struct.Struct("<IIQQI")  # magic, version, address, mapsize, psize; at 16
_TAIL = struct.Struct("<QQ")  # last_pg, txnid; at 136
_META_END = 152


class Meta(NamedTuple):
    page_size: int
    last_page: int
    txnid: int
    map_size: int


class LockIdentity(NamedTuple):
    dev: int
    ino: int

    def __str__(self) -> str:
        return f"{self.dev}:{self.ino}"


def _parse_meta(page: bytes, which: int, path: str) -> Meta:
    where = f"{path}: meta page {which}"
    if len(page) < _META_END:
        raise DataFileError(f"{where} is cut short ({len(page)} bytes)")
    (flags,) = _FLAGS.unpack_from(page, 10)
    magic, version, _, map_size, psize = _META.unpack_from(page, 16)
    if magic != _MDB_MAGIC or not flags & _P_META:
        raise DataFileError(f"{where} is not an LMDB meta page: not an LMDB data file")
    if version != _MDB_DATA_VERSION:
        raise DataFileError(
            f"{where}: LMDB data format {version}, this anomalyd reads format "
            f"{_MDB_DATA_VERSION}"
        )
    if psize < 512 or psize > 65536 or psize & (psize - 1):
        raise DataFileError(f"{where}: impossible page size {psize}")
    last_page, txnid = _TAIL.unpack_from(page, 136)
    return Meta(psize, last_page, txnid, map_size)


def read_meta(path: str) -> Meta | None:
    """The newer of the two meta pages of ``path``; None if the file does not exist.

    Raises ``DataFileError`` naming the file when it is not a whole LMDB data file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DataFileError(f"{path}: {exc.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            # LMDB would take an empty file for a new store and silently start empty.
            raise DataFileError(
                f"{path} is empty (0 bytes): every model it held is gone. Restore a "
                "backup (anomalyd restore), or delete the file to start a new store"
            )
        first = _parse_meta(os.pread(fd, _META_END, 0), 0, path)
        second_page = os.pread(fd, _META_END, first.page_size)
        second = _parse_meta(second_page, 1, path)
    finally:
        os.close(fd)
    return second if second.txnid > first.txnid else first


def check_data_file(data_dir: str) -> Meta | None:
    """Refuse a ``data.mdb`` shorter than its newest meta page says (DataFileError)."""
    path = os.path.join(data_dir, DATA_FILE)
    meta = read_meta(path)
    if meta is None:
        return None
    need = (meta.last_page + 1) * meta.page_size
    size = os.stat(path).st_size
    if size < need:
        raise DataFileError(
            f"{path} is truncated: {size} bytes, but its last transaction "
            f"({meta.txnid}) uses pages up to {meta.last_page}, {need} bytes. Opening "
            "it would crash every worker (SIGBUS). Restore a backup (anomalyd restore) "
            "or put the whole file back"
        )
    return meta


def lock_identity(data_dir: str, create: bool = False) -> LockIdentity | None:
    """Device and inode of ``lock.mdb`` (created empty first if ``create``).

    LMDB initialises an empty lock file: the first process to open the environment
    finds no other holder of its fcntl lock, sizes the file and writes the header.
    """
    path = os.path.join(data_dir, LOCK_FILE)
    if create:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return LockIdentity(st.st_dev, st.st_ino)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return LockIdentity(st.st_dev, st.st_ino)


class Holder(NamedTuple):
    """What the process holding the directory lock wrote into it."""

    pid: int | None
    lock_file: LockIdentity | None


def read_holder(data_dir: str) -> Holder:
    pid = identity = None
    try:
        with open(os.path.join(data_dir, DIRECTORY_LOCK)) as f:
            text = f.read(4096)
    except OSError:
        return Holder(None, None)
    for line in text.splitlines():
        key, _, value = line.partition("=")
        try:
            if key == "pid":
                pid = int(value)
            elif key == "lock.mdb":
                dev, ino = value.split(":")
                identity = LockIdentity(int(dev), int(ino))
        except ValueError:
            continue
    return Holder(pid, identity)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DirectoryLock:
    """An exclusive ``flock`` on ``DATA/anomalyd.lock`` for as long as it is held.

    ``acquire`` fails at once with ``DirectoryInUse`` (naming the holder's pid) when a
    live process holds it. When the recorded holder is gone but the lock is still
    held, workers of a master killed with SIGKILL are still finishing: it waits up to
    ``wait`` seconds for them.
    """

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, DIRECTORY_LOCK)
        self._fd: int | None = None

    def acquire(self, what: str, wait: float = 30.0) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
            holder = read_holder(self.data_dir)
            if _alive(holder.pid) or time.monotonic() > deadline:
                os.close(fd)
                by = f"pid {holder.pid}" if holder.pid else "another process"
                raise DirectoryInUse(
                    f"{self.data_dir} is in use by anomalyd ({by}); {what} refused. "
                    "Only one anomalyd may use a data directory: stop the other one "
                    "first, or give this one another data_dir"
                ) from None
            time.sleep(0.2)
        self._fd = fd

    def record(self, lock_file: LockIdentity | None) -> None:
        """Write the holder's pid and the identity of ``lock.mdb`` into the file."""
        assert self._fd is not None
        text = f"pid={os.getpid()}\n"
        if lock_file is not None:
            text += f"lock.mdb={lock_file}\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(data_dir: str) -> bool:
    """True when a process holds the directory lock (checked without keeping it)."""
    path = os.path.join(data_dir, DIRECTORY_LOCK)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False
