"""The weekly report, rendered from a real snapshot with known changes."""

from __future__ import annotations

import copy
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest

from tests.conftest import load_study
from tests.fakeapi import Registry
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.errors import TrackerError
from tracker.report import (
    BadWeek,
    Week,
    by_year,
    collect,
    markdown_escape,
    render_html,
    stamp,
    write,
)
from tracker.store import Store
from tracker.sync import sync
from tracker.vocabulary import load_vocabulary

VOCABULARY = load_vocabulary()
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def clock_at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Syncs from now on happen at `moment`: their runs and the changes they record."""
    monkeypatch.setattr("tracker.sync.utcnow", lambda: moment)
    monkeypatch.setattr("tracker.runs.utcnow", lambda: moment)


def posted(study: dict[str, Any], day: str, *, first: bool = False) -> dict[str, Any]:
    """A copy of `study` as the registry posts an update on `day` (and, with `first`, as a
    trial first posted that day)."""
    new = copy.deepcopy(study)
    status = new["protocolSection"]["statusModule"]
    status["lastUpdatePostDateStruct"]["date"] = day
    status["lastUpdateSubmitDate"] = day
    if first:
        status["studyFirstPostDateStruct"]["date"] = status["studyFirstSubmitDate"] = day
    return new


W47 = Week.parse("2026-W47")  # Monday 16 to Sunday 22 November 2026


def changes_in_w47(registry: Registry) -> None:
    """The registry's week 47: a trial starts recruiting in Lyon under a hostile title,
    another is terminated, and a new IBM trial is first posted."""
    imnm = posted(registry.studies["NCT07725679"], "2026-11-18")
    imnm["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    imnm["protocolSection"]["identificationModule"]["briefTitle"] = \
        "Efgartigimod <script>alert(1)</script> & *IMNM* [x](http://evil)"
    imnm["protocolSection"]["contactsLocationsModule"]["locations"] = [
        {"facility": "Hôpital Édouard Herriot", "status": "RECRUITING", "city": "Lyon",
         "country": "France", "geoPoint": {"lat": 45.74846, "lon": 4.84671}}]
    dm = posted(registry.studies["NCT04078230"], "2026-11-19")
    dm["protocolSection"]["statusModule"]["overallStatus"] = "TERMINATED"
    dm["protocolSection"]["statusModule"]["whyStopped"] = "Sponsor decision"
    registry.put(imnm, dm, posted(NEWCOMER, "2026-11-17", first=True))
    registry.data_timestamp = "2026-11-20T09:00:05"


NEWCOMER = load_study("NCT02803307")


@pytest.fixture
def week_of_changes(settings: Settings, store: Store, client: CtGovClient,
                    registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Week:
    """A baseline on Sunday 15 November, the registry's week 47, and a sync on Saturday 21."""
    registry.studies.pop("NCT02803307")
    registry.data_timestamp = "2026-11-15T09:00:05"
    clock_at(monkeypatch, datetime(2026, 11, 15, 10, 0, tzinfo=UTC))
    sync(settings, store, client)
    changes_in_w47(registry)
    clock_at(monkeypatch, datetime(2026, 11, 21, 10, 0, tzinfo=UTC))
    sync(settings, store, client)
    return W47


def test_weeks_parse_and_default_to_the_last_complete_one() -> None:
    assert Week.parse("2026-W47").start == datetime(2026, 11, 16, tzinfo=UTC)
    assert Week.parse("2026-W47").end == datetime(2026, 11, 23, tzinfo=UTC)
    assert Week.last_complete(NOW.date()).name == "2026-W47"  # on Monday 23 November
    for bad in ("2026-47", "2026-W54", "last week"):
        with pytest.raises(BadWeek):
            Week.parse(bad)


def test_the_data_counts_what_the_registry_posted_in_the_week(store: Store,
                                                              week_of_changes: Week) -> None:
    data = collect(store, VOCABULARY, week_of_changes, NOW)

    assert data["headline"] == {"tracked": 7, "recruiting": 1, "new": 1, "changed": 2,
                                "results_posted": 0, "stopped": 1, "seen_late": 0}
    assert [(t["nct_id"], t["date"]) for t in data["new_trials"]] == [
        ("NCT02803307", "2026-11-17")]
    assert [(c["plain"], c["date"], c["seen"]) for c in data["changes"]["status"]] == [
        ("Now recruiting: you can ask the study team about joining", "2026-11-18", None),
        ("Stopped early: nobody new can join. Reason given: \u201cSponsor decision\u201d. In "
         "plain words: the company or group running the trial (the sponsor) decided this. "
         "If you are taking part, talk to your study team about what this means for you",
         "2026-11-19", None)]
    assert data["changes"]["site_added"][0]["plain"] == "A new site is recruiting in Lyon, France"
    assert data["coverage"]["complete"] is True and data["coverage"]["note"] == ""
    assert data["freshness"]["data_timestamp"] == "2026-11-20T09:00:05"
    assert all(c["url"].startswith("https://clinicaltrials.gov/study/NCT")
               for items in data["changes"].values() for c in items)


def test_a_week_without_changes_still_reports_the_landscape(store: Store,
                                                            week_of_changes: Week) -> None:
    quiet = Week.parse("2026-W40")
    data = collect(store, VOCABULARY, quiet, NOW)

    assert data["headline"]["new"] == data["headline"]["changed"] == 0
    assert data["changes"] == {} and data["updated"] == []
    assert {f["key"] for f in data["figures"] if f["rows"]} >= {
        "by_phase", "by_therapy", "per_quarter", "sponsor_types", "recruiting_by_country"}


def test_after_one_baseline_a_past_week_lists_what_the_registry_dated_in_it(
        settings: Settings, store: Store, client: CtGovClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock_at(monkeypatch, datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    sync(settings, store, client)

    first_posted = collect(store, VOCABULARY, Week.parse("2026-W30"), NOW)  # 24 July 2026
    assert [t["nct_id"] for t in first_posted["new_trials"]] == ["NCT07725679"]
    assert first_posted["results"] == [] and first_posted["changes"] == {}
    assert first_posted["coverage"]["complete"] is False
    assert first_posted["coverage"]["note"] == (
        "The tracker started watching on 20 November 2026, after this week: new trials and "
        "first results are complete; changes are partial (trials updated then show how they "
        "stand now, not what changed).")
    results = collect(store, VOCABULARY, Week.parse("2022-W18"), NOW)  # 6 May 2022
    assert [(t["nct_id"], t["date"]) for t in results["results"]] == [
        ("NCT02803307", "2022-05-06")]
    assert results["new_trials"] == []
    updated = collect(store, VOCABULARY, Week.parse("2025-W47"), NOW)  # 20 November 2025
    assert [(t["nct_id"], t["status"], t["status_checked"]) for t in updated["updated"]] == [
        ("NCT00987428", "Terminated", "September 2025")]
    assert updated["headline"]["changed"] == 0
    during = collect(store, VOCABULARY, Week.parse("2026-W47"), NOW)
    assert "during this week" in during["coverage"]["note"]


def test_a_weeks_report_is_the_same_whichever_days_the_syncs_ran(
        settings: Settings, client: CtGovClient, registry: Registry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry.studies.pop("NCT02803307")
    registry.data_timestamp = "2026-11-15T09:00:05"
    early = Store.open(f"sqlite:///{tmp_path / 'early.db'}", create=True)
    late = Store.open(f"sqlite:///{tmp_path / 'late.db'}", create=True)
    clock_at(monkeypatch, datetime(2026, 11, 15, 10, 0, tzinfo=UTC))
    sync(settings, early, client)  # Sunday before the week
    clock_at(monkeypatch, datetime(2026, 11, 16, 2, 0, tzinfo=UTC))
    sync(settings, late, client)  # Monday night
    changes_in_w47(registry)
    clock_at(monkeypatch, datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    sync(settings, early, client)  # Friday
    clock_at(monkeypatch, datetime(2026, 11, 22, 23, 0, tzinfo=UTC))
    sync(settings, late, client)  # Sunday night

    def week(store: Store) -> dict[str, Any]:
        data = collect(store, VOCABULARY, W47, NOW)
        return {k: v for k, v in data.items() if k not in ("freshness",)}

    assert week(early) == week(late)
    assert week(early)["headline"]["changed"] == 2
    early.close()
    late.close()


def test_a_change_seen_after_its_week_was_written_is_reported_late_and_the_page_rewritten(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        week_of_changes: Week, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(store, VOCABULARY, W47, tmp_path, NOW, "https://x.org/r")
    assert "Nightly" not in (tmp_path / "2026-W47.html").read_text()
    # Posted on Sunday 22 November, but the registry's data only showed it on the Tuesday.
    ibm = posted(registry.studies["NCT02210780"], "2026-11-22")
    ibm["protocolSection"]["identificationModule"]["briefTitle"] = "Nightly IBM study"
    registry.put(ibm)
    registry.data_timestamp = "2026-11-24T09:00:05"
    clock_at(monkeypatch, datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
    sync(settings, store, client)

    w48 = Week.parse("2026-W48")
    paths = write(store, VOCABULARY, w48, tmp_path, datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
                  "https://x.org/r")

    data = json.loads((tmp_path / "2026-W48.json").read_text())
    assert [(c["nct_id"], c["date"], c["seen"]) for c in data["seen_late"]] == [
        ("NCT02210780", "2026-11-22", "2026-11-24")]
    assert data["headline"]["seen_late"] == 1 and data["changes"] == {}
    assert tmp_path / "2026-W47.html" in paths  # rewritten with what it had missed
    rewritten = json.loads((tmp_path / "2026-W47.json").read_text())
    assert [(c["nct_id"], c["seen"]) for c in rewritten["changes"]["title"]] == [
        ("NCT07725679", None), ("NCT02210780", "2026-11-24")]
    assert "Nightly IBM study" in (tmp_path / "2026-W47.html").read_text()
    assert "Seen late" in (tmp_path / "2026-W48.html").read_text()
    # Written again, nothing is late any more: the weeks are not rewritten a second time.
    again = write(store, VOCABULARY, w48, tmp_path, datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
                  "https://x.org/r")
    assert tmp_path / "2026-W47.html" not in again
    assert json.loads((tmp_path / "2026-W48.json").read_text())["seen_late"] == data["seen_late"]


def test_recruiting_trials_are_listed_by_name_with_who_can_join_and_where(
        store: Store, week_of_changes: Week) -> None:
    data = collect(store, VOCABULARY, week_of_changes, NOW,
                   trial_pages="https://trials.example.org/trials")
    recruiting = data["recruiting"]

    (trial,) = recruiting["trials"]
    assert trial["nct_id"] == "NCT07725679"
    assert trial["url"] == "https://trials.example.org/trials/NCT07725679"
    assert trial["registry_url"] == "https://clinicaltrials.gov/study/NCT07725679"
    assert "Immune-mediated necrotizing myopathy" in trial["subtypes"]
    assert trial["who"].endswith("Adults only.") or trial["who"].endswith(
        "Children can take part.")
    assert trial["places"] == [{"country": "France", "anchor": "in-france", "cities": [
        {"city": "Lyon", "facilities": ["Hôpital Édouard Herriot"], "new": True}]}]
    assert trial["new_sites"] == 1
    assert [c["country"] for c in recruiting["by_country"]] == ["France"]
    assert recruiting["by_country"][0]["trials"][0]["anchor"] == trial["anchor"]
    kinds = {k["label"]: [t["nct_id"] for t in k["trials"]] for k in recruiting["by_kind"]}
    assert kinds["Immune-mediated necrotizing myopathy"] == ["NCT07725679"]


def test_look_alike_studies_are_left_out_of_the_report_and_counted_once(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        tmp_path: Path) -> None:
    flu = posted(registry.studies["NCT02248896"], "2026-11-17", first=True)
    flu["protocolSection"]["identificationModule"]["nctId"] = "NCT09900001"
    flu["protocolSection"]["identificationModule"]["briefTitle"] = \
        "Oseltamivir in Influenza-Associated Myositis in Children"
    flu["protocolSection"]["identificationModule"].pop("officialTitle", None)
    flu["protocolSection"]["conditionsModule"] = {"conditions": ["Influenza",
                                                                 "Viral Myositis"]}
    flu["protocolSection"]["descriptionModule"] = {"briefSummary": "Children with flu."}
    registry.put(flu)
    sync(settings, store, client)

    data = collect(store, VOCABULARY, W47, NOW)
    assert data["headline"]["tracked"] == 7 and data["look_alikes"] == 1
    assert data["new_trials"] == []  # first posted that week, but not a myositis trial
    page = render_html(data)
    assert "1 other study is watched but left out of this report" in page
    flu["protocolSection"]["statusModule"]["overallStatus"] = "TERMINATED"
    registry.put(posted(flu, "2026-11-21"))
    registry.data_timestamp = "2026-11-22T09:00:05"
    sync(settings, store, client)
    assert store.changes(nct_id="NCT09900001")  # recorded, with its history...
    write(store, VOCABULARY, W47, tmp_path, NOW, "https://x.org/r")
    feed = (tmp_path / "feed.atom").read_text()  # ...but not announced in the feeds
    assert "NCT09900001" not in feed and "NCT09900001" not in (tmp_path / "2026-W47.md"
                                                               ).read_text()


def test_beyond_a_few_hundred_recruiting_trials_the_newest_are_listed_and_the_rest_linked(
        store: Store, week_of_changes: Week, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tracker.report.RECRUITING_LISTED", 0)
    data = collect(store, VOCABULARY, week_of_changes, NOW,
                   trial_pages="https://trials.example.org/trials")

    assert data["recruiting"]["trials"] == [] and data["recruiting"]["total"] == 1
    assert data["recruiting"]["everything"] == "https://trials.example.org/trials"
    monkeypatch.setattr("tracker.report.RECRUITING_LISTED", 250)
    listed = collect(store, VOCABULARY, week_of_changes, NOW)["recruiting"]
    assert len(listed["trials"]) == listed["total"] == 1 and listed["everything"] == ""


def test_the_figures_say_who_runs_the_trials_and_how_long_they_take(
        store: Store, week_of_changes: Week) -> None:
    data = collect(store, VOCABULARY, week_of_changes, NOW)
    figures = {f["key"]: f for f in data["figures"]}

    assert figures["sponsor_types"]["rows"] == [
        ["Companies", 3], ["Universities and hospitals", 3], ["Governments", 1]]
    assert figures["sponsor_types"]["reading"] == (
        "Of 7 trials, 3 by companies, 3 by universities and hospitals, 1 by governments.")
    waits = figures["wait_to_recruit"]
    assert waits["extra"]["trials"] == 3 and sum(n for _, n in waits["rows"]) == 3
    assert waits["reading"].startswith("Of 3 trials that have started, 1 began before being "
                                       "registered")
    enrolment = figures["enrolment"]
    assert enrolment["extra"] == {"completed_with_actual": 3, "compared": 0}
    assert "there are none yet" in enrolment["reading"]
    assert data["results_overdue"] == []  # the completed trials posted results
    for figure in data["figures"]:
        assert figure["reading"].endswith(".") and figure["title"]


def test_planned_and_actual_enrolment_are_compared_once_the_tracker_saw_both(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    finished = posted(registry.studies["NCT04078230"], "2026-11-25")
    status = finished["protocolSection"]["statusModule"]
    status["overallStatus"] = "COMPLETED"
    finished["protocolSection"]["designModule"]["enrollmentInfo"] = {"count": 60,
                                                                      "type": "ACTUAL"}
    registry.put(finished)
    registry.data_timestamp = "2026-11-26T09:00:05"
    sync(settings, store, client)

    data = collect(store, VOCABULARY, W47, NOW)
    enrolment = next(f for f in data["figures"] if f["key"] == "enrolment")
    assert enrolment["extra"]["compared"] == 1  # 60 of 168 planned: fewer than half
    assert enrolment["rows"] == [["Fewer than half", 1], ["Half to almost all", 0],
                                 ["All or more", 0]]
    assert "For 1 trial we know the number planned: 0 reached it." in enrolment["reading"]


def test_the_written_files_escape_registry_text_and_link_to_trial_pages(
        store: Store, week_of_changes: Week, tmp_path: Path) -> None:
    paths = write(store, VOCABULARY, week_of_changes, tmp_path, NOW,
                  "https://trials.example.org/reports",
                  trial_pages="https://trials.example.org/trials")
    page = (tmp_path / f"{week_of_changes.name}.html").read_text()
    markdown = (tmp_path / f"{week_of_changes.name}.md").read_text()

    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Stopped early: nobody new can join. Reason given: \u201cSponsor decision\u201d" in page
    assert 'role="img"' in page and "<title id=" in page and "<desc id=" in page
    assert page.count("<details><summary>The numbers</summary>") >= 5
    hrefs = [part.split('"')[0] for part in page.split('href="')[1:]]
    assert hrefs and all(h.startswith(("https://trials.example.org/trials/NCT",
                                       "https://clinicaltrials.gov/study/NCT", "#"))
                         for h in hrefs)
    anchors = {h[1:] for h in hrefs if h.startswith("#")}
    assert anchors and all(f'id="{a}"' in page for a in anchors)  # every jump lands
    assert {"trials", "trial-nct07725679"} <= anchors
    assert 'id="kind-imnm"' in page and 'id="in-france"' in page  # the two indexes
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


def test_the_markdown_and_the_page_carry_what_the_data_carries(
        store: Store, week_of_changes: Week, tmp_path: Path) -> None:
    write(store, VOCABULARY, week_of_changes, tmp_path, NOW, "https://x.org/r")
    markdown = (tmp_path / f"{week_of_changes.name}.md").read_text()
    page = html.unescape((tmp_path / f"{week_of_changes.name}.html").read_text())
    data = json.loads((tmp_path / f"{week_of_changes.name}.json").read_text())

    for heading in ("New trials", "Results posted", "What changed", "Recruitment and status",
                    "New sites", "Recruiting now", "By kind of myositis", "By country",
                    "All tracked trials in figures", "Results overdue"):
        assert f"# {heading}\n" in markdown and f">{heading}</h" in page
    named = [t["title"] for t in data["new_trials"] + data["recruiting"]["trials"]
             + data["results_overdue"]]
    named += [c["plain"] for items in data["changes"].values() for c in items]
    for text in named:
        assert markdown_escape(text) in markdown and text in page
    for figure in data["figures"]:
        assert f"### {figure['title']}" in markdown and figure["title"] in page
        assert markdown_escape(figure["reading"]) in markdown and figure["reading"] in page
        for label, n in figure["rows"] if figure["kind"] == "bars" else []:
            assert f"| {markdown_escape(label)} | {n} |" in markdown
            assert f"<td>{label}</td><td class=\"n\">{n}</td>" in page
    assert "| Year | Q1 | Q2 | Q3 | Q4 | Total |" in markdown
    assert "Lyon (Hôpital Édouard Herriot) (new this week)" in markdown
    assert "as of 2026-11-20 09:00 UTC" in markdown and "T09:00" not in markdown


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
    assert stamp("not a time") == "not a time"  # the registry's text, shown as it came
    assert by_year([("2024-Q3", 2), ("2024-Q4", 0), ("2025-Q1", 1)]) == [
        ("2024", [0, 0, 2, 0]), ("2025", [1, 0, 0, 0])]


def test_markdown_escape_makes_registry_text_inert() -> None:
    assert markdown_escape("<b>*x*</b> [a](b) # h") == \
        "&lt;b&gt;\\*x\\*&lt;/b&gt; \\[a\\]\\(b\\) \\# h"


@pytest.mark.slow
def test_the_page_reads_on_a_360_px_phone_with_no_errors_and_no_network(
        store: Store, week_of_changes: Week, tmp_path: Path) -> None:
    from tests.browser import PHONE, open_page, require_chromium

    require_chromium()
    write(store, VOCABULARY, week_of_changes, tmp_path, NOW, "https://x.org/reports",
          trial_pages="https://x.org/trials")
    shot = tmp_path / "report.png"

    report = open_page(tmp_path / f"{week_of_changes.name}.html", shot)

    assert report.problems() == []
    assert report.network_requests == []
    assert report.title == f"Myositis clinical trials: week {week_of_changes.name}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert PHONE[0] == 360
    assert report.phone_page_width <= PHONE[0]  # no sideways scroll
    assert report.phone_too_wide == []  # and no element sticks out to scroll inside
    assert report.phone_smallest_chart_text is not None
    assert report.phone_smallest_chart_text >= 12
    page = (tmp_path / f"{week_of_changes.name}.html").read_text()
    cards = page.split('<article class="trial"')[1:]
    assert cards and all('href="https://x.org/trials/NCT' in card for card in cards)
