"""Decoding the ``timestamps`` and ``values`` columns of a JSON body into numpy arrays.

msgspec decoding a 16.7M-point body straight into ``list[float]`` builds a Python
object per number (32 bytes each, plus the list) and holds the GIL for the whole
decode: a 64 MiB fit peaked at 1.78 GB and stalled every other thread of its worker.
Here the body is decoded first with both columns as ``msgspec.Raw`` (a view into the
body: msgspec checks the JSON syntax, the other fields and unknown or missing fields),
then each column is decoded in pieces of about ``CHUNK_BYTES`` into a preallocated
array. Each piece is a short C call, so the GIL changes hands between them.

The pieces are cut at commas. A piece that decodes proves its cut was between two
elements (an element that holds a comma is a string, an array or an object, and a
piece cut inside one does not decode), so the next piece starts on an element. A piece
that fails with a validation error fails on a real element; its path is rewritten from
the piece (``$[17]``) to the column (``$.values[1048593]``), so the description is
msgspec's own for that element. A piece cut inside a string is cut again after it.

msgspec reading the whole body at once to find the columns would itself hold the GIL
for hundreds of milliseconds on a 64 MiB body. So a body from ``FAST_MIN_BYTES`` on
whose columns hold numbers only (the common case) has them found in steps of ``STEP``
bytes, and msgspec decodes the rest of the body with the arrays emptied (see
``_numeric_columns``); anything unusual or refused there is decoded the exact way
above, so every error is the one decoding the whole body gives.

Used by fit, batch predict and (later) the streams' batch observe. No HTTP here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec
import numpy as np

from anomalyd import timestamps as ts
from anomalyd.detectors import InvalidTrainingData, check_finite

CHUNK_BYTES = 256 * 1024
# Bodies from this size on have their columns found in steps of STEP bytes.
FAST_MIN_BYTES = 1024 * 1024
STEP = 1024 * 1024
COLUMNS = ("timestamps", "values")

_PATH = re.compile(r" - at `\$\[([0-9]+)\]`$")
_NOT_SPACE = re.compile(rb"[^ \t\n\r]")
_KEY = re.compile(rb'"(timestamps|values)"[ \t\n\r]*:[ \t\n\r]*\[')
_numbers = msgspec.json.Decoder(list[ts.IntSeconds | ts.FloatSeconds])
_mixed = msgspec.json.Decoder(list[ts.TimestampIn])
_floats = msgspec.json.Decoder(list[float])


def columns_decoder(documented: type[msgspec.Struct]) -> msgspec.json.Decoder:
    """A decoder of ``documented`` (the request Struct ``/openapi.json`` shows) with
    its columns left as ``msgspec.Raw``; every other field is decoded as documented."""
    fields = []
    for field in msgspec.structs.fields(documented):
        if field.name in COLUMNS:
            fields.append((field.name, msgspec.Raw))
        elif field.required:
            fields.append((field.name, field.type))
        else:
            fields.append((field.name, field.type, field.default))
    config = documented.__struct_config__
    columns = msgspec.defstruct(
        documented.__name__ + "Columns",
        fields,
        forbid_unknown_fields=config.forbid_unknown_fields,
    )
    return msgspec.json.Decoder(columns)


def decode(
    body: bytes | bytearray,
    decoder: msgspec.json.Decoder,
    min_points: int,
    keep_timestamps: bool = True,
) -> tuple[object, np.ndarray | None, np.ndarray]:
    """Decode a fit or batch body: the request (columns as Raw), int64 timestamps
    (None unless ``keep_timestamps``: they are checked all the same) and float64
    values, with the lengths, ``min_points`` and finiteness checked."""
    if len(body) >= FAST_MIN_BYTES:
        found = _numeric_columns(body, decoder)
        if found is not None:
            try:
                return _decode(body, *found, min_points, keep_timestamps, True)
            except _Retry:
                pass  # the exact path finds what is wrong and says it as msgspec does
    request = decoder.decode(body)
    spans = (
        _span(body, request.timestamps, "$.timestamps", _numbers),
        _span(body, request.values, "$.values", _floats),
    )
    return _decode(body, request, spans, min_points, keep_timestamps, False)


class _Retry(Exception):
    """A numbers-only column that does not decode: decode the body the exact way."""


def _decode(body, request, spans, min_points, keep_timestamps, fast):
    bad_string: list[str] = []

    def fill_timestamps(out, items: list, offset: int, numbers: bool) -> None:
        if numbers:
            if out is not None:
                ts.fill_numbers(out, items, offset)
        elif not bad_string:
            kept = out is not None
            target = out if kept else np.empty(len(items), np.int64)
            try:
                ts.fill_mixed(
                    target, items, offset if kept else 0, "$.timestamps", offset
                )
            except ValueError as exc:
                bad_string.append(str(exc))

    stamps_at, values_at = spans
    size = values_at[3]
    if keep_timestamps and stamps_at[3] == size:
        # Both columns in one buffer, timestamps then values: the layout of the
        # store's points record (store.points_blob stores it without a copy).
        both = np.empty(2 * size, np.int64)
        stamps, values = both[:size], both.view(np.float64)[size:]
    else:
        stamps = np.empty(stamps_at[3], np.int64) if keep_timestamps else None
        values = np.empty(size, np.float64)
    stamp_decoders = (_numbers,) if fast else (_numbers, _mixed)
    columns = [
        (stamps_at, stamps, stamp_decoders, fill_timestamps),
        (values_at, values, (_floats,), _fill_plain),
    ]
    # In the order of the body, so the first refusal is the one a whole decode gives.
    if values_at[1] < stamps_at[1]:
        columns.reverse()
    counts = {
        id(span): _fill(span, out, dec, how, fast) for span, out, dec, how in columns
    }
    count, n = counts[id(stamps_at)], counts[id(values_at)]
    if stamps is not None and count < stamps.shape[0]:
        stamps = stamps[:count]  # commas inside strings: a refusal follows
    if n < values.shape[0]:
        values = values[:n]
    if bad_string:
        # A string that is not a timestamp: reported after msgspec's own checks of
        # both columns, as decoding the whole body at once would.
        raise InvalidTrainingData(bad_string[0])
    check_lengths(count, n, min_points)
    check_finite(values)
    return request, stamps, values


def _numeric_columns(body, decoder):
    """(request, spans) without msgspec reading the columns in one call, for the
    common body whose columns hold numbers only; None for any other body.

    The columns are found in steps of ``STEP`` bytes (each a short C call, so the GIL
    changes hands between them): a key, then the array up to its ``]``, with no
    quote, bracket, brace or backslash inside. msgspec then decodes the body with
    the two arrays emptied, and must find them exactly where they were cut out:
    numbers cannot change the structure around them, so the body is the same
    document with its arrays filled in.
    """
    n = len(body)
    found: dict[bytes, tuple[int, int]] = {}
    pos = 0
    while len(found) < 2:
        match = None
        while match is None and pos < n:
            match = _KEY.search(body, pos, min(pos + STEP + 64, n))
            if match is None:
                pos += STEP
        if match is None or match.group(1) in found:
            return None
        start = match.end()
        end = _array_end(body, start)
        if end is None:
            return None
        found[match.group(1)] = (start, end)
        pos = end + 1
    (o1, c1), (o2, c2) = sorted(found.values())
    skeleton = body[:o1] + body[c1:o2] + body[c2:]
    try:
        request = decoder.decode(skeleton)
    except msgspec.DecodeError:
        return None
    spans = []
    for name in COLUMNS:
        start, end = found[name.encode()]
        at = start - 1 if start == o1 else start - 1 - (c1 - o1)
        _, where, until = _locate(skeleton, getattr(request, name))
        if (where, until) != (at, at + 2):
            return None
        spans.append((body, start, end, _count(body, start, end), "$." + name))
    return request, spans


def _array_end(body, start: int) -> int | None:
    """The ``]`` closing an array of numbers that starts at ``start``, or None."""
    n = len(body)
    pos = start
    while pos < n:
        window = min(pos + STEP, n)
        close = body.find(b"]", pos, window)
        stop = window if close < 0 else close
        for mark in (b'"', b"[", b"{", b"}", b"\\"):
            if body.find(mark, pos, stop) >= 0:
                return None
        if close >= 0:
            return close
        pos = window
    return None


def _count(buf, first: int, last: int) -> int:
    """An upper bound of the elements in ``buf[first:last]`` (0 when blank): every
    element but the last is followed by a comma. Counted in steps."""
    if _NOT_SPACE.search(buf, first, last) is None:
        return 0
    commas = 0
    for start in range(first, last, STEP):
        commas += buf.count(b",", start, min(start + STEP, last))
    return commas + 1


def check_lengths(count: int, n: int, min_points: int) -> None:
    """The checks of the column lengths every body gets, whatever its format."""
    if count != n:
        raise InvalidTrainingData(
            f"$.timestamps has {count} items but $.values has {n}: "
            "they must be the same length"
        )
    if n < min_points:
        raise InvalidTrainingData(
            f"$.values has {n} points; {needed(min_points)} are needed"
        )


def needed(min_points: int) -> str:
    """How many points a body needs, in words: a batch needs one, a fit the
    ``min_points`` setting."""
    return (
        "at least one point"
        if min_points == 1
        else f"at least {min_points} (min_points)"
    )


def _fill_plain(out, items: list, offset: int, numbers: bool) -> None:
    if out is not None:
        # fromiter with a count is the fastest way numpy has from a list.
        out[offset : offset + len(items)] = np.fromiter(items, out.dtype, len(items))


def _span(body, raw: msgspec.Raw, field: str, decoder) -> tuple:
    """(buffer, first, last, size, field): a column's elements are
    ``buffer[first:last]``, ``size`` an upper bound of their count (larger only with
    commas inside strings, which no valid element holds); msgspec's error when the
    column is not an array."""
    buf, start, end = _locate(body, raw)
    if buf[start] != ord("["):
        try:
            decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise _located(exc, field, 0) from None
    first, last = start + 1, end - 1
    return buf, first, last, _count(buf, first, last), field


def _fill(span: tuple, out, decoders, fill: Callable, fast: bool = False) -> int:
    """Decode a column piece by piece into ``out`` (None: check only); the count.
    ``fill(out, items, offset, numbers)`` writes a piece, ``numbers`` telling
    whether the first decoder (numbers only) read it. ``fast``: any refusal is a
    ``_Retry`` (the column was found without msgspec)."""
    buf, first, last, size, field = span
    n = 0
    pos = first if size else last
    while pos < last:
        cut = buf.find(b",", min(pos + CHUNK_BYTES, last), last)
        if cut < 0:
            cut = last
        if fast:
            try:
                items = decoders[0].decode(b"[" + buf[pos:cut] + b"]")
            except msgspec.DecodeError:
                raise _Retry from None
            numbers = True
        else:
            items, numbers, cut = _piece(buf, pos, cut, last, decoders, field, n)
        fill(out, items, n, numbers)
        n += len(items)
        pos = cut + 1
    return n


def _piece(buf, pos: int, cut: int, last: int, decoders, field: str, n: int):
    """Decode ``buf[pos:cut]`` as a list: (items, read by the first decoder?, the cut
    used). The later decoders are tried when the first refuses an element (strings
    among timestamps); the last one's refusal is the column's error."""
    while True:
        piece = b"[" + buf[pos:cut] + b"]"
        for i, decoder in enumerate(decoders):
            try:
                return decoder.decode(piece), i == 0, cut
            except msgspec.ValidationError as exc:
                if i == len(decoders) - 1:
                    raise _located(exc, field, n) from None
            except msgspec.DecodeError:
                break
        # The cut fell inside a string (the only element that can hold a comma and
        # still be read past it): cut again after that string. The whole rest of a
        # column is valid JSON (the body was), so this ends by ``last`` at worst.
        if cut >= last:  # pragma: no cover - the body was checked as JSON
            raise msgspec.DecodeError(f"{field} could not be read")
        cut = _after_string(buf, pos, cut, last)


def _after_string(buf, pos: int, cut: int, last: int) -> int:
    """The first comma after the string that spans ``cut`` (or ``last``)."""
    # Inside a JSON string every quote is escaped, so the string's opening quote is
    # the last unescaped quote before the cut, and its closing quote the first
    # unescaped one after it.
    closing = buf.find(b'"', cut, last)
    while closing >= 0 and _escaped(buf, closing):
        closing = buf.find(b'"', closing + 1, last)
    if closing < 0:
        return last
    following = buf.find(b",", closing + 1, last)
    return last if following < 0 else following


def _escaped(buf, quote: int) -> bool:
    backslashes = 0
    while buf[quote - 1 - backslashes] == 0x5C:
        backslashes += 1
    return backslashes % 2 == 1


def _located(exc: msgspec.ValidationError, field: str, offset: int):
    """msgspec's error of a piece, with its path in the whole column."""
    message = str(exc)
    match = _PATH.search(message)
    if match is None:
        message = f"{message} - at `{field}`"
    else:
        index = offset + int(match.group(1))
        message = message[: match.start()] + f" - at `{field}[{index}]`"
    return msgspec.ValidationError(message)


def _locate(body, raw: msgspec.Raw) -> tuple[bytes | bytearray, int, int]:
    """The buffer ``raw`` views and its span in it, to search it without a copy."""
    view = np.frombuffer(raw, np.uint8)
    whole = np.frombuffer(body, np.uint8)
    start = view.ctypes.data - whole.ctypes.data
    if 0 <= start <= len(body) - len(view):
        return body, start, start + len(view)
    copied = bytes(raw)  # pragma: no cover - msgspec views the body it decodes
    return copied, 0, len(copied)  # pragma: no cover
