"""The store's domain errors. ``anomalyd.errors`` maps them to HTTP in one place."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's domain errors."""


class SeriesNotFound(StoreError):
    pass


class VersionNotFound(StoreError):
    pass


class StoreFull(StoreError):
    """No room for a write: the map is (nearly) full, or the disk is (507)."""


class StoreUnavailable(StoreError):
    """The store cannot be used safely right now (503): the message says why."""


class LockFileMismatch(StoreUnavailable):
    """``lock.mdb`` is not the file the service started with: a second lock table
    would let two writers run at once and corrupt the store."""


class IncompatibleStore(StoreError):
    pass


class CorruptRecord(StoreError):
    """A stored record that does not decode: that series/version is unusable."""


class DataFileError(StoreError):
    """``data.mdb`` is not whole (truncated, not LMDB, ...): opening it would crash."""


class DirectoryInUse(StoreError):
    """Another anomalyd process holds the data directory."""
