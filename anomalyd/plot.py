"""Drawing a version: point reduction that keeps every extreme, and pygal rendering.

No HTTP here. ``drawing_of`` reduces a version's training data (sorted by timestamp, as
the store keeps it) to what is drawn, a few thousand points whatever its size; the fit
stores that (``anomalyd.store.drawings``). ``render_drawing`` takes a drawing and the
model (``render_svg`` the training data) and returns a self-contained SVG document: no script or stylesheet is fetched from
outside, so it opens offline and under a strict CSP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import numpy as np
import pygal
from pygal.style import Style

from anomalyd.detectors import Model
from anomalyd.store.drawings import Drawing

# At most this many training points are drawn as the line (2 per bucket, plus the ends),
# and at most MAX_MARKED points beyond a bound are drawn as dots.
MAX_LINE_POINTS = 2000
MAX_MARKED = 500

# The series' names in the legend; tests look for them in the SVG.
TRAINING = "training data"
CENTER = "center"
UPPER = "upper bound"
LOWER = "lower bound"
BEYOND = "beyond a bound"

COLOURS = {
    TRAINING: "#1f77b4",
    CENTER: "#2ca02c",
    UPPER: "#ff7f0e",
    LOWER: "#9467bd",
    BEYOND: "#d62728",
}
STYLE = {
    "background": "white",
    "plot_background": "white",
    "foreground": "#333333",
    "foreground_strong": "#111111",
    "foreground_subtle": "#888888",
    "guide_stroke_color": "#c8c8c8",
    "major_guide_stroke_color": "#c8c8c8",
    "font_family": "DejaVu Sans, Liberation Sans, Arial, sans-serif",
    "title_font_size": 14,
    "legend_font_size": 13,
    "label_font_size": 11,
    "major_label_font_size": 11,
    "opacity": "1",
    "stroke_opacity": "1",
    "stroke_opacity_hover": "1",
}


def reduce_extremes(
    values: np.ndarray, max_points: int = MAX_LINE_POINTS
) -> np.ndarray:
    """Indices (ascending) of the points to draw: every point when there are at most
    ``max_points``, otherwise the first and last point and the minimum and maximum of
    each of at most ``(max_points - 2) // 2`` equal-count buckets, so no peak or dip
    is lost.
    The values are in time order (the store keeps them sorted by timestamp), so the
    indices select the same points from the timestamps.
    """
    n = values.shape[0]
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // 2)
    size = -(-n // buckets)  # ceil
    buckets = -(-n // size)
    # The full buckets as a view (no copy of the values: this runs at fit time on up
    # to 16.7M points), the last, shorter one on its own.
    full = n // size
    grid = values[: full * size].reshape(full, size)
    base = np.arange(full) * size
    parts = [[0, n - 1], base + np.argmin(grid, axis=1), base + np.argmax(grid, axis=1)]
    if full * size < n:
        tail = values[full * size :]
        parts.append([full * size + np.argmin(tail), full * size + np.argmax(tail)])
    return np.unique(np.concatenate(parts))


# A bound farther than this many data spans beyond the data is drawn at that distance
# (the chart's edge) and named "off the chart": drawn where it is, it would flatten the
# data into a line, and past about 1e154 pygal's axis computation overflows.
OFF_CHART_SPANS = 2.0
# Beyond these magnitudes the drawing is scaled by a power of ten (labels keep the true
# values): pygal's tick arithmetic overflows on numbers near the float range.
SAFE_MAGNITUDE = (1e-100, 1e100)


def placed_bounds(model: Model, values: np.ndarray) -> list[tuple[str, float, float]]:
    """``(legend name, true bound, where it is drawn)`` for each bound of ``model``."""
    lo = min(float(values.min()), model.center)
    hi = max(float(values.max()), model.center)
    with np.errstate(over="ignore"):
        span = hi - lo
    placed = []
    for name, bound in ((UPPER, model.upper), (LOWER, model.lower)):
        if bound is None:
            continue
        edge = (
            hi + OFF_CHART_SPANS * span
            if name == UPPER
            else lo - OFF_CHART_SPANS * span
        )
        beyond = bound > edge if name == UPPER else bound < edge
        if math.isfinite(edge) and span > 0 and beyond:
            placed.append((f"{name} ({fmt(bound)}, off the chart)", bound, edge))
        else:
            placed.append((name, bound, bound))
    return placed


def drawing_scale(*magnitudes: float) -> int:
    """The power of ten the drawn values are divided by (0 when none is needed)."""
    largest = max(abs(m) for m in magnitudes)
    low, high = SAFE_MAGNITUDE
    if largest == 0 or low <= largest <= high:
        return 0
    return math.floor(math.log10(largest))


def fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def scaled_label(exponent: int):
    """Axis labels of values drawn divided by ``10**exponent``: the true values."""
    if exponent == 0:
        return lambda y: f"{y:.6g}"
    return lambda y: "0" if y == 0 else f"{y:.4g}e{exponent:+d}"


def time_label(x: dt.datetime) -> str:
    return x.strftime("%Y-%m-%d %H:%M")


def title_text(
    series_id: str, version: int, model: Model, points: int, drawn: int, beyond: int
) -> str:
    return (
        f"{series_id} v{version} · {model.kind} k={model.k:g} {model.direction} · "
        f"center {fmt(model.center)} · scale {fmt(model.scale)}\n"
        f"{points} points ({drawn} drawn) · {beyond} beyond a bound · "
        f"lower {fmt(model.lower)} · upper {fmt(model.upper)}"
    )


def strip_dynamic(root):
    """Drop what makes an SVG vary between renders or run code: pygal's config script
    (only its tooltip JS, which we do not ship, reads it) and the dated comment."""
    for parent in root.iter():
        for child in list(parent):
            if child.tag == "script" or (
                callable(child.tag) and "Generated with pygal" in (child.text or "")
            ):
                parent.remove(child)
    return root


def drawing_of(model: Model, timestamps: np.ndarray, values: np.ndarray) -> Drawing:
    """What is drawn of a version: its reduced line and its marked points."""
    keep = reduce_extremes(values)
    beyond_at = np.flatnonzero(model.beyond(values))
    marked = beyond_at[reduce_extremes(values[beyond_at], MAX_MARKED)]
    return Drawing(
        timestamps[keep],
        values[keep],
        timestamps[marked],
        values[marked],
        int(values.shape[0]),
        int(beyond_at.shape[0]),
    )


def render_svg(
    series_id: str,
    version: int,
    model: Model,
    timestamps: np.ndarray,
    values: np.ndarray,
    width: int = 1000,
    height: int = 500,
) -> bytes:
    """The SVG document (UTF-8 bytes) of one version's training data and model."""
    drawing = drawing_of(model, timestamps, values)
    return render_drawing(series_id, version, model, drawing, width, height)


def render_drawing(
    series_id: str,
    version: int,
    model: Model,
    drawing: Drawing,
    width: int = 1000,
    height: int = 500,
) -> bytes:
    """The SVG document (UTF-8 bytes) of one version's drawing and model."""
    n, beyond = drawing.points, drawing.beyond
    line_timestamps, line_values = drawing.line_timestamps, drawing.line_values
    # The line keeps every extreme: its range is the data's.
    bounds = placed_bounds(model, line_values)
    exponent = drawing_scale(
        float(line_values.min()),
        float(line_values.max()),
        *(at for _, _, at in bounds),
    )
    # In two steps: 10**324 (for subnormal values) is past the float range.
    half = exponent // 2
    factors = (10.0**-half, 10.0 ** -(exponent - half))

    def scaled(y):
        return y * factors[0] * factors[1]

    # pygal colours series by the order they are added.
    order = [TRAINING, CENTER, *(name for name, _, _ in bounds), BEYOND]
    colours = [COLOURS[name.split(" (")[0]] for name in order]

    # A fixed id (pygal picks a random one) and no dated comment: the same version
    # always renders to the same bytes, which its strong ETag promises.
    chart_id = hashlib.blake2b(
        f"{series_id}\0{version}".encode(), digest_size=8
    ).hexdigest()
    chart = pygal.DateTimeLine(
        style=Style(colors=tuple(colours), **STYLE),
        width=width,
        height=height,
        title=title_text(series_id, version, model, n, len(line_values), beyond),
        # The default references pygal-tooltips.js on kozea.github.io; an SVG that
        # fetches code from elsewhere would break offline and leak who looks at it.
        js=[],
        css=[
            "file://style.css",
            "file://graph.css",
            # pygal's own `.reactive` rule would pin every line to 1px.
            (
                f"inline:#chart-{chart_id} .series .line.reactive{{stroke-width:2}}"
                f"#chart-{chart_id} .serie-0 .line.reactive{{stroke-width:1}}"
            ),
        ],
        x_value_formatter=time_label,
        value_formatter=scaled_label(exponent),
        x_label_rotation=20,
        truncate_label=-1,
        truncate_legend=-1,
        legend_at_bottom=True,
        legend_at_bottom_columns=len(order),
        show_x_guides=True,
        dots_size=3,
        tooltip_fancy_mode=False,
        explicit_size=True,
    )
    chart.uuid = chart_id
    chart.add_xml_filter(strip_dynamic)
    # Plain Python floats: pygal formats and compares them one by one.
    xs = line_timestamps.tolist()
    chart.add(
        TRAINING,
        list(zip(xs, scaled(line_values).tolist())),
        show_dots=False,
    )
    ends = [int(line_timestamps[0]), int(line_timestamps[-1])]
    center = scaled(model.center)
    chart.add(
        CENTER,
        [(ends[0], center), (ends[1], center)],
        show_dots=False,
        stroke_style={"dasharray": "8, 5"},
    )
    for name, _, at in bounds:
        chart.add(
            name,
            [(ends[0], scaled(at)), (ends[1], scaled(at))],
            show_dots=False,
        )
    chart.add(
        BEYOND,
        list(
            zip(
                drawing.marked_timestamps.tolist(),
                scaled(drawing.marked_values).tolist(),
            )
        ),
        stroke=False,
    )
    return chart.render()
