"""The LMDB store (``from anomalyd.store import Store, StoreFull, ...``).

- ``base``:     the environment, lock file checks, headroom, the one write path.
- ``files``:    data.mdb meta pages, lock.mdb identity, the directory lock (no LMDB).
- ``schema``:   the layout, its version, records, the migration from version 1.
- ``models``:   ``Store``: versions, training data, drawings, counters.
- ``drawings``: what /plot draws of a version, as stored at fit time.
- ``verify``:   the walk that checks every record.
"""

from anomalyd.store.base import MAX_DBS, StoreBase, headroom_bytes
from anomalyd.store.drawings import Drawing
from anomalyd.store.errors import (
    CorruptRecord,
    DataFileError,
    DirectoryInUse,
    IncompatibleStore,
    LockFileMismatch,
    SeriesNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
    VersionNotFound,
)
from anomalyd.store.models import ModelCache, Store
from anomalyd.store.schema import (
    SCHEMA_VERSION,
    VersionRecord,
)

__all__ = [
    "MAX_DBS",
    "SCHEMA_VERSION",
    "CorruptRecord",
    "DataFileError",
    "DirectoryInUse",
    "Drawing",
    "IncompatibleStore",
    "LockFileMismatch",
    "ModelCache",
    "SeriesNotFound",
    "Store",
    "StoreBase",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "VersionNotFound",
    "VersionRecord",
    "headroom_bytes",
]
