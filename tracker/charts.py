"""Small, accessible SVG charts drawn inside the report page.

Each chart is one inline <svg role="img"> with a <title> and a <desc> that states every
number, so a screen reader gets the data and the page needs nothing from the network. Text
that reaches the SVG is escaped here. The report also prints the numbers in a table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from tracker.text import shorten

PALETTE = ("#1d6fa5", "#e07b39", "#3a9d5d", "#8e5ea2", "#c44e52", "#6b7b8c")


def bar_chart(title: str, items: Sequence[tuple[str, int]], *, unit: str = "trials",
              width: int = 640) -> str:
    """Horizontal bars, one per (label, value), largest scale at the widest bar."""
    if not items:
        return ""
    chart_id = _id(title)
    row, label_width, top = 26, 230, 8
    height = top * 2 + row * len(items)
    peak = max(value for _, value in items) or 1
    room = width - label_width - 60
    desc = "; ".join(f"{label}: {value} {unit}" for label, value in items)
    parts = [_open(chart_id, title, desc, width, height)]
    for index, (label, value) in enumerate(items):
        y = top + index * row
        bar = round(room * value / peak) if value else 0
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 17}" text-anchor="end" font-size="13" '
            f'fill="#1f2933">{escape(shorten(label, 32))}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{max(bar, 1)}" height="{row - 8}" '
            f'rx="2" fill="{PALETTE[0]}"><title>{escape(label)}: {value}</title></rect>'
            f'<text x="{label_width + bar + 6}" y="{y + 17}" font-size="12" '
            f'fill="#52606d">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(title: str, items: Sequence[tuple[str, int]], *, unit: str = "new trials",
                 width: int = 640, height: int = 220) -> str:
    """Vertical columns over time (e.g. new trials per quarter); labels thinned to fit."""
    if not items:
        return ""
    chart_id = _id(title)
    left, bottom, top = 36, 34, 12
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max(value for _, value in items) or 1
    step = plot_w / len(items)
    every = max(1, round(len(items) / 10))
    desc = "; ".join(f"{label}: {value} {unit}" for label, value in items)
    parts = [_open(chart_id, title, desc, width, height),
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
             f'stroke="#9aa5b1"/>',
             f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11" '
             f'fill="#52606d">{peak}</text>']
    for index, (label, value) in enumerate(items):
        h = round(plot_h * value / peak)
        x = left + index * step
        parts.append(f'<rect x="{x + step * 0.15:.1f}" y="{top + plot_h - h}" '
                     f'width="{max(step * 0.7, 1):.1f}" height="{h}" fill="{PALETTE[2]}">'
                     f'<title>{escape(label)}: {value}</title></rect>')
        if index % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 14}" text-anchor="middle" '
                         f'font-size="10" fill="#52606d">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _open(chart_id: str, title: str, desc: str, width: int, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} '
            f'{height}" width="100%" style="max-width:{width}px;height:auto" '
            f'aria-labelledby="{chart_id}-t {chart_id}-d" font-family="Arial, sans-serif">'
            f'<title id="{chart_id}-t">{escape(title)}</title>'
            f'<desc id="{chart_id}-d">{escape(desc)}</desc>')


def _id(title: str) -> str:
    """An id from the chart's title: unique on a page, and the same on every rendering, so a
    week's page is the same bytes whoever writes it."""
    return "chart-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
