"""The weekly report, rendered from a real snapshot with known changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from tests.conftest import updated
from tests.fakeapi import Registry
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.errors import TrackerError
from tracker.report import BadWeek, Week, by_year, collect, markdown_escape, stamp, write
from tracker.store import Store
from tracker.sync import sync
from tracker.tags import load_vocabulary

VOCABULARY = load_vocabulary()
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def week_of_changes(settings: Settings, store: Store, client: CtGovClient,
                    registry: Registry) -> Week:
    """Baseline, then one sync in which a trial starts recruiting in Lyon under a hostile
    title, another is terminated, and a new IBM trial appears."""
    newcomer = registry.studies.pop("NCT02803307")
    sync(settings, store, client)
    imnm = updated(registry.studies["NCT07725679"])
    imnm["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    imnm["protocolSection"]["identificationModule"]["briefTitle"] = \
        "Efgartigimod <script>alert(1)</script> & *IMNM* [x](http://evil)"
    imnm["protocolSection"]["contactsLocationsModule"]["locations"] = [
        {"facility": "Hôpital Édouard Herriot", "status": "RECRUITING", "city": "Lyon",
         "country": "France", "geoPoint": {"lat": 45.74846, "lon": 4.84671}}]
    dm = updated(registry.studies["NCT04078230"])
    dm["protocolSection"]["statusModule"]["overallStatus"] = "TERMINATED"
    dm["protocolSection"]["statusModule"]["whyStopped"] = "Sponsor decision"
    registry.put(imnm, dm, newcomer)
    registry.data_timestamp = "2026-11-21T09:00:05"
    sync(settings, store, client)
    year, number, _ = datetime.now(UTC).isocalendar()
    return Week(year, number)  # the week the changes were recorded in


def test_weeks_parse_and_default_to_the_last_complete_one() -> None:
    assert Week.parse("2026-W47").start == datetime(2026, 11, 16, tzinfo=UTC)
    assert Week.parse("2026-W47").end == datetime(2026, 11, 23, tzinfo=UTC)
    assert Week.last_complete(NOW.date()).name == "2026-W47"  # on Monday 23 November
    for bad in ("2026-47", "2026-W54", "last week"):
        with pytest.raises(BadWeek):
            Week.parse(bad)


def test_the_data_counts_what_happened_in_the_week(store: Store,
                                                   week_of_changes: Week) -> None:
    data = collect(store, VOCABULARY, week_of_changes, NOW)

    assert data["headline"] == {"tracked": 7, "recruiting": 1, "new": 1, "changed": 2,
                                "results_posted": 0, "stopped": 1}
    assert [t["nct_id"] for t in data["new_trials"]] == ["NCT02803307"]
    assert [c["plain"] for c in data["changes"]["status"]] == [
        "Now recruiting", "Stopped early: sponsor decision"]
    assert data["changes"]["site_added"][0]["plain"] == "A new site is recruiting in Lyon, France"
    assert data["recruiting_by_country"] == [["France", 1]] or \
        data["recruiting_by_country"] == [("France", 1)]
    assert ("Immune-mediated necrotizing myopathy", 1) in data["recruiting_by_subtype"]
    assert data["freshness"]["data_timestamp"] == "2026-11-21T09:00:05"
    assert all(c["url"].startswith("https://clinicaltrials.gov/study/NCT")
               for items in data["changes"].values() for c in items)


def test_a_week_without_changes_still_reports_the_landscape(store: Store,
                                                            week_of_changes: Week) -> None:
    quiet = Week.parse("2020-W10")
    data = collect(store, VOCABULARY, quiet, NOW)

    assert data["headline"]["new"] == data["headline"]["changed"] == 0
    assert data["changes"] == {}
    assert data["by_phase"] and data["by_therapy"] and data["new_per_quarter"]


def test_the_written_files_escape_registry_text_and_link_only_to_the_registry(
        store: Store, week_of_changes: Week, tmp_path: Path) -> None:
    paths = write(store, VOCABULARY, week_of_changes, tmp_path, NOW,
                  "https://trials.example.org/reports")
    page = (tmp_path / f"{week_of_changes.name}.html").read_text()
    markdown = (tmp_path / f"{week_of_changes.name}.md").read_text()

    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Stopped early: sponsor decision" in page
    assert 'role="img"' in page and "<title id=" in page and "<desc id=" in page
    hrefs = [part.split('"')[0] for part in page.split('href="')[1:]]
    assert hrefs and all(h.startswith("https://clinicaltrials.gov/study/NCT") for h in hrefs)
    assert "http" not in page.split("<main>")[0].replace("http-equiv", "")  # no external CSS
    assert "<script>" not in markdown and "\\[x\\]\\(http://evil\\)" in markdown
    assert "\\*IMNM\\*" in markdown
    assert json.loads((tmp_path / f"{week_of_changes.name}.json").read_text())["week"] == \
        week_of_changes.name
    assert len(paths) == 5 + len(VOCABULARY.subtypes)


def test_the_index_lists_every_week_written_and_the_feeds_are_atom(
        store: Store, week_of_changes: Week, tmp_path: Path) -> None:
    write(store, VOCABULARY, Week.parse("2020-W10"), tmp_path, NOW, "https://x.org/r")
    write(store, VOCABULARY, week_of_changes, tmp_path, NOW, "https://x.org/r")

    index = (tmp_path / "index.html").read_text()
    assert index.index(week_of_changes.name) < index.index("2020-W10")  # newest first
    everything = feedparser.parse((tmp_path / "feed.atom").read_bytes())
    assert everything.bozo == 0 and everything.version == "atom10"
    assert len(everything.entries) == 5  # new, 2 x status, site added, title
    imnm = feedparser.parse((tmp_path / "feeds" / "imnm.atom").read_bytes())
    assert [e.link for e in imnm.entries] == ["https://clinicaltrials.gov/study/NCT07725679"] * 3
    assert feedparser.parse((tmp_path / "feeds" / "cam.atom").read_bytes()).entries == []


def test_the_markdown_carries_the_same_sections_as_the_page(
        store: Store, week_of_changes: Week, tmp_path: Path) -> None:
    write(store, VOCABULARY, week_of_changes, tmp_path, NOW, "https://x.org/r")
    markdown = (tmp_path / f"{week_of_changes.name}.md").read_text()

    for heading in ("## New trials", "## What changed", "### Recruitment and status",
                    "### New sites", "## Recruiting now", "## The landscape",
                    "## Results overdue"):
        assert heading in markdown
    assert "By country (a trial can recruit in several): France 1." in markdown
    assert "| Subtype | Completed |" in markdown or "| Subtype |" in markdown
    assert "| Immune-mediated necrotizing myopathy |" in markdown
    assert "| Phase | Trials |" in markdown and "| Treatment class | Trials |" in markdown
    assert "| Year | Q1 | Q2 | Q3 | Q4 | Total |" in markdown
    assert "as of 2026-11-21 09:00 UTC" in markdown and "T09:00" not in markdown


def test_a_failing_sync_puts_a_visible_warning_in_every_format(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        week_of_changes: Week, tmp_path: Path) -> None:
    registry.data_timestamp = "2026-11-24T09:00:05"
    registry.fail(status=503, times=99)
    with pytest.raises(TrackerError):
        sync(settings, store, client)

    write(store, VOCABULARY, week_of_changes, tmp_path, NOW, "https://x.org/r")

    page = (tmp_path / f"{week_of_changes.name}.html").read_text()
    markdown = (tmp_path / f"{week_of_changes.name}.md").read_text()
    data = json.loads((tmp_path / f"{week_of_changes.name}.json").read_text())
    assert data["freshness"]["last_sync_failed"] is True
    assert 'class="warning" role="alert"' in page and "503" in page
    assert ("**Warning:** the most recent attempt to update from ClinicalTrials.gov failed, "
            "so this report") in markdown


def test_timestamps_read_in_utc_and_quarters_fold_into_years() -> None:
    assert stamp("2026-11-22T09:54:00+01:00") == "2026-11-22 08:54 UTC"
    assert stamp("2026-11-21T09:00:05") == "2026-11-21 09:00 UTC"
    assert stamp(None) == "never" and stamp(None, "unknown") == "unknown"
    assert by_year([("2024-Q3", 2), ("2024-Q4", 0), ("2025-Q1", 1)]) == [
        ("2024", [0, 0, 2, 0]), ("2025", [1, 0, 0, 0])]


def test_markdown_escape_makes_registry_text_inert() -> None:
    assert markdown_escape("<b>*x*</b> [a](b) # h") == \
        "&lt;b&gt;\\*x\\*&lt;/b&gt; \\[a\\]\\(b\\) \\# h"


@pytest.mark.slow
def test_the_page_loads_in_a_real_browser_with_no_errors_and_no_network(
        store: Store, week_of_changes: Week, tmp_path: Path) -> None:
    from tests.browser import open_page, require_chromium

    require_chromium()
    write(store, VOCABULARY, week_of_changes, tmp_path, NOW, "https://x.org/r")
    shot = tmp_path / "report.png"

    report = open_page(tmp_path / f"{week_of_changes.name}.html", shot)

    assert report.problems() == []
    assert report.network_requests == []
    assert report.title == f"Myositis clinical trials: week {week_of_changes.name}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert report.phone_page_width is not None and report.phone_page_width <= 390 + 1
