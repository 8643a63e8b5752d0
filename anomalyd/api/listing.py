"""A page of an id-ordered listing (series or streams) filtered by an id prefix, as
the dashboard's lists and their search box page through it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

Row = TypeVar("Row", bound=Sequence)


def below(series_id: str) -> str | None:
    """A cursor for a listing ``(limit, after)`` whose listing starts at the first id
    at or after ``series_id`` (``after`` itself is excluded, and no id lies between it
    and ``series_id``: every id is ASCII, and U+10FFFF sorts after all)."""
    if not series_id:
        return None
    return series_id[:-1] + chr(ord(series_id[-1]) - 1) + "\U0010ffff"


def prefixed_page(
    listed_after: Callable[[int, str | None], list[Row]],
    listed_before: Callable[[int, str], list[Row]],
    limit: int,
    prefix: str,
    after: str | None,
    before: str | None,
) -> list[Row]:
    """The ``limit`` rows whose id (``row[0]``) starts with ``prefix``: after
    ``after``, or before ``before`` (the first page when fewer are left before it),
    all read in id order."""
    if before is not None:
        rows = [
            row for row in listed_before(limit, before) if row[0].startswith(prefix)
        ]
        if len(rows) == limit:
            return rows
        after = None
    start = below(prefix)
    if after is not None and (start is None or after > start):
        start = after
    rows = listed_after(limit, start)
    return list(itertools.takewhile(lambda row: row[0].startswith(prefix), rows))
