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
_STYLE = {
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
    # Pad the last bucket with its last value: an index past the end clips back to n-1,
    # which has that same value.
    padded = np.empty(buckets * size, dtype=values.dtype)
    padded[:n] = values
    padded[n:] = values[-1]
    grid = padded.reshape(buckets, size)
    base = np.arange(buckets) * size
    lows = base + np.argmin(grid, axis=1)
    highs = base + np.argmax(grid, axis=1)
    keep = np.concatenate(([0, n - 1], lows, highs))
    return np.unique(np.minimum(keep, n - 1))


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def _label(x: dt.datetime) -> str:
    return x.strftime("%Y-%m-%d %H:%M")


def title_text(
    series_id: str, version: int, model: Model, points: int, drawn: int, beyond: int
) -> str:
    return (
        f"{series_id} v{version} · {model.kind} k={model.k:g} {model.direction} · "
        f"center {_fmt(model.center)} · scale {_fmt(model.scale)}\n"
        f"{points} points ({drawn} drawn) · {beyond} beyond a bound · "
        f"lower {_fmt(model.lower)} · upper {_fmt(model.upper)}"
    )


def _static(root):
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
    bounds = [
        (name, bound)
        for name, bound in ((UPPER, model.upper), (LOWER, model.lower))
        if bound is not None
    ]
    # pygal colours series by the order they are added.
    order = [TRAINING, CENTER, *(name for name, _ in bounds), BEYOND]

    # A fixed id (pygal picks a random one) and no dated comment: the same version
    # always renders to the same bytes, which its strong ETag promises.
    chart_id = hashlib.blake2b(
        f"{series_id}\0{version}".encode(), digest_size=8
    ).hexdigest()
    chart = pygal.DateTimeLine(
        style=Style(colors=tuple(COLOURS[name] for name in order), **_STYLE),
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
        x_value_formatter=_label,
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
    chart.add_xml_filter(_static)
    # Plain Python floats: pygal formats and compares them one by one.
    xs = line_timestamps.tolist()
    chart.add(
        TRAINING,
        list(zip(xs, line_values.tolist())),
        show_dots=False,
    )
    ends = [int(line_timestamps[0]), int(line_timestamps[-1])]
    chart.add(
        CENTER,
        [(ends[0], model.center), (ends[1], model.center)],
        show_dots=False,
        stroke_style={"dasharray": "8, 5"},
    )
    for name, bound in bounds:
        chart.add(
            name,
            [(ends[0], bound), (ends[1], bound)],
            show_dots=False,
        )
    chart.add(
        BEYOND,
        list(zip(drawing.marked_timestamps.tolist(), drawing.marked_values.tolist())),
        stroke=False,
    )
    return chart.render()
