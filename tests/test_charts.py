"""The report's SVG charts: readable on a 360 px phone, accessible, and safe with registry text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from itertools import pairwise

import pytest

from tracker.charts import CHAR, bar_chart, column_chart

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & Co'
LONG = "Immune-mediated necrotizing myopathy with anti-HMGCR antibodies " * 2  # 128 characters
QUARTERS = [(f"{2014 + i // 4}-Q{i % 4 + 1}", i % 5) for i in range(48)]
PHASES = [("Phase 2", 12), ("Phase 3", 6), ("Phase 1", 3), ("Not applicable", 0)]


def parse(svg: str) -> ET.Element:
    """The chart as XML; a chart that is not well-formed fails here."""
    return ET.fromstring(svg)


def view_width(root: ET.Element) -> float:
    return float(root.get("viewBox", "").split()[2])


def texts(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{SVG}text"))


def shown(text: ET.Element) -> str:
    """What a <text> draws: its own characters, not its hover <title>."""
    return (text.text or "") + "".join(child.tail or "" for child in text)


def extent(text: ET.Element) -> tuple[float, float]:
    """(left, right) of a <text>, its width estimated from its character count."""
    x, width = float(text.get("x", "0")), len(shown(text)) * CHAR
    anchor = text.get("text-anchor", "start")
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return left, left + width


ALL_CHARTS = [
    bar_chart("All tracked trials by phase", PHASES),
    bar_chart("Long labels", [(LONG, 40), ("IBM", 1234)]),
    bar_chart("One", [("Dermatomyositis", 1)]),
    column_chart("New trials per quarter", QUARTERS),
    column_chart("One quarter", [("2019-Q3", 4)]),
    column_chart("Sixty quarters", [(f"{2011 + i // 4}-Q{i % 4 + 1}", i) for i in range(60)]),
    column_chart("Months", [(f"2025-{m:02}", m) for m in range(1, 13)]),
]


@pytest.mark.parametrize("svg", ALL_CHARTS)
def test_every_chart_is_drawn_for_a_phone(svg: str) -> None:
    root = parse(svg)
    assert view_width(root) <= 320
    assert "width:100%" in root.get("style", "") and "max-width:480px" in root.get("style", "")
    assert texts(root) and all(float(t.get("font-size", "0")) >= 13 for t in texts(root))


@pytest.mark.parametrize("svg", ALL_CHARTS)
def test_no_text_leaves_the_view_box(svg: str) -> None:
    root = parse(svg)
    for text in texts(root):
        left, right = extent(text)
        assert left >= 0 and right <= view_width(root), shown(text)


@pytest.mark.parametrize("svg", ALL_CHARTS)
def test_every_chart_is_an_image_named_by_its_title_and_desc(svg: str) -> None:
    root = parse(svg)
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert root.get("role") == "img" and title is not None and desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"


def test_the_desc_states_every_label_and_value_in_full() -> None:
    root = parse(bar_chart("Long labels", [(LONG, 40), ("IBM", 7)]))
    desc = root.findtext(f"{SVG}desc")
    assert desc == f"{LONG.strip()}: 40 trials; IBM: 7 trials"
    quarters = parse(column_chart("Per quarter", QUARTERS)).findtext(f"{SVG}desc") or ""
    assert all(f"{label}: {value} new trials" in quarters for label, value in QUARTERS)


def test_each_bar_label_is_on_its_own_line_above_its_bar() -> None:
    root = parse(bar_chart("Phases", PHASES))
    labels = [t for t in texts(root) if shown(t) in dict(PHASES)]
    bars = list(root.iter(f"{SVG}rect"))
    assert [shown(t) for t in labels] == [label for label, _ in PHASES]
    for label, bar in zip(labels, bars, strict=True):
        assert float(label.get("y", "0")) < float(bar.get("y", "0"))  # baseline above the bar
        assert float(label.get("x", "0")) == float(bar.get("x", "0"))  # the full width is free


def test_a_long_label_is_shortened_on_screen_and_whole_in_its_title() -> None:
    root = parse(bar_chart("Long labels", [(LONG, 40)]))
    label = next(t for t in texts(root) if t.find(f"{SVG}title") is not None)
    assert shown(label).endswith("…") and LONG.startswith(shown(label)[:-1])
    assert len(shown(label)) * CHAR <= 320 - float(label.get("x", "0"))
    assert label.findtext(f"{SVG}title") == LONG.strip()


def test_a_short_label_has_no_extra_title() -> None:
    root = parse(bar_chart("Phases", PHASES))
    assert all(t.find(f"{SVG}title") is None for t in texts(root))


def test_bar_widths_are_proportional_to_values_and_a_zero_still_draws() -> None:
    root = parse(bar_chart("Phases", PHASES))
    widths = [float(r.get("width", "0")) for r in root.iter(f"{SVG}rect")]
    assert widths[0] == pytest.approx(2 * widths[1], abs=1)
    assert widths[0] == pytest.approx(4 * widths[2], abs=1)
    assert widths[3] > 0  # "Not applicable: 0" is still a visible mark with its value
    values = [shown(t) for t in texts(root)]
    assert values.count("0") == 1 and "12" in values


def test_each_value_is_drawn_just_after_its_bar() -> None:
    root = parse(bar_chart("Phases", PHASES))
    bars = list(root.iter(f"{SVG}rect"))
    values = [t for t in texts(root) if shown(t).isdigit()]
    for bar, value in zip(bars, values, strict=True):
        end = float(bar.get("x", "0")) + float(bar.get("width", "0"))
        assert 0 < float(value.get("x", "0")) - end <= 6


def test_hostile_labels_and_titles_are_escaped() -> None:
    for svg in (bar_chart(HOSTILE, [(HOSTILE, 3)]),
                column_chart(HOSTILE, [(HOSTILE, 3), ("2020-Q1\x00\x1b", 1)])):
        root = parse(svg)
        assert not [e for e in root.iter() if e.tag.endswith("script")]
        assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp; Co" in svg
        assert root.findtext(f"{SVG}title") == HOSTILE


def test_ids_are_stable_and_differ_between_titles() -> None:
    first = parse(bar_chart("Trials by phase", PHASES)).get("aria-labelledby")
    again = parse(bar_chart("Trials by phase", PHASES)).get("aria-labelledby")
    other = parse(bar_chart("Trials by country", PHASES)).get("aria-labelledby")
    assert first == again == "chart-trials-by-phase-t chart-trials-by-phase-d"
    assert other != first


def test_no_items_draw_nothing() -> None:
    assert bar_chart("Nothing", []) == ""
    assert column_chart("Nothing", []) == ""


@pytest.mark.parametrize("count", [1, 5, 48, 60])
def test_column_labels_never_overlap(count: int) -> None:
    root = parse(column_chart("Per quarter", QUARTERS[:count] if count <= 48 else
                              [(f"{2011 + i // 4}-Q{i % 4 + 1}", i) for i in range(count)]))
    axis = [t for t in texts(root) if t.get("text-anchor") == "middle"]
    assert axis
    spans = sorted(extent(t) for t in axis)
    assert all(end < start for (_, end), (start, _) in pairwise(spans))


def test_quarters_are_labelled_by_year_at_each_first_quarter() -> None:
    root = parse(column_chart("Per quarter", QUARTERS))
    labels = [shown(t) for t in texts(root) if t.get("text-anchor") == "middle"]
    assert labels and all(label.isdigit() and len(label) == 4 for label in labels)
    assert labels == sorted(labels) and labels[0] == "2014"


def test_a_series_without_a_first_quarter_shows_its_own_labels() -> None:
    root = parse(column_chart("Per quarter", [("2019-Q3", 4), ("2019-Q4", 2)]))
    labels = [shown(t) for t in texts(root) if t.get("text-anchor") == "middle"]
    assert labels == ["2019-Q3", "2019-Q4"]


def test_the_y_axis_shows_the_peak_and_each_column_its_value() -> None:
    root = parse(column_chart("Per quarter", QUARTERS))
    assert "4" in [shown(t) for t in texts(root) if t.get("text-anchor") == "end"]
    columns = list(root.iter(f"{SVG}rect"))
    assert [c.findtext(f"{SVG}title") for c in columns] == [f"{k}: {v}" for k, v in QUARTERS]
    heights = [float(c.get("height", "0")) for c in columns]
    assert heights[4] == pytest.approx(4 * heights[1], abs=0.2) and heights[0] == 0


def test_a_single_column_is_readable() -> None:
    root = parse(column_chart("One quarter", [("2019-Q3", 4)]))
    (column,) = root.iter(f"{SVG}rect")
    assert float(column.get("height", "0")) > 100
    assert float(column.get("width", "0")) <= 40  # a column, not a block filling the chart
