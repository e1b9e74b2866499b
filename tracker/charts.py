"""Small, accessible SVG charts drawn inside the report page, readable on a phone.

Each chart is one inline <svg role="img"> with a <title> and a <desc> that states every label
and number in full, so a screen reader gets the data and the page needs nothing from the
network. Every piece of text that reaches the SVG is put on one line and escaped here.

The viewBox is `WIDTH` (320) units wide and the SVG is shown at 100% of its column, at most
480 px: on a 360 px phone (16 px page padding) one unit is at least one CSS pixel, so text
drawn at `FONT` (13) units is never smaller than 13 px. Text widths are estimated from the
character count (`CHAR`), labels are shortened to fit, and a shortened label keeps its full
text in a child <title>.

The report puts each chart's numbers in a collapsed <details> table next to the chart; the
template does that, not this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from itertools import pairwise

from tracker.text import one_line, shorten

PALETTE = ("#1d6fa5", "#e07b39", "#3a9d5d", "#8e5ea2", "#c44e52", "#6b7b8c")
WIDTH = 320  # viewBox units; at most the CSS width on a 360 px phone
FONT = 13  # every text's font-size, in viewBox units
CHAR = FONT * 0.6  # Arial averages about 0.56 em a character; 0.6 leaves room for capitals
PAD = 2  # keeps text and bars off the viewBox edge
MAX_LABEL = int((WIDTH - 2 * PAD) / CHAR)  # characters of a label that fit on one line (40)
QUARTER = re.compile(r"(\d{4})-Q([1-4])")
INK, MUTED, RULE = "#1f2933", "#52606d", "#9aa5b1"


def bar_chart(title: str, items: Sequence[tuple[str, int]], *, unit: str = "trials") -> str:
    """Horizontal bars, one per (label, value): the label on its own line above its bar, the
    value just after the bar's end. The largest value gets the widest bar, with room left for
    its digits so no number leaves the viewBox; a zero still draws a 1-unit bar."""
    if not items:
        return ""
    row, label_line, bar_top, bar_h = 42, 14, 20, 14
    peak = max(value for _, value in items)
    room = WIDTH - 2 * PAD - 4 - len(str(peak)) * CHAR  # the widest bar plus its value fit
    height = 4 + row * len(items)
    parts = [_open(title, _desc(items, unit), height)]
    for index, (label, value) in enumerate(items):
        y = 4 + index * row
        bar = round(room * value / peak) if peak else 0
        parts.append(
            _label(PAD, y + label_line, label)
            + f'<rect x="{PAD}" y="{y + bar_top}" width="{max(bar, 1)}" height="{bar_h}" '
            f'rx="2" fill="{PALETTE[0]}"><title>{_text(label)}: {value}</title></rect>'
            f'<text x="{PAD + max(bar, 1) + 4}" y="{y + bar_top + bar_h - 3}" '
            f'font-size="{FONT}" fill="{MUTED}">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(title: str, items: Sequence[tuple[str, int]], *,
                 unit: str = "new trials") -> str:
    """Vertical columns over time (e.g. new trials per quarter), the peak marked on the y-axis.

    x-axis labels are thinned to an even stride so none overlaps another or leaves the
    viewBox; for quarters ("2019-Q3") only each year's first quarter is labelled, as "2019".
    Each column keeps a <title> "label: value"."""
    if not items:
        return ""
    height, top, bottom = 180, 12, 26
    peak = max(value for _, value in items)
    left = PAD + len(str(peak)) * CHAR + 6
    plot_w, plot_h = WIDTH - PAD - left, height - top - bottom
    base = top + plot_h
    step = plot_w / len(items)
    column = min(max(step * 0.7, 1), 40)  # a lone column stays a column, not a block
    parts = [_open(title, _desc(items, unit), height),
             f'<line x1="{left:.1f}" y1="{top}" x2="{WIDTH - PAD}" y2="{top}" stroke="#e4e7eb"/>',
             f'<line x1="{left:.1f}" y1="{base}" x2="{WIDTH - PAD}" y2="{base}" '
             f'stroke="{RULE}"/>',
             f'<text x="{left - 4:.1f}" y="{top + 4.5}" text-anchor="end" font-size="{FONT}" '
             f'fill="{MUTED}">{peak}</text>']
    for index, (label, value) in enumerate(items):
        h = plot_h * value / peak if peak else 0
        x = left + index * step + (step - column) / 2
        parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" '
                     f'width="{column:.1f}" height="{h:.1f}" fill="{PALETTE[2]}">'
                     f'<title>{_text(label)}: {value}</title></rect>')
    for x, text in _axis_labels([label for label, _ in items], left, step):
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" '
                     f'font-size="{FONT}" fill="{MUTED}">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axis_labels(labels: list[str], left: float, step: float) -> list[tuple[float, str]]:
    """(centre x, text) of the x-axis labels to draw: the candidates (each year's first quarter
    as the year, or every label when there is none) at the smallest even stride whose labels
    are at least one character apart, each centre moved inside the viewBox if needed."""
    quarters = [QUARTER.fullmatch(one_line(label)) for label in labels]
    candidates = [(index, match.group(1)) for index, match in enumerate(quarters)
                  if match and match.group(2) == "1"]
    if not candidates:
        candidates = [(index, shorten(label, MAX_LABEL)) for index, label in enumerate(labels)]
    placed: list[tuple[float, str]] = []
    for stride in range(1, len(candidates) + 1):
        placed = [(_inside(left + (index + 0.5) * step, _width(text)), text)
                  for index, text in candidates[::stride]]
        if all(x2 - _width(t2) / 2 - (x1 + _width(t1) / 2) >= CHAR
               for (x1, t1), (x2, t2) in pairwise(placed)):
            break
    return placed


def _inside(centre: float, width: float) -> float:
    """`centre` moved just enough that a text `width` wide stays inside the viewBox."""
    return min(max(centre, PAD + width / 2), WIDTH - PAD - width / 2)


def _width(text: str) -> float:
    """Estimated width of `text` at `FONT`, in viewBox units."""
    return len(text) * CHAR


def _label(x: float, y: float, label: str) -> str:
    """A label's <text>, shortened to fit the width; a shortened one carries the full text in
    a child <title>, shown on hover."""
    full, shown = _text(label), escape(shorten(label, MAX_LABEL))
    hover = f"<title>{full}</title>" if shown != full else ""
    return f'<text x="{x}" y="{y}" font-size="{FONT}" fill="{INK}">{hover}{shown}</text>'


def _text(value: str) -> str:
    """Untrusted text made safe for the SVG: one line, no control characters, escaped."""
    return escape(one_line(value))


def _desc(items: Sequence[tuple[str, int]], unit: str) -> str:
    return "; ".join(f"{one_line(label)}: {value} {unit}" for label, value in items)


def _open(title: str, desc: str, height: int) -> str:
    chart_id = _id(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} '
            f'{height}" style="width:100%;max-width:480px;height:auto" '
            f'aria-labelledby="{chart_id}-t {chart_id}-d" font-family="Arial, sans-serif">'
            f'<title id="{chart_id}-t">{_text(title)}</title>'
            f'<desc id="{chart_id}-d">{escape(desc)}</desc>')


def _id(title: str) -> str:
    """An id from the chart's title: unique on a page, and the same on every rendering, so a
    week's page is the same bytes whoever writes it."""
    return "chart-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
