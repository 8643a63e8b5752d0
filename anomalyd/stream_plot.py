"""Drawing a stream: its retained history, anomalous points marked, and its score.

No HTTP here. ``render_stream`` takes the points of a stream's history (oldest first)
and returns a self-contained SVG document, drawn by pygal the way a version's plot is
(``anomalyd.plot``: the same style, the same point reduction that keeps every extreme,
no script, a fixed chart id so the same points always draw the same bytes).

One chart, two bands on one time axis: the values in the upper half, on the left axis;
the score in the lower part, on its own axis on the right (0 to 1), with the stream's
threshold as a dashed line across it. Anomalous points are red dots on the values. The
bands do not overlap, so a spike of the score never hides the values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import numpy as np
import pygal
from pygal.style import Style

from anomalyd.plot import (
    MAX_MARKED,
    STYLE,
    drawing_scale,
    reduce_extremes,
    strip_dynamic,
    time_label,
)
from anomalyd.streams import StreamConfig

# The series' names in the legend; tests look for them in the SVG.
VALUES = "value"
ANOMALY = "anomalous point"
SCORE = "score (right axis)"
THRESHOLD = "threshold (right axis)"
WARMUP = "warm-up (no anomalies)"

COLOURS = {
    VALUES: "#1f77b4",
    ANOMALY: "#d62728",
    SCORE: "#9467bd",
    THRESHOLD: "#ff7f0e",
    WARMUP: "#bbbbbb",
}

# The left axis has VALUE_STEPS intervals of values on top, one empty interval, and
# SCORE_STEPS intervals below that hold the score band: the right axis runs from 0 at
# the bottom to 1 at the top of the score band (labels every 1 / SCORE_STEPS), and the
# labels it would have beside the values are left blank.
VALUE_STEPS = 5
SCORE_STEPS = 4
_GAP = 1
_STEPS = VALUE_STEPS + _GAP + SCORE_STEPS
SCORE_TOP = _STEPS / SCORE_STEPS  # the right axis's value at the top of the chart
# The warm-up is a bar in the empty interval between the bands, in right-axis units.
_WARMUP_AT = (SCORE_STEPS + _GAP / 2) / SCORE_STEPS
# With all the history at one instant, the time axis spans this much around it.
_LONE_SPAN = 3600


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``raw``."""
    exponent = math.floor(math.log10(raw))
    for mantissa in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = mantissa * 10.0**exponent
        if step >= raw:
            return step
    return 10.0 ** (exponent + 1)  # rounding at the last digit


def value_ticks(low: float, high: float) -> tuple[float, float]:
    """``(start, step)``: VALUE_STEPS intervals of a round step from a round start,
    covering ``low`` .. ``high``. A constant series gets a band around its value."""
    if not high > low:
        half = abs(low) * 0.05 or 1.0
        low, high = low - half, high + half
    step = nice_step((high - low) / VALUE_STEPS)
    while True:
        start = math.floor(low / step) * step
        if start + VALUE_STEPS * step >= high and math.isfinite(start):
            return start, step
        step = nice_step(step * 1.001)


# Steps of the time axis's labels, in seconds: the first that gives at most
# TIME_LABELS labels is used, from a multiple of it (UTC midnight for whole days).
_DAY = 86_400
TIME_STEPS = (1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
TIME_STEPS += tuple(d * _DAY for d in (1, 2, 7, 14, 28, 91, 182, 364))
TIME_LABELS = 8


def time_ticks(first: int, last: int) -> tuple[list[int], str]:
    """Round times for the labels of the time axis, and their strftime format."""
    span = last - first
    # At most span // step + 1 multiples of the step fall between the ends.
    step = next((s for s in TIME_STEPS if span // s < TIME_LABELS), None)
    if step is None:
        year = TIME_STEPS[-1]
        step = math.ceil(span / (TIME_LABELS - 1) / year) * year
    start = -(-first // step) * step
    if step % _DAY == 0:
        form = "%Y-%m-%d"
    elif step % 60 == 0:
        form = "%Y-%m-%d %H:%M"
    else:
        form = "%Y-%m-%d %H:%M:%S"
    return list(range(start, last + 1, step)), form


def title_text(
    series_id: str,
    config: StreamConfig,
    learned: int,
    shown: int,
    drawn: int,
    anomalous: int,
    marked: int,
    window: tuple[int | None, int | None],
) -> str:
    first = (
        f"{series_id} · {_points(learned)} learned · threshold {config.threshold:g} · "
        f"direction {config.direction} · warm-up {config.warmup}"
    )
    since, until = window
    where = ""
    if since is not None:
        where += f" from {_when(since)}"
    if until is not None:
        where += f" to {_when(until)}"
    if not shown:
        what = "no points yet" if not learned and since is until is None else "none"
        return f"{first}\n{what} in the retained history{where}"
    return (
        f"{first}\n{shown} retained {'point' if shown == 1 else 'points'}{where} ({drawn} drawn) · "
        f"{anomalous} anomalous ({marked} marked)"
    )


def value_label(exponent: int, step: float, largest: float):
    """Labels of the left axis: the true values (drawn divided by ``10**exponent``),
    with as many digits as tell ticks ``step`` apart at magnitudes up to
    ``largest``."""
    digits = min(17, max(1, math.ceil(math.log10(max(largest, step) / step)) + 2))
    if exponent == 0:
        return lambda y: f"{y:.{digits}g}"
    return lambda y: "0" if y == 0 else f"{y:.{digits}g}e{exponent:+d}"


def _points(count: int) -> str:
    return f"{count} point" if count == 1 else f"{count} points"


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _score_label(value: float) -> str:
    """The right axis: the score band's labels only."""
    return f"{value:g}" if value <= 1.0 + 1e-9 else ""


def render_stream(
    series_id: str,
    config: StreamConfig,
    learned: int,
    timestamps: np.ndarray,
    values: np.ndarray,
    scores: np.ndarray,
    anomalies: np.ndarray,
    window: tuple[int | None, int | None] = (None, None),
    warming: int = 0,
    width: int = 1000,
    height: int = 500,
) -> bytes:
    """The SVG document (UTF-8 bytes) of a stream's retained points (oldest first).

    ``learned``: the points the stream has learned in all; ``window``: the ``since``
    and ``until`` the points were chosen by (for the title); ``warming``: how many
    of the first points are in the stream's warm-up (drawn as a bar)."""
    n = int(values.shape[0])
    keep = reduce_extremes(values)
    keep_scores = reduce_extremes(scores)
    anomalous = np.flatnonzero(anomalies)
    marked = anomalous[reduce_extremes(values[anomalous], MAX_MARKED)]
    title = title_text(
        series_id,
        config,
        learned,
        n,
        len(keep),
        len(anomalous),
        len(marked),
        window,
    )
    # A fixed id (pygal picks a random one) and no dated comment: the same points
    # always render to the same bytes, which the plot's ETag promises.
    chart_id = hashlib.blake2b(
        f"stream\0{series_id}".encode(), digest_size=8
    ).hexdigest()
    order = [VALUES, ANOMALY, SCORE, THRESHOLD] + ([WARMUP] if warming else [])
    if n:
        low, high = float(values.min()), float(values.max())
        exponent = drawing_scale(low, high)
        # In two steps: 10**324 (for subnormal values) is past the float range.
        half = exponent // 2
        factors = (10.0**-half, 10.0 ** -(exponent - half))
        start, step = value_ticks(
            low * factors[0] * factors[1], high * factors[0] * factors[1]
        )
        top = start + VALUE_STEPS * step
        label = value_label(exponent, step, max(abs(start), abs(top)))
        bottom = start - (_GAP + SCORE_STEPS) * step
        options = {
            "range": (bottom, top),
            "secondary_range": (0.0, SCORE_TOP),
            "y_labels": [
                {
                    "value": bottom + i * step,
                    "label": label(start + (i - _GAP - SCORE_STEPS) * step)
                    if i >= _GAP + SCORE_STEPS
                    else "",
                }
                for i in range(_STEPS + 1)
            ],
        }
        first, last = int(timestamps[0]), int(timestamps[-1])
        if first == last:
            first, last = first - _LONE_SPAN, last + _LONE_SPAN
            options["xrange"] = (first, last)
        options["x_labels"], form = time_ticks(first, last)
        options["x_value_formatter"] = lambda x: x.strftime(form)
    else:
        # pygal would draw empty axes from 0 to 1 and dates of 1970.
        options = {
            "show_x_labels": False,
            "show_y_labels": False,
            "show_x_guides": False,
            "show_y_guides": False,
        }
    chart = pygal.DateTimeLine(
        style=Style(
            colors=tuple(COLOURS[name] for name in order),
            no_data_font_size=24,
            **STYLE,
        ),
        width=width,
        height=height,
        title=title,
        # No script from elsewhere: the SVG works offline and tells no one who looks.
        js=[],
        css=[
            "file://style.css",
            "file://graph.css",
            # pygal's own `.reactive` rule would pin every line to 1px.
            (
                f"inline:#chart-{chart_id} .series .line.reactive{{stroke-width:1}}"
                f"#chart-{chart_id} .serie-3 .line.reactive{{stroke-width:2}}"
                f"#chart-{chart_id} .serie-4 .line.reactive{{stroke-width:6}}"
            ),
        ],
        value_formatter=_score_label,
        x_label_rotation=20,
        truncate_label=-1,
        truncate_legend=-1,
        legend_at_bottom=True,
        legend_at_bottom_columns=len(order),
        dots_size=3,
        tooltip_fancy_mode=False,
        explicit_size=True,
        no_data_text="no points to draw",
        **({"show_x_guides": True, "x_value_formatter": time_label} | options),
    )
    chart.uuid = chart_id
    chart.add_xml_filter(strip_dynamic)
    if not n:
        return chart.render()

    def scaled(y: np.ndarray) -> list[float]:
        return (y * factors[0] * factors[1]).tolist()

    # Plain Python numbers: pygal formats and compares them one by one.
    chart.add(
        VALUES,
        list(zip(timestamps[keep].tolist(), scaled(values[keep]))),
        show_dots=n == 1,  # a line through one point is not drawn
    )
    chart.add(
        ANOMALY,
        list(zip(timestamps[marked].tolist(), scaled(values[marked]))),
        stroke=False,
    )
    chart.add(
        SCORE,
        list(zip(timestamps[keep_scores].tolist(), scores[keep_scores].tolist())),
        show_dots=n == 1,
        secondary=True,
    )
    chart.add(
        THRESHOLD,
        [(first, config.threshold), (last, config.threshold)],
        show_dots=False,
        secondary=True,
        stroke_style={"dasharray": "8, 5"},
    )
    if warming:
        # Up to the first point past it (or the chart's end): no gap between them.
        ends = [int(timestamps[0]), int(timestamps[warming]) if warming < n else last]
        if ends[0] == ends[1]:
            ends = [first, last]  # every point at one instant: the padded axis
        chart.add(
            WARMUP,
            [(ends[0], _WARMUP_AT), (ends[1], _WARMUP_AT)],
            show_dots=False,
            secondary=True,
        )
    return chart.render()
