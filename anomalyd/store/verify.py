"""``Store.verify``: walk every key of every database and report what is wrong.

Checks each record's shape and the links between databases: every live version has a
model and training data of the right size, drawings decode and belong to live versions,
nothing is orphaned, a deleted series is not also live, and ``series_trained`` matches
the live series.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from anomalyd.store.drawings import Drawing
from anomalyd.store.schema import (
    COUNTER,
    RETIRED,
    SERIES,
    VERSION,
    live_versions,
    record_decoder,
)

if TYPE_CHECKING:
    from anomalyd.store.models import Store


def verify(store: Store) -> list[str]:
    problems: list[str] = []
    live: dict[bytes, tuple[int, int]] = {}
    with store.env.begin() as txn:
        for key, raw in txn.cursor(db=store._meta):
            if key == b"schema_version" and not raw.isdigit():
                problems.append(f"meta {key!r}: not an integer")
            elif key == b"series_trained" and len(raw) != COUNTER.size:
                problems.append(f"meta {key!r}: {len(raw)} bytes")
        for key, raw in txn.cursor(db=store._series):
            if len(raw) != SERIES.size:
                problems.append(f"series {key!r}: {len(raw)} bytes")
                continue
            counter, first, last, count = SERIES.unpack(raw)
            found = live_versions(txn, store._models, bytes(key))
            if not 1 <= first <= last <= counter or found[-1:] != [last]:
                problems.append(
                    f"series {key!r}: v{first}..v{last} with counter {counter}"
                )
            if not found or found[0] != first or len(found) != count:
                problems.append(f"series {key!r}: {count} versions, {found} stored")
            live[bytes(key)] = (first, last)
        for key, raw in txn.cursor(db=store._retired):
            if len(raw) != RETIRED.size:
                problems.append(f"retired {key!r}: {len(raw)} bytes")
            if bytes(key) in live:
                problems.append(f"retired {key!r}: also a live series")
        points_used: dict[bytes, int] = {}
        for vkey, raw in txn.cursor(db=store._models):
            vkey = bytes(vkey)
            series_key, version = vkey[:-5], VERSION.unpack(vkey[-4:])[0]
            try:
                points_used[vkey] = record_decoder.decode(raw).points_used
            except msgspec.DecodeError as exc:
                points_used[vkey] = -1  # reported here; its points are not checked
                problems.append(f"models {vkey!r}: {exc}")
            first, last = live.get(series_key, (0, 0))
            if first == 0 or not first <= version <= last:
                problems.append(f"models {vkey!r}: not a live version")
        for vkey, raw in txn.cursor(db=store._drawings):
            vkey = bytes(vkey)
            if vkey not in points_used:
                problems.append(f"drawings {vkey!r}: no model")
                continue
            try:
                drawing = Drawing.decode(bytes(raw))
            except (ValueError, Exception) as exc:  # noqa: BLE001 - struct errors too
                problems.append(f"drawings {vkey!r}: {exc}")
                continue
            if points_used[vkey] >= 0 and drawing.points != points_used[vkey]:
                problems.append(f"drawings {vkey!r}: {drawing.points} points")
        for vkey, raw in txn.cursor(db=store._points):
            n = points_used.pop(bytes(vkey), None)
            if n is None:
                problems.append(f"points {vkey!r}: no model")
            elif n >= 0 and len(raw) != 16 * n:
                problems.append(f"points {vkey!r}: {len(raw)} bytes for {n} points")
        problems.extend(f"models {k!r}: no training data" for k in points_used)
        raw = txn.get(b"series_trained", db=store._meta)
        counted = COUNTER.unpack(raw)[0] if raw is not None else 0
        if counted != len(live):
            problems.append(f"series_trained is {counted}, {len(live)} series live")
    return problems
