"""/plot draws a large version from the drawing stored at fit time, not its data.

A real ``anomalyd serve`` (2 workers): the drawing is written in the fit's transaction,
the plot of such a version reads only it (its training data can be gone), renders the
same bytes the training data would, and versions stored without one still plot.
"""

from __future__ import annotations

import lmdb
import numpy as np

from anomalyd.detectors import DetectorParams, fit
from anomalyd.plot import drawing_of, render_drawing, render_svg
from anomalyd.store import Store
from anomalyd.store.models import DRAWN_FROM_DATA
from anomalyd.store.schema import version_key

MiB = 1024 * 1024
N = 50_000


def series(n: int, seed: int) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(seed)
    values = rng.normal(50, 5, n)
    values[rng.choice(n, 40, replace=False)] += 60  # points beyond the bound
    return list(range(1_600_000_000, 1_600_000_000 + n)), values.round(3).tolist()


def drop(data_dir, table: bytes, key: bytes) -> None:
    env = lmdb.open(str(data_dir), max_dbs=32)
    with env.begin(write=True) as txn:
        assert txn.delete(key, db=env.open_db(table, txn=txn))
    env.close()


def test_a_large_version_plots_from_its_stored_drawing(make_server):
    s = make_server()
    timestamps, values = series(N, 1)
    body = {"timestamps": timestamps, "values": values}
    assert s.post("/fit/big", body).status_code == 200
    small = {"timestamps": timestamps[:100], "values": values[:100]}
    assert s.post("/fit/small", small).status_code == 200
    first = s.get("/plot?series_id=big&version=v1")
    assert first.status_code == 200, first.text
    s.stop()

    store = Store(str(s.data_dir), map_size=64 * MiB)
    try:
        stored = store.drawing("big", 1)
        _, record, ts, vs = store.training_data("big", 1)
        assert store.drawing("small", 1) is None  # drawn from its 100 points
    finally:
        store.close()
    assert stored is not None, "the fit stored no drawing"
    assert stored.points == N and stored.beyond >= 40
    assert len(stored.line_values) <= 2000 < N
    # The stored drawing is the one the training data gives, to the byte.
    assert first.content == render_svg("big", 1, record.model, ts, vs)
    assert first.content == render_drawing("big", 1, record.model, stored)

    # With its training data gone the plot still answers: it never reads it.
    drop(s.data_dir, b"points", version_key(b"big", 1))
    s = make_server(s.data_dir)
    again = s.get("/plot?series_id=big&version=v1")
    assert again.status_code == 200, again.text
    assert again.content == first.content


def test_a_version_stored_without_a_drawing_still_plots(make_server):
    s = make_server()
    timestamps, values = series(N, 2)
    assert s.post("/fit/old", {"timestamps": timestamps, "values": values}).ok
    expected = s.get("/plot?series_id=old").content
    s.stop()
    drop(s.data_dir, b"drawings", version_key(b"old", 1))  # as before drawings
    s = make_server(s.data_dir)
    r = s.get("/plot?series_id=old")
    assert r.status_code == 200 and r.content == expected


def test_drawing_of_keeps_what_the_plot_needs():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, 10_000)
    values[[10, 5000, 9999]] = [9.0, -9.0, 12.0]
    timestamps = np.arange(10_000, dtype=np.int64) * 60
    model = fit(values, DetectorParams(direction="both"))
    drawing = drawing_of(model, timestamps, values)
    assert drawing.points == 10_000
    assert drawing.beyond == int(model.beyond(values).sum())
    assert {9.0, -9.0, 12.0} <= set(drawing.line_values.tolist())
    assert {10 * 60, 5000 * 60, 9999 * 60} <= set(drawing.marked_timestamps.tolist())
    assert drawing.line_timestamps[0] == 0 and drawing.line_timestamps[-1] == 9999 * 60
    decoded = type(drawing).decode(drawing.encode())
    for a, b in zip(drawing, decoded):
        assert np.array_equal(a, b)
    assert DRAWN_FROM_DATA < 10_000
