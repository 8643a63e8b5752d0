"""A page of an id-ordered listing (series or streams) filtered by an id prefix, as
the dashboard's lists and their search box page through it, and the links around it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from anomalyd.api.html import href

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


def page_links(
    rows: Sequence[Row],
    listed_after: Callable[[int, str | None], list[Row]],
    listed_before: Callable[[int, str], list[Row]],
    prefix: str,
    cursor: bool,
    keep: dict[str, str],
    cursors: tuple[str, str],
    words: tuple[str, str, str],
) -> list[str]:
    """The first, previous and next page links of a page of ``rows`` (those that
    lead somewhere): ``cursor``, whether the page was asked for with one; ``keep``,
    the query parameters the links carry; ``cursors``, the names of the after and
    before parameters; ``words``, the three links' text."""
    has_previous = has_next = False
    if rows:
        before = listed_before(1, rows[0][0])
        after = listed_after(1, rows[-1][0])
        has_previous = bool(before) and before[0][0].startswith(prefix)
        has_next = bool(after) and after[0][0].startswith(prefix)
    after_name, before_name = cursors
    first, previous, following = words
    links = []
    if has_previous or (cursor and not rows):
        links.append(f'<a href="{href("/", **keep)}">{first}</a>')
    if has_previous:
        at = href("/", **{before_name: rows[0][0]}, **keep)
        links.append(f'<a rel="prev" href="{at}">{previous}</a>')
    if has_next:
        at = href("/", **{after_name: rows[-1][0]}, **keep)
        links.append(f'<a rel="next" href="{at}">{following}</a>')
    return links
