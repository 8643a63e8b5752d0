"""The master's guards around the data directory and its workers.

Before forking, ``guard_data_dir`` takes the directory lock (a second service on the
same directory is refused), checks ``data.mdb`` against its meta pages (a truncated file
would kill every worker with SIGBUS), and records the identity of ``lock.mdb`` that every
worker must find (a worker never opens a second lock table).

After forking, ``Board`` is a page of anonymous shared memory the workers write and the
master reads: each worker marks that it finished booting, and a worker that found the
store unsafe (its lock file gone) asks the master to stop the service. ``BootWatch``
reads it when a worker exits and tells the master when to halt instead of respawning:
a halt was asked for, ``data.mdb`` is damaged, or ``BOOT_FAILURES`` workers in a row
died before they finished booting (gunicorn itself halts only on a worker's clean
boot-error exit, never on a worker killed by a signal such as SIGBUS).
"""

from __future__ import annotations

import logging
import mmap
import os
import struct

from anomalyd.store import files
from anomalyd.store.errors import DataFileError, DirectoryInUse

log = logging.getLogger("anomalyd")

BOOT_FAILURES = 5
_WORD = struct.Struct("<Q")
_REASON_AT, _REASON_MAX = 64, 2048
_SLOTS_AT = 4096


class StartupError(Exception):
    """anomalyd cannot start; the message says why and what to do."""


class DataDirGuard:
    """What the master holds for the data directory while the service runs."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.lock = files.DirectoryLock(data_dir)
        try:
            self.lock.acquire("starting a second service on it is")
        except DirectoryInUse as exc:
            raise StartupError(str(exc)) from None
        self._lock_fd: int | None = None
        try:
            files.check_data_file(data_dir)
            # Kept open while the service runs: the inode cannot be reused by another
            # lock.mdb made after this one was deleted. (No fcntl lock is taken on it:
            # that is LMDB's, in the workers.)
            self._lock_fd = os.open(
                os.path.join(data_dir, files.LOCK_FILE),
                os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            st = os.fstat(self._lock_fd)
            self.lock_file = files.LockIdentity(st.st_dev, st.st_ino)
            self.lock.record(self.lock_file)
        except (DataFileError, OSError) as exc:
            self.release()
            raise StartupError(str(exc)) from None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.lock.release()


def guard_data_dir(data_dir: str) -> DataDirGuard:
    return DataDirGuard(data_dir)


class Board:
    """Shared memory between the master and its workers (inherited at fork)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, _SLOTS_AT + 8 * slots)

    def _word(self, at: int) -> int:
        return _WORD.unpack_from(self._map, at)[0]

    # -- workers ------------------------------------------------------------------

    def mark_booted(self, slot: int | None, pid: int) -> None:
        """In a worker whose application is loaded."""
        self._map[0:8] = _WORD.pack(self._word(0) + 1)  # boots, ever
        if slot is not None:
            at = _SLOTS_AT + 8 * slot
            self._map[at : at + 8] = _WORD.pack(pid)

    def request_halt(self, reason: str) -> None:
        """In a worker: the service must stop; ``reason`` is logged by the master."""
        data = reason.encode()[:_REASON_MAX]
        self._map[_REASON_AT : _REASON_AT + len(data)] = data
        self._map[8:16] = _WORD.pack(len(data))

    # -- the master ---------------------------------------------------------------

    def halt_reason(self) -> str | None:
        n = self._word(8)
        if not n:
            return None
        return self._map[_REASON_AT : _REASON_AT + n].decode(errors="replace")

    def boots(self) -> int:
        return self._word(0)

    def booted(self, slot: int, pid: int) -> bool:
        """Did the worker ``pid`` in ``slot`` finish booting? Clears the mark."""
        at = _SLOTS_AT + 8 * slot
        found = self._word(at)
        self._map[at : at + 8] = _WORD.pack(0)
        return found == pid


class BootWatch:
    """Decides, as each worker is reaped, whether the master must halt."""

    def __init__(self, board: Board, data_dir: str) -> None:
        self.board = board
        self.data_dir = data_dir
        self.streak = 0
        self._boots = 0

    def reason_to_halt(self, worker, retired: bool) -> str | None:
        reason = self.board.halt_reason()
        if reason is not None:
            return reason
        slot = getattr(worker, "anomalyd_slot", None)
        if slot is None or self.board.booted(slot, worker.pid) or retired:
            return None
        try:
            files.check_data_file(self.data_dir)
        except DataFileError as exc:
            return f"a worker died while starting: {exc}"
        except OSError:
            pass
        boots = self.board.boots()
        if boots != self._boots:  # a worker booted since the last failure
            self._boots, self.streak = boots, 0
        self.streak += 1
        log.error(
            "worker (pid %s) died before it finished starting (%d in a row)",
            worker.pid,
            self.streak,
        )
        if self.streak < BOOT_FAILURES:
            return None
        return (
            f"{self.streak} workers in a row died before they finished starting; "
            "anomalyd stops rather than restart them forever. The log above says how "
            "each one died (e.g. 'was sent SIGBUS': a damaged data.mdb, or a full "
            "runtime directory). Fix that, then start anomalyd again"
        )


def runtime_dir_error(path: str, exc: OSError) -> StartupError:
    where = f"the runtime directory {path}"
    if isinstance(exc, FileNotFoundError):
        return StartupError(
            f"{where} does not exist (RUNTIME_DIRECTORY={os.environ.get('RUNTIME_DIRECTORY', '')!r}); create it or unset RUNTIME_DIRECTORY"
        )
    return StartupError(
        f"{where} cannot hold the statistics region: {exc.strerror}; give a "
        "writable directory on a filesystem with room (RUNTIME_DIRECTORY)"
    )
