"""The snapshot database: a database from before tags is upgraded and re-tagged, a new
vocabulary re-tags every study at the next sync, filters narrow by tag; changes narrow by
the registry's date or by when they were seen; what the weekly report needs of the history."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from tests.conftest import load_study, updated
from tests.fakeapi import Registry
from tracker import runs
from tracker.config import Settings
from tracker.ctgov import CtGovClient, nct_id_of
from tracker.models import ChangeEvent, RunStatus
from tracker.packed import ZSTD_MAGIC
from tracker.record import content_hash, last_update_posted, summarise
from tracker.store import Store, StudyFilter, compress, decompress
from tracker.sync import refresh_derived, sync
from tracker.tags import Tagger
from tracker.times import as_utc
from tracker.vocabulary import load_vocabulary

DM = "NCT04078230"  # Tofacitinib in refractory DM: last update posted 2022-11-09
IMNM = "NCT07725679"  # Efgartigimod in IMNM: last update posted 2026-07-24
IBM = "NCT02803307"  # Arimoclomol in IBM: last update posted 2022-05-06
TAG_COLUMNS = ["subtypes", "therapies", "tag_evidence", "recruiting", "children",
               "min_age_years", "max_age_years", "recruiting_countries", "recruiting_sites",
               "vocabulary"]


def test_a_database_from_before_tags_is_upgraded_and_tagged(settings: Settings, store: Store,
                                                           client: CtGovClient,
                                                           registry: Registry) -> None:
    sync(settings, store, client)
    registry.drop("NCT00987428")
    registry.data_timestamp = "2026-11-21T09:00:05"
    sync(settings, store, client)
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX IF EXISTS ix_study_recruiting"))
        for column in TAG_COLUMNS:
            conn.execute(text(f'ALTER TABLE study DROP COLUMN "{column}"'))
        conn.execute(text('ALTER TABLE change_event DROP COLUMN "plain"'))
        conn.execute(text("DROP TABLE alembic_version"))  # the hand-upgraded schema had none
    store.close()

    upgraded = Store.open(settings.database_url, create=True)
    retagged = refresh_derived(upgraded, Tagger(load_vocabulary()))

    columns = {c["name"] for c in inspect(upgraded.engine).get_columns("study")}
    assert set(TAG_COLUMNS) <= columns
    assert retagged == 7  # the removed study is re-tagged too, for its history
    study = upgraded.study("NCT02803307")
    assert study is not None and study.subtypes == "ibm"
    assert refresh_derived(upgraded, Tagger(load_vocabulary())) == 0  # nothing left to do
    [event] = upgraded.changes()
    assert event.plain == "No longer listed among the tracked myositis trials"
    upgraded.close()


def test_editing_the_vocabulary_retags_every_study(settings: Settings, store: Store,
                                                   client: CtGovClient, tmp_path: Path) -> None:
    sync(settings, store, client)
    assert store.study("NCT02803307").therapies == "muscle"  # arimoclomol: muscle-directed
    extra = tmp_path / "extra.toml"
    extra.write_text('[therapies.chaperones]\nlabel = "Heat-shock protein co-inducers"\n'
                     'terms = ["arimoclomol"]\n')

    retagged = refresh_derived(store, Tagger(load_vocabulary(extra)))

    assert retagged == 7
    assert store.study("NCT02803307").therapies == "chaperones"


def test_filters_narrow_studies_by_tag_recruitment_and_country(settings: Settings,
                                                              store: Store,
                                                              client: CtGovClient) -> None:
    sync(settings, store, client)

    def ids(where: StudyFilter) -> list[str]:
        return [s.nct_id for s in store.iter_studies(where=where)]

    assert ids(StudyFilter(subtypes=("dermatomyositis",))) == ["NCT02210780", "NCT04078230"]
    assert ids(StudyFilter(subtypes=("ibm", "imnm"))) == ["NCT02803307", "NCT07725679"]
    assert ids(StudyFilter(therapies=("jak",))) == ["NCT04078230"]
    assert ids(StudyFilter(subtypes=("dermatomyositis",), therapies=("ivig",))) == \
        ["NCT02210780"]
    assert ids(StudyFilter(recruiting=True)) == ["NCT04078230"]
    assert ids(StudyFilter(recruiting=True, countries=("china",))) == ["NCT04078230"]
    assert ids(StudyFilter(countries=("France",))) == ["NCT00987428"]
    assert ids(StudyFilter(recruiting=True, countries=("France",))) == []
    # "im" must not match inside "imnm": tags match whole names only
    assert ids(StudyFilter(subtypes=("im",))) == []


def test_change_filters_join_the_study_tags(settings: Settings, store: Store,
                                            client: CtGovClient, registry: Registry) -> None:
    from tests.conftest import updated

    sync(settings, store, client)
    for nct_id in ("NCT04078230", "NCT07725679"):
        study = updated(registry.studies[nct_id])
        study["protocolSection"]["statusModule"]["overallStatus"] = "ACTIVE_NOT_RECRUITING"
        registry.put(study)
    registry.data_timestamp = "2026-11-21T09:00:05"
    sync(settings, store, client)

    events = store.changes(where=StudyFilter(therapies=("fcrn",)))

    assert {e.nct_id for e in events} == {"NCT07725679"}
    assert events[0].plain == "No longer recruiting: the trial goes on with the people " \
                              "already taking part, and nobody new can join"
    assert len(store.changes()) > len(events)


def test_tag_counts_cover_tracked_studies_only(settings: Settings, store: Store,
                                               client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    assert store.tag_counts()["subtypes"]["dermatomyositis"] == 2
    registry.drop("NCT02210780")
    registry.data_timestamp = "2026-11-21T09:00:05"
    sync(settings, store, client)

    counts = store.tag_counts()

    assert counts["subtypes"]["dermatomyositis"] == 1
    assert counts["therapies"]["jak"] == 1
    assert "ivig" in counts["therapies"]  # the JDM registry still lists IVIG


# --- registry dates, first records and the report's weeks (rows written directly) ----------

SEEN = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def snapshot(database_url: str) -> Store:
    """A snapshot of two sync runs: the baseline of three real records (one since removed),
    then a sync that saw two of them change, each change dated by its record."""
    store = Store.open(database_url, create=True)
    first, second = (runs.begin_sync(store.db, "myositis") for _ in range(2))
    runs.finish_sync(store.db, first, RunStatus.OK)
    runs.finish_sync(store.db, second, RunStatus.FAILED)
    records = {nct_id: load_study(nct_id) for nct_id in (DM, IMNM, IBM)}
    with store.transaction() as tx:
        ids = tx.add_versions([
            version(records[DM], first), version(records[IMNM], first),
            version(records[IBM], first), version(updated(records[DM], days=9), second),
            version(updated(records[IMNM], days=120), second)])
        tx.insert_studies([{**summarise(records[n]), "content_hash": "h", "version_id": v,
                            "first_seen_at": SEEN, "last_changed_at": SEEN}
                           for n, v in ((DM, ids[3]), (IMNM, ids[4]), (IBM, ids[2]))])
        tx.mark_removed([IBM], SEEN)
        tx.add_events([event(second, DM, "2022-11-18", SEEN, "dates"),
                       event(second, IMNM, "2026-11-21", SEEN, "status"),
                       event(second, IMNM, "2026-11-21", SEEN, "site_added"),
                       event(first, IBM, "2026-12-02", SEEN - timedelta(days=1), "removed")])
    return store


def version(record: dict[str, Any], run_id: int) -> dict[str, Any]:
    return {"nct_id": nct_id_of(record), "content_hash": content_hash(record),
            "last_update_posted": last_update_posted(record), "sync_run_id": run_id,
            "fetched_at": SEEN, "record": compress(record)}


def event(run_id: int, nct_id: str, posted: str | None, seen: datetime,
          kind: str) -> dict[str, Any]:
    return {"sync_run_id": run_id, "nct_id": nct_id, "kind": kind, "field": kind,
            "summary": kind, "detected_at": seen, "last_update_posted": posted}


def test_changes_narrow_by_registry_date_or_by_when_they_were_seen(database_url: str) -> None:
    store = snapshot(database_url)

    def posted(**narrowing: Any) -> list[tuple[str, str]]:
        return [(e.nct_id, e.kind) for e in store.changes(**narrowing)]

    assert posted() == [(DM, "dates"), (IMNM, "status"), (IMNM, "site_added"),
                        (IBM, "removed")]  # newest sync first, then as the diff said
    assert posted(posted_from=date(2026, 11, 21)) == [(IMNM, "status"), (IMNM, "site_added"),
                                                      (IBM, "removed")]
    assert posted(posted_from=date(2026, 11, 21), posted_before=date(2026, 12, 2)) == \
        [(IMNM, "status"), (IMNM, "site_added")]
    assert posted(posted_before=date(2026, 11, 21)) == [(DM, "dates")]
    assert posted(since=SEEN) == [(DM, "dates"), (IMNM, "status"), (IMNM, "site_added")]
    assert posted(since=SEEN, posted_from=date(2026, 11, 22)) == []
    store.close()


def test_a_change_is_dated_by_the_registry_and_else_by_when_it_was_seen() -> None:
    seen = datetime(2026, 12, 3, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 2 Dec in UTC
    change = ChangeEvent(sync_run_id=1, nct_id=DM, kind="status", field="overallStatus",
                         summary="Status", detected_at=seen, last_update_posted="2026-11-21")

    assert change.posted_on == date(2026, 11, 21)
    assert "posted_on" not in change.model_dump()  # a property, never a column
    for missing in (None, "", "21 November", "2026-13-01"):
        change.last_update_posted = missing
        assert change.posted_on == date(2026, 12, 2)
    change.detected_at = datetime(2026, 12, 3, 23, 59)  # naive, as SQLite returns it: UTC
    assert change.posted_on == date(2026, 12, 3)


def test_versions_posted_lists_registry_updates_of_tracked_studies_in_a_window(
        database_url: str) -> None:
    store = snapshot(database_url)

    assert store.versions_posted(date(2022, 11, 1), date(2022, 12, 1)) == {
        DM: "2022-11-18"}  # DM's version posted 2022-11-18 (9 days after 2022-11-09)
    assert store.versions_posted(date(2022, 11, 9), date(2022, 11, 18)) == {DM: "2022-11-09"}
    assert store.versions_posted(date(2022, 11, 10), date(2022, 11, 18)) == {}
    assert store.versions_posted(date(2000, 1, 1), date(2100, 1, 1)) == {
        DM: "2022-11-18", IMNM: "2026-11-21"}  # the newest; IBM is no longer tracked
    store.close()


def test_earliest_records_are_each_studys_first_stored_version(database_url: str) -> None:
    store = snapshot(database_url)

    first = store.earliest_records([DM, IMNM, IBM, DM, "NCT09999999"])

    assert sorted(first) == [IBM, DM, IMNM]
    assert first == {nct_id: load_study(nct_id) for nct_id in (DM, IMNM, IBM)}
    assert store.earliest_records([]) == {}
    store.close()


def test_the_newest_event_id_and_the_registry_day_the_tracker_started_from(
        database_url: str) -> None:
    store = Store.open(database_url, create=True)
    assert (store.newest_event_id(), store.watching_since()) == (0, None)
    store.close()
    store = snapshot(database_url)

    assert store.newest_event_id() == max(e.id or 0 for e in store.changes()) == 4
    first_ok = runs.last_sync(store.db, RunStatus.OK)
    assert first_ok is not None and first_ok.data_timestamp is None  # none recorded:
    assert store.watching_since() == as_utc(first_ok.started_at).date()  # the day it ran
    later = runs.begin_sync(store.db, "myositis")
    runs.finish_sync(store.db, later, RunStatus.OK, data_timestamp="2026-11-15T09:00:05")
    assert store.watching_since() == as_utc(first_ok.started_at).date()  # the first one counts
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM sync_run"))
    run = runs.begin_sync(store.db, "myositis")
    runs.finish_sync(store.db, run, RunStatus.OK, data_timestamp="2026-11-15T09:00:05")
    assert store.watching_since() == date(2026, 11, 15)  # the registry's day, not the run's
    store.close()


def test_a_weeks_report_keeps_when_it_was_first_written(database_url: str) -> None:
    store = Store.open(database_url, create=True)
    ended = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert store.report_weeks() == {}

    store.mark_report_written("2026-W47", ended, 12)
    store.mark_report_written("2026-W48", ended + timedelta(days=7), 20)
    store.mark_report_written("2026-W47", ended + timedelta(days=7), 20)  # seen late: rewritten

    week = store.report_weeks()["2026-W47"]
    assert (week.first_written_at, week.last_written_at, week.last_event_id) == \
        (ended, ended + timedelta(days=7), 20)
    assert list(store.report_weeks()) == ["2026-W47", "2026-W48"]
    assert store.report_weeks()["2026-W48"].first_written_at == ended + timedelta(days=7)
    store.close()


def test_a_record_is_stored_as_a_zstd_frame_and_read_back_equal() -> None:
    study = load_study("NCT04078230")
    blob = compress(study)
    assert blob.startswith(ZSTD_MAGIC)
    assert decompress(blob) == study


def test_a_record_stored_by_zlib_before_is_still_read() -> None:
    study = load_study("NCT04078230")
    legacy = zlib.compress(json.dumps(study, ensure_ascii=False, separators=(",", ":")).encode())
    assert legacy[:1] == b"\x78"
    assert decompress(legacy) == study


def test_old_zlib_and_new_zstd_versions_diff_against_each_other(settings: Settings,
                                                                store: Store) -> None:
    study = load_study("NCT04078230")
    with store.transaction() as tx:
        old, new = tx.add_versions([
            {"nct_id": "NCT04078230", "content_hash": content_hash(study), "sync_run_id": 1,
             "last_update_posted": None, "fetched_at": datetime.now(UTC),
             "record": zlib.compress(json.dumps(study).encode())},
            {"nct_id": "NCT04078230", "content_hash": content_hash(study), "sync_run_id": 1,
             "last_update_posted": None, "fetched_at": datetime.now(UTC),
             "record": compress(study)}])
    assert store.record(old) == store.record(new) == study


def test_a_blob_in_neither_format_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="neither zstd nor zlib"):
        decompress(b"{}")
