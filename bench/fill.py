"""Fill an anomalyd store directly, in big write transactions (not over HTTP).

One fit over HTTP is one durable commit; a million of them would take hours. This writes
the same records ``Store.add_version`` writes (series record, model, training data),
``batch`` series per transaction with sync off, then syncs once. It uses the store's own
layout helpers, so what it writes is what the service reads.

    python bench/fill.py DATA_DIR N_SERIES [POINTS_PER_SERIES]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from anomalyd import detectors
from anomalyd.settings import GiB
from anomalyd.store import Store, VersionRecord, schema


def series_id(i: int) -> str:
    return f"s{i:07d}"


def fill(
    path: str,
    n_series: int,
    points: int = 16,
    batch: int = 50_000,
    map_size: int = 16 * GiB,
) -> float:
    """Write ``n_series`` series of one version each; return the seconds it took."""
    started = time.perf_counter()
    store = Store(path, map_size=map_size)
    store.env.set_mapsize(map_size)
    rng = np.random.default_rng(7)
    params = detectors.DetectorParams()
    timestamps = np.arange(1_694_336_400, 1_694_336_400 + 60 * points, 60, dtype="<i8")
    ts_blob = timestamps.tobytes()
    encode = schema.record_encoder.encode
    pack_series = schema.SERIES.pack
    created_at = time.time()
    try:
        for start in range(0, n_series, batch):
            stop = min(start + batch, n_series)
            values = rng.normal(50.0, 5.0, size=(stop - start, points))
            centers = values.mean(axis=1)
            scales = values.std(axis=1)
            with store.env.begin(write=True) as txn:
                for row, i in enumerate(range(start, stop)):
                    center, scale = float(centers[row]), float(scales[row])
                    margin = params.k * scale
                    model = detectors.Model(
                        params.kind,
                        params.k,
                        params.direction,
                        center,
                        scale,
                        None,
                        center + margin,
                    )
                    key = series_id(i).encode()
                    vkey = schema.version_key(key, 1)
                    txn.put(key, pack_series(1, 1, 1, 1), db=store._series)
                    txn.put(
                        vkey,
                        encode(VersionRecord(model, points, created_at)),
                        db=store._models,
                    )
                    txn.put(
                        vkey,
                        ts_blob + values[row].astype("<f8").tobytes(),
                        db=store._points,
                    )
                store._add_to_counter(txn, stop - start)
        store.env.sync(True)
        # What the service will read: the last series, through the public API.
        version, model = store.model(series_id(n_series - 1))
        assert version == 1 and model.upper is not None
    finally:
        store.close()
    return time.perf_counter() - started


if __name__ == "__main__":
    n = int(sys.argv[2])
    seconds = fill(sys.argv[1], n, *(int(a) for a in sys.argv[3:4]))
    print(f"filled {n} series in {seconds:.1f} s")
