"""Open a local HTML page in a real headless browser and report what a person's browser would.

Debian's Chromium (`/usr/bin/chromium`, installed by `.ci/run`) is driven by Playwright, whose
Python wheel ships its own driver: `playwright install` is never needed (nor possible here).

    report = open_page(tmp_path / "report.html", tmp_path / "report.png")
    assert report.problems() == []

`open_page` loads the page at a desktop width, waits for it to settle, takes a full-page PNG
screenshot, then narrows the window to a phone's width and takes a second one beside the first
(`report-phone.png`). It records every console message with its level, every uncaught
exception, and every request the page made. No request leaves the browser: anything but the
page's own file is aborted (and recorded), and host names do not resolve, so a page that is
not self-contained fails its test quickly and sends nothing anywhere.

Without Chromium or Playwright a test calling `open_page` fails under CI (CI set) and is
skipped elsewhere, with the reason.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")

# Started with these besides Playwright's own (--headless, --no-sandbox, a fresh temporary
# --user-data-dir). Without the background-networking ones Chromium reaches for Google's hosts.
CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)

DESKTOP = (1280, 800)
PHONE = (360, 780)  # the narrowest phones still common

# Not network: the data is in the page (data:, blob:) or there is none (about:blank, srcdoc).
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})

# At the phone's width: every element that sticks out of the window sideways, and the smallest
# text drawn in an SVG chart, in CSS pixels as shown (font size times the chart's scale).
PHONE_CHECKS = """() => {
    const width = document.documentElement.clientWidth;
    const wide = [];
    for (const el of document.body.querySelectorAll("*")) {
        const box = el.getBoundingClientRect();
        if (box.width > 0 && (box.right > width + 0.5 || box.left < -0.5)) {
            wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
                      + (el.className && el.className.baseVal === undefined && el.className
                         ? "." + el.className : "") + " " + Math.round(box.width) + "px");
        }
    }
    let smallest = null;
    for (const text of document.querySelectorAll("svg text")) {
        const matrix = text.getScreenCTM();
        if (!matrix || text.getBoundingClientRect().width === 0) continue;
        const px = parseFloat(getComputedStyle(text).fontSize) * Math.hypot(matrix.a, matrix.b);
        smallest = smallest === null ? px : Math.min(smallest, px);
    }
    return {wide: wide, smallest: smallest};
}"""

SETTLE = """() => new Promise(resolve =>
    requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(resolve, 0))))"""


@dataclass(frozen=True)
class ConsoleMessage:
    level: str  # Playwright's type: "log", "debug", "info", "error", "warning", ...
    text: str
    url: str = ""
    line: int = 0

    def __str__(self) -> str:
        where = f" ({self.url}:{self.line})" if self.url else ""
        return f"console.{self.level}: {self.text}{where}"


@dataclass
class PageReport:
    url: str
    title: str = ""
    console: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL requested, the page's too
    screenshot: Path | None = None
    phone_screenshot: Path | None = None
    phone_page_width: int = 0  # the document's scroll width at the phone's width
    phone_too_wide: list[str] = field(default_factory=list)  # elements wider than the phone
    phone_smallest_chart_text: float | None = None  # px, None without chart text

    @property
    def network_requests(self) -> list[str]:
        """Requests beyond the page itself, except data: and blob: URLs. A self-contained page
        makes none: another local file counts too, since it would not travel with the page."""
        return [u for u in self.requests
                if u != self.url and urlsplit(u).scheme not in LOCAL_SCHEMES]

    @property
    def console_errors(self) -> list[ConsoleMessage]:
        return [m for m in self.console if m.level == "error"]

    def problems(self) -> list[str]:
        """Everything that makes the page not clean, one line each; [] for a clean page."""
        return ([str(m) for m in self.console_errors]
                + [f"uncaught: {e}" for e in self.page_errors]
                + [f"request: {u}" for u in self.network_requests])


def require_chromium(executable: Path | None = None) -> Path:
    """The browser to drive; without it (or without Playwright) fail under CI, skip elsewhere."""
    executable = executable or CHROMIUM
    missing = []
    if not executable.exists():
        missing.append(f"{executable} is missing (apt-get install chromium; .ci/run does)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed (pip install -e '.[test]')")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a browser: {reason}")
        pytest.skip(reason)
    return executable


def open_page(path: Path, screenshot: Path, *, phone: bool = True,
              timeout_s: float = 30) -> PageReport:
    """Load `path` in headless Chromium; write a full-page PNG to `screenshot` (and, with
    `phone`, one at 360 px wide to `<name>-phone.png` beside it) and report what happened."""
    executable = require_chromium()
    from playwright.sync_api import Request, WebSocket, sync_playwright

    url = path.resolve().as_uri()
    report = PageReport(url=url)

    def on_request(request: Request) -> None:
        report.requests.append(request.url)

    def on_websocket(socket: WebSocket) -> None:
        report.requests.append(socket.url)

    timeout_ms = timeout_s * 1000
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-") as home:
        browser = pw.chromium.launch(executable_path=str(executable), args=list(CHROMIUM_FLAGS),
                                     timeout=timeout_ms, env={**os.environ, "HOME": home})
        try:
            context = browser.new_context(
                viewport={"width": DESKTOP[0], "height": DESKTOP[1]}, device_scale_factor=1,
                service_workers="block")
            # Only the page's own file may load; every other request is recorded, then aborted.
            context.route("**/*", lambda route: route.continue_() if route.request.url == url
                          else route.abort())
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            page.on("request", on_request)
            page.on("websocket", on_websocket)
            page.on("console", lambda m: report.console.append(ConsoleMessage(
                level=m.type, text=m.text, url=m.location.get("url", ""),
                line=m.location.get("lineNumber", 0))))
            page.on("pageerror", lambda e: report.page_errors.append(
                f"{e.name}: {e.message}" if e.name else e.message))

            page.goto(url, wait_until="load")
            page.evaluate(SETTLE)
            report.title = page.title()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=screenshot, full_page=True, animations="disabled")
            report.screenshot = screenshot
            if phone:
                page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
                page.evaluate(SETTLE)
                report.phone_page_width = page.evaluate(
                    "() => document.documentElement.scrollWidth")
                checks = page.evaluate(PHONE_CHECKS)
                report.phone_too_wide = checks["wide"]
                report.phone_smallest_chart_text = checks["smallest"]
                report.phone_screenshot = screenshot.with_name(
                    f"{screenshot.stem}-phone{screenshot.suffix}")
                page.screenshot(path=report.phone_screenshot, full_page=True,
                                animations="disabled")
            page.evaluate(SETTLE)
            context.close()
        finally:
            browser.close()
    return report
