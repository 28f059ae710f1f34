"""The inline SVG plots: valid XML, every mark readable back (label and value), lengths proportional to
the values, hostile labels escaped, the same bytes for the same data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from imagegen.analytics_plots import (
    LABEL_WIDTH,
    VALUE_WIDTH,
    WIDTH,
    Bar,
    Series,
    bar_chart,
    bin_edges,
    histogram,
    nice_step,
    stacked_bar_chart,
)

SVG = "{http://www.w3.org/2000/svg}"


def marks(svg: str) -> list[dict[str, str]]:
    root = ET.fromstring(svg)
    return [rect.attrib for rect in root.iter(f"{SVG}rect") if rect.get("class") == "bar"]


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_bar_chart_lengths_are_proportional_and_the_largest_fills_the_row():
    svg = bar_chart("Bytes per platform", [Bar("instagram", 300, "300 B"), Bar("x", 150, "150 B"),
                                          Bar("web", 0, "0 B")])
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.find(f"{SVG}title").text == "Bytes per platform"
    bars = marks(svg)
    assert [(b["data-label"], float(b["data-value"])) for b in bars] == [("instagram", 300), ("x", 150), ("web", 0)]
    widths = [float(b["width"]) for b in bars]
    assert widths[0] == WIDTH - LABEL_WIDTH - VALUE_WIDTH
    assert widths[1] == pytest.approx(widths[0] / 2, abs=0.1) and widths[2] == 0
    assert {"instagram", "x", "web", "300 B", "150 B", "0 B"} <= set(texts(svg))


def test_hostile_labels_are_escaped_and_read_back_as_written():
    label = '<script>alert("x")</script> & \'quotes\''
    svg = bar_chart(f"title {label}", [Bar(label, 1, f"{label} text")])
    assert "<script>" not in svg
    root = ET.fromstring(svg)  # still well-formed XML
    assert root.get("aria-label") == f"title {label}"
    assert marks(svg)[0]["data-label"] == label
    assert label in texts(svg) and f"{label} text" in texts(svg)


def test_same_data_same_bytes():
    def draw() -> str:
        return (bar_chart("a", [Bar("one", 1.25, "1.25")]) + histogram("b", {"p": [0.3, 1.7, 2.2]}, unit="s")
                + stacked_bar_chart("c", [("g", (1, 2, 3))], [Series("s1", "#000"), Series("s2", "#111"),
                                                               Series("s3", "#222")]))
    assert draw() == draw()


def test_empty_charts_say_why():
    for svg in (bar_chart("t", [], empty="nothing published"), histogram("t", {}, unit="s", empty="nothing published"),
                stacked_bar_chart("t", [], [], empty="nothing published")):
        assert marks(svg) == [] and "nothing published" in texts(svg)


@pytest.mark.parametrize(("span", "step"), [(0.0, 0.1), (2.79, 0.5), (10, 1), (0.07, 0.01), (95, 10), (1000, 100)])
def test_bins_are_nice_and_cover_the_largest_value(span, step):
    assert nice_step(span) == pytest.approx(step)
    edges = bin_edges([span])
    assert edges[0] == 0 and edges[-1] > span and len(edges) <= 12


def test_histogram_counts_every_value_once_in_its_bin_with_heights_proportional():
    svg = histogram("Generation time", {"nvidia": [0.3, 0.35, 1.2, 2.0], "local": [0.1]}, unit="s")
    bars = marks(svg)
    counts = {b["data-label"]: int(b["data-value"]) for b in bars}
    # step 0.2 over 0..2.2: a value on an edge (2.0) counts in the bin above it
    assert counts == {"nvidia 0.2-0.4 s": 2, "nvidia 1.2-1.4 s": 1, "nvidia 2-2.2 s": 1, "local 0-0.2 s": 1}
    heights = {b["data-label"]: float(b["height"]) for b in bars}
    assert heights["nvidia 0.2-0.4 s"] == pytest.approx(2 * heights["nvidia 1.2-1.4 s"], abs=0.1)
    assert heights["local 0-0.2 s"] == pytest.approx(heights["nvidia 2-2.2 s"], abs=0.1)  # one shared scale
    assert "nvidia (n=4)" in texts(svg) and "local (n=1)" in texts(svg)


def test_stacked_bars_split_each_row_into_its_series():
    series = [Series("passed", "#2e7d32"), Series("fixed by an edit", "#f9a825"), Series("failed", "#c62828")]
    svg = stacked_bar_chart("Gates", [("sharpness", (3, 1, 0)), ("resolution", (2, 0, 2))], series)
    bars = {b["data-label"]: b for b in marks(svg)}
    assert set(bars) == {"sharpness passed", "sharpness fixed by an edit", "resolution passed", "resolution failed"}
    assert {label: int(b["data-value"]) for label, b in bars.items()} == {
        "sharpness passed": 3, "sharpness fixed by an edit": 1, "resolution passed": 2, "resolution failed": 2}
    unit = float(bars["sharpness passed"]["width"]) / 3
    assert float(bars["resolution failed"]["width"]) == pytest.approx(2 * unit, abs=0.1)
    # segments sit end to end, in series order
    assert float(bars["sharpness fixed by an edit"]["x"]) == pytest.approx(
        float(bars["sharpness passed"]["x"]) + float(bars["sharpness passed"]["width"]), abs=0.1)
    assert bars["resolution failed"]["fill"] == "#c62828"
    assert {"passed", "fixed by an edit", "failed"} <= set(texts(svg))
