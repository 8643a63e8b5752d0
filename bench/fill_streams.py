"""Fill an anomalyd store with streams directly, in big write transactions (not HTTP).

Each stream is what the service stores for a stream that has learned ``points``
points with the default settings: its record (the detector's state included) and its
history blocks, written with the store's own tables and encoders, so what this writes
is what the service reads. ``batch`` streams per transaction, synced once at the end.

    python bench/fill_streams.py DATA_DIR N_STREAMS [POINTS_PER_STREAM]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from anomalyd.settings import GiB, Settings
from anomalyd.store import Store
from anomalyd.store.streams import (
    BLOCK_BYTES,
    StreamTables,
    _encode,
    _rows,
    numbered,
)
from anomalyd.streams import StreamConfig, learn, new_record

# The streams' last point is before this, so observes at it are never refused.
LAST_TIMESTAMP = 1_694_336_400


def stream_id(i: int) -> str:
    return f"s{i:07d}"


def fill_streams(
    path: str,
    n_streams: int,
    points: int = 64,
    batch: int = 50_000,
    map_size: int = 16 * GiB,
) -> float:
    """Write ``n_streams`` streams of ``points`` learned points each; return seconds."""
    started = time.perf_counter()
    settings = Settings()
    store = Store(path, map_size=map_size)
    tables = StreamTables(store, settings.stream_history)
    config = StreamConfig(
        settings.stream_threshold, settings.stream_direction, settings.stream_warmup
    )
    rng = np.random.default_rng(11)
    stamps = LAST_TIMESTAMP - 60 * np.arange(points, dtype=np.int64)[::-1]
    learned = learn(new_record(config), stamps, rng.normal(50.0, 2.0, points))
    record = _encode(learned.record)
    rows = _rows(learned, 0)
    blocks = [rows[i : i + BLOCK_BYTES] for i in range(0, len(rows), BLOCK_BYTES)]
    try:
        for start in range(0, n_streams, batch):
            stop = min(start + batch, n_streams)
            with store.env.begin(write=True) as txn:
                for i in range(start, stop):
                    key = stream_id(i).encode()
                    txn.put(key, record, db=tables.streams)
                    for b, block in enumerate(blocks):
                        txn.put(numbered(key, b), block, db=tables.points_db)
                tables._add_to_count(txn, stop - start)
        store.env.sync(True)
        assert tables.record(stream_id(n_streams - 1)).points == points
    finally:
        store.close()
    return time.perf_counter() - started


if __name__ == "__main__":
    n = int(sys.argv[2])
    seconds = fill_streams(sys.argv[1], n, *(int(a) for a in sys.argv[3:4]))
    print(f"filled {n} streams in {seconds:.1f} s")
