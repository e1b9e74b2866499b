"""The reader's pages (home, recruiting trials, one trial), served in-process from a snapshot
of real records: three edited to recruit in known places, the others closed."""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import all_studies
from tests.records import module, sites, status_module
from tracker import pages, runs
from tracker.config import Settings
from tracker.jobs import Context
from tracker.models import RunStatus, Study
from tracker.record import content_hash, summarise
from tracker.store import Store
from tracker.tags import Tagger, columns
from tracker.times import utcnow
from tracker.vocabulary import load_vocabulary
from tracker.web import HEADERS, create_app

DATA_TIMESTAMP = "2026-11-20T09:04:33"
OLDER, NEWER = "It started looking for people.", "It now also looks for people in Baltimore."
NEWER_POSTED = "2026-11-19"  # the registry's date of NEWER; OLDER has none (seen 30 days ago)


def recruiting(study: dict[str, Any], *locations: tuple[str, str, float, float]) -> None:
    """Make `study` recruit at these (city, country, lat, lon) sites."""
    status_module(study)["overallStatus"] = "RECRUITING"
    sites(study).clear()
    sites(study).extend({"facility": f"{city} Hospital", "city": city, "country": country,
                         "status": "RECRUITING", "geoPoint": {"lat": lat, "lon": lon}}
                        for city, country, lat, lon in locations)


def records() -> list[dict[str, Any]]:
    studies = all_studies()
    necrotizing = studies["NCT07725679"]  # immune-mediated necrotizing myopathy, FcRn
    recruiting(necrotizing, ("Paris", "France", 48.8566, 2.3522),
               ("Lyon", "France", 45.7640, 4.8357))
    module(necrotizing, "eligibilityModule")["minimumAge"] = "6 Years"
    module(necrotizing, "eligibilityModule")["stdAges"] = ["CHILD", "ADULT"]
    body = studies["NCT02803307"]  # inclusion body myositis
    recruiting(body, ("Taipei", "Taiwan", 25.0330, 121.5654))
    module(body, "identificationModule")["briefTitle"] = "<script>alert(1)</script> IBM study"
    # A look-alike the broad query brings in: recruiting, but not a myositis trial, so the
    # site neither lists nor counts it.
    flu = copy.deepcopy(studies["NCT02248896"])
    module(flu, "identificationModule").update(
        nctId="NCT09900002", briefTitle="Oseltamivir in Influenza-Associated Myositis")
    module(flu, "identificationModule").pop("officialTitle", None)
    module(flu, "conditionsModule").update(conditions=["Influenza", "Viral Myositis"],
                                           keywords=[])
    module(flu, "descriptionModule")["briefSummary"] = "Children with influenza."
    flu.pop("derivedSection", None)
    recruiting(flu, ("Paris", "France", 48.8566, 2.3522))
    return [*studies.values(), flu]


@pytest.fixture
def site(tmp_path: Path, migrated_sqlite: Path) -> Iterator[tuple[TestClient, Store]]:
    shutil.copyfile(migrated_sqlite, tmp_path / "tracker.db")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'tracker.db'}",
                        report_dir=tmp_path / "reports")
    store = Store.open(settings.database_url)
    tagger = Tagger(load_vocabulary())
    first = runs.begin_sync(store.db, settings.query)
    second = runs.begin_sync(store.db, settings.query)
    now = utcnow()
    with store.transaction() as tx:
        rows = [{**summarise(r), **columns(tagger.tag(r), r), "content_hash": content_hash(r),
                 "vocabulary": tagger.vocabulary.digest, "first_seen_at": now,
                 "last_changed_at": now} for r in records()]
        tx.insert_studies(rows)
        tx.add_events([
            {"nct_id": "NCT04078230", "kind": "status", "field": "overallStatus",
             "summary": "status: NOT_YET_RECRUITING -> RECRUITING", "plain": OLDER,
             "sync_run_id": first, "detected_at": now - timedelta(days=30),
             "last_update_posted": None},
            {"nct_id": "NCT04078230", "kind": "sites", "field": "locations",
             "summary": "site added: Baltimore", "plain": NEWER, "sync_run_id": second,
             "detected_at": now, "last_update_posted": NEWER_POSTED},
        ])
    for run in (first, second):
        runs.finish_sync(store.db, run, RunStatus.OK, data_timestamp=DATA_TIMESTAMP)
    with TestClient(create_app(Context(settings, store.db))) as client:
        yield client, store
    store.close()


def text(html: str) -> str:
    """What a reader sees: the page without its tags and style."""
    return " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<style>.*?</style>", "", html))
                    .split())


def titles(html: str) -> list[str]:
    return re.findall(r'<h3><a href="/trials/(NCT\d{8})">', html)


def test_home_shows_the_counts_and_how_fresh_the_data_is(site: tuple[TestClient, Store]
                                                          ) -> None:
    client, _ = site
    page = text(client.get("/").text)

    assert "It follows 7 myositis trials; 3 are looking for people now." in page
    assert "The register's data is from 20 November 2026." in page
    assert "The tracker last read it on" in page
    assert "Get e-mail updates" in page


def test_home_links_the_latest_report_once_one_is_written(site: tuple[TestClient, Store],
                                                          tmp_path: Path) -> None:
    client, _ = site
    assert 'href="/reports/"' in client.get("/").text
    (tmp_path / "reports").mkdir()
    for week in ("2026-W47", "2026-W48"):
        (tmp_path / "reports" / f"{week}.html").write_text("<p>report</p>")

    html = client.get("/").text

    assert 'href="/reports/2026-W48.html"' in html
    assert "the week of 23 November 2026" in html
    assert 'href="/reports/feed.atom"' in html and 'href="/trials"' in html
    assert 'href="/subscribe"' in html


def test_trials_lists_only_recruiting_trials_with_labels_not_codes(
        site: tuple[TestClient, Store]) -> None:
    client, _ = site
    html = client.get("/trials").text
    page = text(html)

    assert titles(html) == ["NCT02803307", "NCT04078230", "NCT07725679"]
    assert "3 trials recruiting now" in page
    assert "Inclusion body myositis" in page and "Immune-mediated necrotizing myopathy" in page
    assert "FcRn blockers" in page and "JAK inhibitors" in page
    assert ">ibm<" not in html and not re.search(r"\b(imnm|fcrn|jak)\b", page)
    assert "Anyone aged 18 to 80 years. Adults only." in page
    assert "Women aged 6 to 29 years. Children can take part." in page
    assert "Beijing, China (2 sites)" in page
    assert 'href="https://clinicaltrials.gov/study/NCT04078230"' in html


@pytest.mark.parametrize(("query", "shown"), [
    ("subtype=imnm", ["NCT07725679"]),
    ("therapy=jak", ["NCT04078230"]),
    ("country=france", ["NCT07725679"]),
    ("children=1", ["NCT07725679"]),
    ("near=Lyon&radius=250", ["NCT07725679"]),
    ("near=Taipei&radius=50", ["NCT02803307"]),
    ("subtype=ibm&country=China", []),
])
def test_each_filter_narrows_the_list(site: tuple[TestClient, Store], query: str,
                                      shown: list[str]) -> None:
    client, _ = site
    html = client.get(f"/trials?{query}").text

    assert titles(html) == shown
    if not shown:
        assert "No trial looking for people matches this right now." in text(html)


def test_a_place_orders_sites_by_distance_and_counts_only_those_within_the_radius(
        site: tuple[TestClient, Store]) -> None:
    client, _ = site
    page = text(client.get("/trials?near=Paris&radius=500").text)

    assert "1 trial recruiting within 500 km of Paris, France" in page
    assert page.index("Paris, France: 0 km away") < page.index("Lyon, France: 391 km away")
    nothing = text(client.get("/trials?near=Paris&radius=50&subtype=dermatomyositis").text)
    assert "0 trials recruiting within 50 km of Paris, France match your choices" in nothing


def test_a_country_typo_is_shown_beside_the_field_with_what_was_typed(
        site: tuple[TestClient, Store]) -> None:
    client, _ = site
    html = client.get("/trials?country=Frnace").text

    field = html.split('<label for="country">', 1)[1].split('<label for="near">', 1)[0]
    assert 'value="Frnace"' in field
    assert "did you mean France?" in field
    assert 'aria-invalid="true"' in field
    assert titles(html) == []


def test_an_unknown_place_shows_suggestions(site: tuple[TestClient, Store]) -> None:
    client, _ = site
    html = client.get("/trials?near=Lyonn").text

    field = html.split('<label for="near">', 1)[1].split('<label for="radius">', 1)[0]
    assert 'value="Lyonn"' in field
    assert "did you mean Lyon, France" in field


def test_a_trial_page_shows_its_facts_and_history_newest_first(
        site: tuple[TestClient, Store]) -> None:
    client, _ = site
    response = client.get("/trials/NCT04078230")
    page = text(response.text)

    assert response.status_code == 200
    assert "Tofacitinib in Refractory Dermatomyositis" in page
    assert "Recruiting" in page and "JAK inhibitors" in page
    assert page.index(NEWER) < page.index(OLDER)
    assert 'href="https://clinicaltrials.gov/study/NCT04078230?tab=history"' in response.text


def test_a_trials_history_is_dated_by_the_registry(site: tuple[TestClient, Store]) -> None:
    client, _ = site
    response = client.get("/trials/NCT04078230")
    page = text(response.text)

    assert f"19 November 2026 : {NEWER}" in page  # posted then, seen by the tracker today
    assert '<time class="when" datetime="2026-11-19">19 November 2026</time>' in response.text
    seen = (utcnow() - timedelta(days=30)).date()  # no registry date: the day it was seen
    assert f"{seen.day} {seen:%B %Y} : {OLDER}" in page
    today = utcnow().date()
    assert f"{today.day} {today:%B %Y}" not in page
    assert "the date it was posted on ClinicalTrials.gov" in page


def test_a_closed_trial_has_a_page_too(site: tuple[TestClient, Store]) -> None:
    client, _ = site
    page = text(client.get("/trials/NCT00987428").text)

    # The status as a patient reads it, with what it means for joining (the registry says
    # "Terminated").
    assert "Status Stopped early: nobody new can join" in page and "Plasma exchange" in page
    assert "No changes yet" in page


def test_a_trials_status_says_what_it_means_for_joining(site: tuple[TestClient, Store]
                                                         ) -> None:
    client, _ = site

    recruiting = text(client.get("/trials/NCT04078230").text)
    listed = text(client.get("/trials").text)

    assert "Status Recruiting: you can ask the study team about joining" in recruiting
    assert "Status Recruiting: you can ask the study team about joining" in listed


@pytest.mark.parametrize("path", ["/trials/NCT99999999", "/trials/not-an-id",
                                  "/trials/NCT0404078230"])
def test_an_unknown_or_malformed_id_is_a_404_page(site: tuple[TestClient, Store],
                                                  path: str) -> None:
    client, _ = site
    response = client.get(path)

    assert response.status_code == 404
    assert "Not found" in response.text and "Myositis trials tracker" in response.text


def test_registry_text_is_escaped(site: tuple[TestClient, Store]) -> None:
    client, _ = site
    for path in ("/trials", "/trials/NCT02803307"):
        html = client.get(path).text

        assert "<script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; IBM study" in html


@pytest.mark.parametrize("path", ["/", "/trials", "/trials?near=Lyonn",
                                  "/trials/NCT04078230", "/trials/NCT99999999"])
def test_every_page_has_the_security_headers(site: tuple[TestClient, Store],
                                             path: str) -> None:
    client, _ = site
    response = client.get(path)

    for name, value in HEADERS.items():
        assert response.headers[name] == value


def test_a_long_list_comes_a_page_at_a_time_keeping_the_search(
        site: tuple[TestClient, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = site
    everything = titles(client.get("/trials?radius=250").text)
    assert len(everything) >= 3
    monkeypatch.setattr(pages, "PAGE_SIZE", 1)

    first = client.get("/trials?radius=250").text
    second = client.get("/trials?radius=250&page=2").text
    beyond = client.get("/trials?radius=250&page=999").text

    assert titles(first) == everything[:1] and titles(second) == everything[1:2]
    assert titles(beyond) == everything[-1:]  # past the end: the last page
    assert f"Page 1 of {len(everything)}." in text(first)
    assert f"{len(everything)} trials recruiting" in text(first)  # the count is of them all
    assert 'href="/trials?radius=250&amp;page=2" rel="next"' in first
    assert 'rel="prev"' not in first and 'href="/trials?radius=250&amp;page=1" rel="prev"' \
        in second


@pytest.mark.parametrize(("status", "said"), [
    ("ENROLLING_BY_INVITATION",
     "Enrolling by invitation only: the study team invites people; you cannot ask to join"),
    ("SUSPENDED", "Paused: nobody new can join for now"),
    ("APPROVED_FOR_MARKETING", "Approved for sale, not necessarily for myositis: the US "
     "medicines agency (FDA) approved this treatment for sale for some illness; this does "
     "not mean it is approved for myositis"),
])
def test_a_trials_status_reads_as_the_patient_sentences_say_it(status: str, said: str) -> None:
    study = Study(nct_id="NCT00000001", brief_title="A trial", overall_status=status,
                  content_hash="", first_seen_at=utcnow(), last_changed_at=utcnow())

    assert pages.card(study, load_vocabulary(), [])["status"] == said
