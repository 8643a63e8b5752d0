"""Unit tests of the drawing: the reduction keeps extremes, the SVG is small and sound."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from anomalyd import plot
from anomalyd.api.plot import plot_etag
from anomalyd.detectors import DetectorParams, Model, fit

SVG_NS = "{http://www.w3.org/2000/svg}"


def series(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    timestamps = 1_700_000_000 + 60 * np.arange(n, dtype=np.int64)
    values = np.cumsum(rng.normal(0, 1, n)) + 10 * np.sin(np.arange(n) / 500)
    return timestamps, values


def test_small_series_are_drawn_whole():
    _, values = series(1500)
    assert np.array_equal(plot.reduce_extremes(values), np.arange(1500))


@pytest.mark.parametrize("n", [2001, 4999, 100_003, 1_000_000])
def test_reduction_keeps_every_bucket_extreme_and_the_size_bound(n):
    _, values = series(n)
    # Isolated spikes, one of them on the very last point, must all survive.
    spikes = [17, n // 3, n // 2 + 1, n - 1]
    values[spikes] = [1e6, -1e6, 5e5, -5e5]
    keep = plot.reduce_extremes(values, 2000)
    assert len(keep) <= 2000
    assert np.all(np.diff(keep) > 0), "indices ascending and unique"
    assert keep[0] == 0 and keep[-1] == n - 1
    assert set(spikes) <= set(keep.tolist())
    assert values[keep].min() == values.min() and values[keep].max() == values.max()
    # Every stretch of the series as long as a bucket keeps its own extremes: slide a
    # window the reduction's bucket size and check both extremes of each bucket.
    size = -(-n // ((2000 - 2) // 2))
    for start in range(0, n, size):
        chunk = values[start : start + size]
        kept = values[keep[(keep >= start) & (keep < start + size)]]
        assert kept.min() == chunk.min() and kept.max() == chunk.max()


def test_reduction_can_fail():
    # The test above would notice a plain stride, which drops the spike.
    values = np.zeros(10_000)
    values[4321] = 1.0
    stride = np.arange(0, 10_000, 5)
    assert values[stride].max() == 0
    assert values[plot.reduce_extremes(values, 2000)].max() == 1.0


def parse(svg: bytes) -> ET.Element:
    assert svg.startswith(b"<?xml")
    return ET.fromstring(svg)


def legend(root: ET.Element) -> list[str]:
    return [
        t.text
        for g in root.iter(SVG_NS + "g")
        if "legend" in (g.get("class") or "").split()
        for t in g.iter(SVG_NS + "text")
    ]


def test_svg_is_well_formed_with_the_expected_series_and_title():
    timestamps, values = series(50_000)
    model = fit(values, DetectorParams(kind="robust", k=2.0, direction="both"))
    svg = plot.render_svg("sensor_01", 4, model, timestamps, values)
    root = parse(svg)
    assert legend(root) == [
        plot.TRAINING,
        plot.CENTER,
        plot.UPPER,
        plot.LOWER,
        plot.BEYOND,
    ]
    title = " ".join(
        t.text for t in root.iter(SVG_NS + "text") if "plot_title" in t.get("class", "")
    )
    beyond = int(model.beyond(values).sum())
    assert beyond > 0
    for part in (
        "sensor_01 v4",
        "robust",
        f"center {model.center:.6g}",
        f"scale {model.scale:.6g}",
        "50000 points",
        f"{beyond} beyond a bound",
    ):
        assert part in title
    # The training line, the center, two bounds: one path each; marked points as dots.
    # pygal repeats each series' group in its overlays: gather them all.
    groups = [
        g
        for g in root.iter(SVG_NS + "g")
        if (g.get("class") or "").startswith("series serie-")
    ]
    paths = [
        p
        for g in groups
        for p in g.iter(SVG_NS + "path")
        if "line" in p.get("class", "")
    ]
    assert len(paths) == 4
    dots = [
        c
        for g in groups
        if "serie-4" in g.get("class").split()
        for c in g.iter(SVG_NS + "circle")
    ]
    assert 0 < len(dots) <= plot.MAX_MARKED
    (training,) = [
        p.get("d")
        for g in groups
        if "serie-0" in g.get("class").split()
        for p in g.iter(SVG_NS + "path")
    ]
    line_points = len(re.findall(r"-?[0-9.]+", training)) // 2
    assert 1000 < line_points <= plot.MAX_LINE_POINTS


def test_one_sided_model_has_one_bound_and_its_colours_follow_the_names():
    timestamps, values = series(3000)
    model = fit(values, DetectorParams(direction="lower", k=1.0))
    svg = plot.render_svg("s", 1, model, timestamps, values)
    root = parse(svg)
    assert legend(root) == [plot.TRAINING, plot.CENTER, plot.LOWER, plot.BEYOND]
    css = b"".join(s.text.encode() for s in root.iter(SVG_NS + "style"))
    # The marked points keep their red whatever the number of bounds before them.
    assert re.search(
        rb"\.color-3[^{]*\{[^}]*" + plot.COLOURS[plot.BEYOND].encode(), css
    )


def test_svg_fetches_nothing_and_renders_the_same_bytes_twice():
    timestamps, values = series(10_000)
    model = fit(values, DetectorParams())
    first = plot.render_svg("s", 2, model, timestamps, values)
    assert first == plot.render_svg("s", 2, model, timestamps, values)
    root = parse(first)
    assert not list(root.iter(SVG_NS + "script"))
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("href") or name == "src":
                assert not value.startswith(("http", "//")), (name, value)
    assert b"kozea.github.io" not in first and b"<?xml-stylesheet" not in first


def test_a_million_points_draw_into_less_than_a_megabyte():
    timestamps, values = series(1_000_000)
    values[::9973] += 200
    model = fit(values, DetectorParams(direction="both"))
    svg = plot.render_svg("big", 1, model, timestamps, values)
    assert len(svg) < 1_000_000
    parse(svg)


def test_equal_timestamps_still_draw():
    model = Model("3sigma", 3.0, "upper", 2.0, 1.0, None, 5.0)
    svg = plot.render_svg(
        "s", 1, model, np.array([5, 5, 5]), np.array([1.0, 2.0, 100.0])
    )
    assert plot.BEYOND in legend(parse(svg))


def test_etag_names_the_model_not_only_the_version():
    a = Model("3sigma", 3.0, "upper", 2.0, 1.0, None, 5.0)
    b = Model("3sigma", 3.0, "upper", 2.5, 1.0, None, 5.5)
    assert plot_etag("s", 1, a) == plot_etag("s", 1, a)
    assert len({plot_etag("s", 1, a), plot_etag("s", 1, b), plot_etag("s", 2, a)}) == 3
    assert re.fullmatch(r"v1-[0-9a-f]{24}", plot_etag("s", 1, a))


def test_far_bounds_are_drawn_at_the_edge_and_named():
    values = np.array([1.0, 2.0, 4.0, 3.0])
    model = fit(values, DetectorParams(k=1e200, direction="both"))
    (upper, upper_true, upper_at), (lower, _, lower_at) = plot.placed_bounds(
        model, values
    )
    assert upper_true == model.upper and upper_at == 4.0 + 2 * 3.0
    assert lower_at == 1.0 - 2 * 3.0
    assert upper == f"{plot.UPPER} ({model.upper:.6g}, off the chart)"
    svg = plot.render_svg("s", 1, model, 1_700_000_000 + np.arange(4), values)
    assert legend(parse(svg))[2:4] == [upper, lower]
    # A bound within reach is drawn where it is.
    near = fit(values, DetectorParams(k=1.0))
    assert plot.placed_bounds(near, values) == [(plot.UPPER, near.upper, near.upper)]


def test_values_near_the_float_range_are_drawn_scaled():
    values = np.array([1e300, -1e300, 5e299, 2e300])
    assert plot.drawing_scale(*values) == 300
    assert plot.drawing_scale(1.0, 250.0) == 0
    model = fit(values, DetectorParams(kind="robust"))
    svg = plot.render_svg("s", 1, model, 1_700_000_000 + np.arange(4), values)
    assert b"e+300" in svg  # the axis labels give the true values
