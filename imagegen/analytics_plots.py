"""Plots as inline SVG, drawn without any plotting library: horizontal bars, stacked bars, histograms.

The output is deterministic (same data, same bytes), every label is escaped, and every mark is a
`<rect class="bar">` carrying `data-label` and `data-value` (and a `<title>` a browser shows on hover), so
a test (or a script) can read the numbers back from the picture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
LABEL_WIDTH = 190  # the left column: category labels
VALUE_WIDTH = 150  # the right column: the value as text
ROW_HEIGHT = 26
TOP = 40  # the title (and the legend of stacked bars)
BAR_COLOUR = "#3949ab"
FONT = 'font-family="system-ui, sans-serif"'


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the value as a person reads it: "1.5 MB (12 files)"


@dataclass(frozen=True)
class Series:
    name: str
    colour: str


def _n(value: float) -> str:
    """A coordinate: one decimal, no trailing zeros (stable across platforms)."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _value(value: float) -> str:
    return f"{value:.6g}"


def _svg(title: str, height: float, body: list[str]) -> str:
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{WIDTH}" height="{_n(height)}" '
        f'viewBox="0 0 {WIDTH} {_n(height)}" aria-label={_attr(title)}>',
        f"<title>{escape(title)}</title>",
        f'<text class="plot-title" x="0" y="18" {FONT} font-size="14" font-weight="600">{escape(title)}</text>',
        *body,
        "</svg>",
    ])


def _attr(text: str) -> str:
    return '"' + escape(text, quote=True) + '"'


def _rect(x: float, y: float, width: float, height: float, colour: str, label: str, value: float) -> str:
    return (f'<rect class="bar" x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(height)}" fill="{colour}" '
            f'data-label={_attr(label)} data-value="{_value(value)}"><title>{escape(label)}: {_value(value)}'
            "</title></rect>")


def _text(x: float, y: float, text: str, anchor: str = "start", css: str = "label") -> str:
    return (f'<text class="{css}" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" {FONT} font-size="12">'
            f"{escape(text)}</text>")


def _empty(title: str, why: str) -> str:
    return _svg(title, TOP + ROW_HEIGHT, [_text(0, TOP + 14, why, css="empty")])


def bar_chart(title: str, bars: Sequence[Bar], *, empty: str = "nothing to show",
              colour: str = BAR_COLOUR) -> str:
    """One horizontal bar per item, lengths proportional to the values (the largest fills the row)."""
    if not bars:
        return _empty(title, empty)
    top = max((bar.value for bar in bars), default=0.0)
    area = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    body = []
    for i, bar in enumerate(bars):
        y = TOP + i * ROW_HEIGHT
        length = area * bar.value / top if top > 0 else 0.0
        body += [_text(LABEL_WIDTH - 8, y + 15, bar.label, anchor="end"),
                 _rect(LABEL_WIDTH, y + 3, length, ROW_HEIGHT - 8, colour, bar.label, bar.value),
                 _text(LABEL_WIDTH + length + 6, y + 15, bar.text, css="value")]
    return _svg(title, TOP + len(bars) * ROW_HEIGHT + 8, body)


def stacked_bar_chart(title: str, rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[Series], *,
                      empty: str = "nothing to show") -> str:
    """One horizontal bar per row, cut into the series' segments; the longest row fills the width. A
    legend names the series; each segment wide enough shows its count inside."""
    if not rows:
        return _empty(title, empty)
    top = max(sum(values) for _, values in rows)
    area = WIDTH - LABEL_WIDTH - 16
    legend, x = [], float(LABEL_WIDTH)
    for item in series:
        legend += [f'<rect class="legend" x="{_n(x)}" y="24" width="10" height="10" fill="{item.colour}"/>',
                   _text(x + 14, 33, item.name, css="legend")]
        x += 24 + 7 * len(item.name)
    body = legend
    for i, (label, values) in enumerate(rows):
        y = TOP + 4 + i * ROW_HEIGHT
        body.append(_text(LABEL_WIDTH - 8, y + 15, label, anchor="end"))
        x = float(LABEL_WIDTH)
        for item, value in zip(series, values, strict=True):
            width = area * value / top if top > 0 else 0.0
            if value:
                body.append(_rect(x, y + 3, width, ROW_HEIGHT - 8, item.colour, f"{label} {item.name}", value))
                if width >= 18:
                    body.append(_text(x + width / 2, y + 15, _value(value), anchor="middle", css="count"))
            x += width
    return _svg(title, TOP + 4 + len(rows) * ROW_HEIGHT + 8, body)


def nice_step(span: float, bins: int = 10) -> float:
    """A bin width of 1, 2 or 5 times a power of ten that covers `span` in at most `bins` bins."""
    if span <= 0:
        return 0.1
    raw = span / bins
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power * bins >= span)


def bin_of(value: float, step: float) -> int:
    """The bin `value` falls in; a value on an edge (0.3 with a step of 0.1, whatever the float) goes above it."""
    return max(0, math.floor(value / step + 1e-9))


def bin_edges(values: Sequence[float], bins: int = 10) -> list[float]:
    """Edges from 0 to the first multiple of a nice step above the largest value."""
    step = nice_step(max(values, default=0.0), bins)
    count = bin_of(max(values, default=0.0), step) + 1
    return [round(i * step, 10) for i in range(count + 1)]


def histogram(title: str, groups: dict[str, Sequence[float]], *, unit: str, bins: int = 10,
              empty: str = "nothing to show") -> str:
    """One panel per group (in the given order) over the same bins, so the panels compare at a glance.
    A value on an edge counts in the bin above it; bar heights share one scale."""
    values = [v for group in groups.values() for v in group]
    if not values:
        return _empty(title, empty)
    edges = bin_edges(values, bins)
    step = edges[1] - edges[0]
    counts = {name: [0] * (len(edges) - 1) for name in groups}
    for name, group in groups.items():
        for v in group:
            counts[name][min(bin_of(v, step), len(edges) - 2)] += 1
    tallest = max(max(c) for c in counts.values())
    panel, left, area = 120, 60.0, WIDTH - 80.0
    column = area / (len(edges) - 1)
    body = []
    for p, (name, group_counts) in enumerate(counts.items()):
        base = TOP + p * (panel + 34) + panel
        n = len(groups[name])
        body += [_text(0, base - panel + 12, f"{name} (n={n})", css="panel"),
                 f'<line x1="{_n(left)}" y1="{_n(base)}" x2="{_n(left + area)}" y2="{_n(base)}" stroke="#888"/>']
        for i, count in enumerate(group_counts):
            label = f"{name} {edges[i]:g}-{edges[i + 1]:g} {unit}"
            height = (panel - 24) * count / tallest
            x = left + i * column
            if count:
                body += [_rect(x + 1, base - height, column - 2, height, BAR_COLOUR, label, count),
                         _text(x + column / 2, base - height - 3, str(count), anchor="middle", css="count")]
        body += [_text(left + i * column, base + 14, f"{edges[i]:g}", anchor="middle", css="tick")
                 for i in range(len(edges))]
    height = TOP + len(counts) * (panel + 34)
    body.append(_text(left + area / 2, height - 4, unit, anchor="middle", css="axis"))
    return _svg(title, height + 4, body)
