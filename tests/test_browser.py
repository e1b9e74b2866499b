"""The browser harness itself (tests/browser.py), on small pages written for each test."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests import browser
from tests.browser import PageReport, open_page

pytestmark = pytest.mark.slow  # starts a browser

CLEAN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Weekly report</title>
<style>body { font-family: sans-serif; margin: 1rem } .tall { height: 1500px }</style>
</head><body>
<h1>Myositis trials this week</h1>
<svg width="200" height="60" viewBox="0 0 200 60" role="img" aria-label="bars">
  <rect x="0" y="10" width="120" height="20" fill="#2a7"/>
  <rect x="0" y="35" width="80" height="20" fill="#27a"/>
</svg>
<img alt="dot" src="data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7">
<div class="tall">Recruiting: 3</div>
<script>document.querySelector("h1").dataset.ready = "1"; console.log("ready");</script>
</body></html>
"""


def page(tmp_path: Path, body: str, title: str = "t") -> Path:
    path = tmp_path / "page.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
                    f"</head><body><p>hello</p>{body}</body></html>")
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def load(tmp_path: Path, path: Path) -> PageReport:
    return open_page(path, tmp_path / "shots" / "page.png")


def test_a_clean_self_contained_page_is_clean_and_screenshotted(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(CLEAN)
    report = open_page(path, tmp_path / "shots" / "report.png")

    assert report.problems() == []
    assert report.network_requests == []
    assert report.requests == [path.resolve().as_uri()]  # the page itself, not the data: image
    assert report.page_errors == []
    assert report.title == "Weekly report"
    assert [(m.level, m.text) for m in report.console] == [("log", "ready")]

    assert report.screenshot == tmp_path / "shots" / "report.png"
    width, height = png_size(report.screenshot)
    assert width == browser.DESKTOP[0]
    assert height >= 1500  # the whole page, not just the window
    assert report.screenshot.stat().st_size > 1000

    assert report.phone_screenshot == tmp_path / "shots" / "report-phone.png"
    phone_width, phone_height = png_size(report.phone_screenshot)
    assert phone_width == browser.PHONE[0]
    assert phone_height >= 1500
    assert report.phone_page_width == browser.PHONE[0]  # nothing overflows sideways


def test_console_errors_are_reported_with_their_level(tmp_path: Path) -> None:
    report = load(tmp_path, page(tmp_path, '<script>console.error("x"); console.warn("w");'
                                           'console.info("i")</script>'))
    assert [(m.level, m.text) for m in report.console] == [
        ("error", "x"), ("warning", "w"), ("info", "i")]
    assert [m.text for m in report.console_errors] == ["x"]
    assert report.console_errors[0].url == report.url
    assert report.problems() == [f"console.error: x ({report.url}:0)"]
    assert report.network_requests == []


@pytest.mark.parametrize("markup", [
    '<img alt="" src="http://127.0.0.1:9/x.png">',
    '<link rel="stylesheet" href="https://fonts.example.org/x.css">',
    '<script src="https://cdn.example.org/chart.js"></script>',
    '<script>fetch("https://api.example.org/data").catch(() => {})</script>',
    '<img alt="" src="logo.png">',  # a file beside the page: not self-contained either
])
def test_every_request_beyond_the_page_is_reported(tmp_path: Path, markup: str) -> None:
    report = load(tmp_path, page(tmp_path, markup))
    assert len(report.network_requests) == 1
    (url,) = report.network_requests
    assert url.endswith(("x.png", "x.css", "chart.js", "data", "logo.png"))
    assert f"request: {url}" in report.problems()
    # It was stopped in the browser (no traffic), which the page sees as a failed load.
    assert any(m.url == url for m in report.console_errors)


def test_a_websocket_is_reported(tmp_path: Path) -> None:
    report = load(tmp_path, page(tmp_path, '<script>new WebSocket("ws://127.0.0.1:9/live")'
                                           '</script>'))
    assert report.network_requests == ["ws://127.0.0.1:9/live"]


def test_uncaught_exceptions_are_reported(tmp_path: Path) -> None:
    report = load(tmp_path, page(tmp_path, '<script>throw new TypeError("boom")</script>'
                                           '<script>setTimeout(() => null.x, 0)</script>'))
    assert len(report.page_errors) == 2
    assert report.page_errors[0] == "TypeError: boom"
    assert report.page_errors[1].startswith("TypeError")
    assert "uncaught: TypeError: boom" in report.problems()
    assert report.network_requests == []


def test_a_page_too_wide_for_a_phone_shows_in_its_width(tmp_path: Path) -> None:
    report = load(tmp_path, page(tmp_path, '<table><tr><td style="min-width: 900px">wide'
                                           '</td></tr></table>'))
    assert report.problems() == []
    assert report.phone_page_width > browser.PHONE[0]


def test_without_chromium_ci_fails_and_a_developer_skips(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-chromium is missing"):
        browser.require_chromium(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-chromium is missing"):
        browser.require_chromium(missing)


def test_at_the_phones_width_wide_elements_and_small_chart_text_are_measured(
        tmp_path: Path) -> None:
    boxed = ('<div style="overflow-x: auto"><table id="wide"><tr><td style="min-width: 900px">'
             'wide</td></tr></table></div>')
    shrunk = ('<svg viewBox="0 0 640 100" style="width: 100%"><text x="0" y="20" '
              'font-size="13">label</text></svg>')
    report = load(tmp_path, page(tmp_path, boxed + shrunk))

    assert report.phone_page_width == browser.PHONE[0]  # the box scrolls, not the page...
    assert any(w.startswith("table#wide ") for w in report.phone_too_wide)  # ...but it is seen
    assert report.phone_smallest_chart_text is not None
    assert 5 < report.phone_smallest_chart_text < 8  # 13 units scaled to about 340/640


def test_a_page_that_fits_has_nothing_too_wide_and_unscaled_chart_text(tmp_path: Path) -> None:
    report = load(tmp_path, page(tmp_path, '<svg viewBox="0 0 300 40" width="300"><text x="0" '
                                           'y="20" font-size="14">ok</text></svg>'))
    assert report.phone_too_wide == []
    assert report.phone_smallest_chart_text == pytest.approx(14)
