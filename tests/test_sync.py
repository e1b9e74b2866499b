"""The sync pipeline against a real database (SQLite and PostgreSQL) and the local fake API."""

from __future__ import annotations

import copy
import gc
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import load_study, updated
from tests.fakeapi import Registry
from tracker import runs
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.errors import ApiError, IncompleteSync, LockBusy, MalformedResponse, RetriesExhausted
from tracker.lock import Lock, hold
from tracker.store import EVENT, STUDY, VERSION, Store
from tracker.sync import removal_posted, sync
from tracker.views import sync_summary

NEXT_DAY = "2026-11-21T09:00:05"


def snapshot(store: Store) -> dict[str, list[Any]]:
    """Every row of the snapshot's tables, for before/after comparisons."""
    with store.engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                for t in (STUDY, VERSION, EVENT)}


def refresh(registry: Registry, stamp: str = NEXT_DAY) -> None:
    registry.data_timestamp = stamp


def set_status(registry: Registry, nct_id: str, status: str) -> None:
    study = updated(registry.studies[nct_id])
    study["protocolSection"]["statusModule"]["overallStatus"] = status
    registry.put(study)


def test_first_sync_is_a_baseline_without_change_events(settings: Settings, store: Store,
                                                        client: CtGovClient) -> None:
    result = sync(settings, store, client)

    assert (result.mode, result.status, result.listed, result.new) == ("baseline", "ok", 7, 7)
    assert result.events == 0
    assert store.changes() == []
    assert store.counts().tracked == 7
    assert store.study("NCT04078230").overall_status == "RECRUITING"
    assert runs.last_sync(store.db, "ok").data_timestamp == "2026-11-20T09:00:05"


def test_sync_is_skipped_when_the_registry_has_not_refreshed(settings: Settings, store: Store,
                                                            client: CtGovClient,
                                                            registry: Registry) -> None:
    sync(settings, store, client)
    before = len(registry.log)

    result = sync(settings, store, client)

    assert result.mode == "skipped"
    assert result.requests == 1
    assert [path for path, _, _ in registry.log[before:]] == ["/api/v2/version"]


def test_incremental_sync_fetches_only_updated_studies_and_records_the_change(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    study = updated(registry.studies["NCT07725679"])
    status = study["protocolSection"]["statusModule"]
    status["overallStatus"] = "RECRUITING"
    status["lastUpdatePostDateStruct"]["date"] = "2026-11-20"  # posted after the last sync
    registry.put(study)
    refresh(registry)
    start = len(registry.log)

    result = sync(settings, store, client)

    assert (result.mode, result.changed, result.new, result.removed) == ("incremental", 1, 0, 0)
    assert result.unchanged == 6
    [event] = store.changes()
    assert (event.nct_id, event.kind) == ("NCT07725679", "status")
    assert event.summary == "Status: Not yet recruiting -> Recruiting"
    studies_requests = [p for path, p, _ in registry.log[start:] if path.endswith("/studies")]
    ranges = [p["filter.advanced"] for p in studies_requests if "filter.advanced" in p]
    assert ranges and all(r == "AREA[LastUpdatePostDate]RANGE[2026-11-17,MAX]" for r in ranges)
    assert all(p.get("fields") == "NCTId|LastUpdatePostDate"
               for p in studies_requests if "filter.advanced" not in p)
    assert not any("filter.ids" in p for p in studies_requests)
    assert store.study("NCT07725679").overall_status == "RECRUITING"
    assert store.version_count("NCT07725679") == 2


def test_an_update_older_than_the_window_is_still_caught_by_the_listing(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    set_status(registry, "NCT00874328", "RECRUITING")  # lastUpdatePostDate moves one day only
    refresh(registry)

    result = sync(settings, store, client)

    assert result.changed == 1
    assert [e.kind for e in store.changes()] == ["status"]
    assert any(p.get("filter.ids") == "NCT00874328" for p in registry.requests("/studies"))


def test_new_and_removed_studies_are_reported(settings: Settings, store: Store,
                                              client: CtGovClient, registry: Registry) -> None:
    newcomer = load_study("NCT02248896")
    registry.drop("NCT02248896")
    sync(settings, store, client)
    registry.put(newcomer)
    registry.drop("NCT00987428")
    refresh(registry)

    result = sync(settings, store, client)

    assert (result.new, result.removed) == (1, 1)
    kinds = {(e.nct_id, e.kind) for e in store.changes()}
    assert kinds == {("NCT02248896", "new"), ("NCT00987428", "removed")}
    assert store.study("NCT00987428").removed_at is not None
    assert store.counts().tracked == 6
    posted = {e.kind: (e.last_update_posted, e.posted_on) for e in store.changes()}
    assert posted["new"] == ("2014-09-25", date(2014, 9, 25))  # the record's own date
    assert posted["removed"] == ("2026-11-21", date(2026, 11, 21))  # the registry data's day


def test_a_removal_is_dated_by_the_registry_data_that_no_longer_has_the_study() -> None:
    seen = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)
    assert removal_posted("2026-11-21T09:00:05", seen) == "2026-11-21"
    assert removal_posted(None, seen) == "2026-12-03"
    assert removal_posted("not a time", seen) == "2026-12-03"


def test_a_removed_study_that_matches_again_is_reported_new(settings: Settings, store: Store,
                                                           client: CtGovClient,
                                                           registry: Registry) -> None:
    sync(settings, store, client)
    gone = registry.studies["NCT00987428"]
    registry.drop("NCT00987428")
    refresh(registry)
    sync(settings, store, client)
    registry.put(gone)
    refresh(registry, "2026-11-22T09:00:05")

    result = sync(settings, store, client)

    assert result.new == 1
    assert store.changes(kinds=["new"])[0].nct_id == "NCT00987428"
    assert store.study("NCT00987428").removed_at is None


def test_reformatting_without_a_new_update_date_is_stored_silently(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    study = copy.deepcopy(registry.studies["NCT04078230"])
    summary = study["protocolSection"]["descriptionModule"]
    summary["briefSummary"] = summary["briefSummary"].replace(" ", "  ", 1)
    registry.put(study)
    refresh(registry)

    result = sync(settings, store, client, full=True)

    assert (result.reformatted, result.changed, result.events) == (1, 0, 0)
    assert store.changes() == []
    assert store.version_count("NCT04078230") == 2


def test_a_moved_version_holder_is_not_even_a_new_version(settings: Settings, store: Store,
                                                          client: CtGovClient,
                                                          registry: Registry) -> None:
    sync(settings, store, client)
    for study in registry.studies.values():
        study["derivedSection"]["miscInfoModule"]["versionHolder"] = "2026-11-21"
    refresh(registry)

    result = sync(settings, store, client, full=True)

    assert (result.unchanged, result.reformatted, result.changed) == (7, 0, 0)
    assert store.counts().versions == 7


def test_full_sync_reports_the_same_changes_as_incremental(settings: Settings, store: Store,
                                                           client: CtGovClient,
                                                           registry: Registry) -> None:
    sync(settings, store, client)
    set_status(registry, "NCT07725679", "RECRUITING")
    refresh(registry)

    result = sync(settings, store, client, full=True)

    assert (result.mode, result.changed) == ("full", 1)
    assert [e.summary for e in store.changes()] == ["Status: Not yet recruiting -> Recruiting"]
    assert not any("fields" in p for p in registry.requests("/studies")[-3:])


def test_changing_the_query_starts_a_new_baseline(settings: Settings, store: Store,
                                                  client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    registry.drop("NCT00987428")
    broader = Settings(**{**settings.__dict__, "query": "myositis OR myopathy"})

    result = sync(broader, store, client)

    assert result.mode == "baseline"
    assert store.changes() == []
    assert store.study("NCT00987428").removed_at is not None


FAULTS = {
    "server error on page 2": (dict(status=503, times=99), RetriesExhausted),
    "rate limited on page 2": (dict(status=429, headers={"Retry-After": "1"}, times=99),
                               RetriesExhausted),
    "truncated page 2": (dict(truncate=True, times=99), RetriesExhausted),
    "malformed JSON on page 2": (dict(status=200, body=b'{"studies":[{"protocolSection":',
                                      times=99), MalformedResponse),
    "refused page 2": (dict(status=400, body=b"`pageToken` is invalid"), ApiError),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_a_fault_on_any_page_changes_nothing(fault: str, settings: Settings, store: Store,
                                             client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    set_status(registry, "NCT07725679", "RECRUITING")
    registry.drop("NCT00987428")
    refresh(registry)
    before = snapshot(store)
    options, error = FAULTS[fault]
    registry.fail(match=lambda path, params: "pageToken" in params, **options)

    with pytest.raises(error):
        sync(settings, store, client, full=True)

    assert snapshot(store) == before
    assert store.study("NCT00987428").removed_at is None
    failed = runs.last_sync(store.db, "failed")
    assert failed is not None and failed.error
    registry.faults.clear()
    result = sync(settings, store, client)
    assert (result.changed, result.removed) == (1, 1)


def test_a_short_listing_changes_nothing(settings: Settings, store: Store, client: CtGovClient,
                                         registry: Registry) -> None:
    sync(settings, store, client)
    refresh(registry)
    before = snapshot(store)
    real_answer = registry.answer

    def lying_total(path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        status, kind, body = real_answer(path, params)
        return status, kind, body.replace(b'"totalCount":7', b'"totalCount":9')

    registry.answer = lying_total  # type: ignore[method-assign]

    with pytest.raises(IncompleteSync, match="announced 9 studies but sent 7"):
        sync(settings, store, client)

    assert snapshot(store) == before
    assert store.counts().removed == 0


def test_a_registry_refresh_during_the_sync_changes_nothing(settings: Settings, store: Store,
                                                            client: CtGovClient,
                                                            registry: Registry) -> None:
    sync(settings, store, client)
    set_status(registry, "NCT07725679", "RECRUITING")
    refresh(registry)
    before = snapshot(store)
    real_answer = registry.answer

    def refresh_midway(path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        if path.endswith("/studies"):
            registry.data_timestamp = "2026-11-22T09:00:05"
        return real_answer(path, params)

    registry.answer = refresh_midway  # type: ignore[method-assign]

    with pytest.raises(IncompleteSync, match="refreshed its data during the sync"):
        sync(settings, store, client)
    assert snapshot(store) == before


def test_a_sync_hands_the_garbage_collector_back_as_it_found_it(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    """During a sync the collector leaves the objects that were alive before it alone; after
    it, failed or not, every object is collectable again."""
    frozen_during: list[int] = []
    real_answer = registry.answer

    def watching(path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        frozen_during.append(gc.get_freeze_count())
        return real_answer(path, params)

    registry.answer = watching  # type: ignore[method-assign]
    sync(settings, store, client)
    assert min(frozen_during) > 0
    assert gc.get_freeze_count() == 0

    registry.fail(match=lambda path, params: path.endswith("/studies"), status=400)
    refresh(registry)
    with pytest.raises(ApiError):
        sync(settings, store, client)
    assert gc.get_freeze_count() == 0


def test_a_second_sync_is_refused_while_one_runs(settings: Settings, store: Store,
                                                 client: CtGovClient,
                                                 registry: Registry) -> None:
    with hold(store.db, Lock.SYNC), \
            pytest.raises(LockBusy, match="Another sync is already running"):
        sync(settings, store, client)
    assert registry.log == []


def test_a_run_left_running_by_a_killed_process_is_marked_interrupted(settings: Settings,
                                                                 store: Store,
                                                                 client: CtGovClient) -> None:
    orphan = runs.begin_sync(store.db, settings.query)

    sync(settings, store, client)

    with store.engine.connect() as conn:
        from tracker.runs import RUN
        row = conn.execute(select(RUN).where(RUN.c.id == orphan)).mappings().one()
    assert row["status"] == "interrupted"
    assert "Interrupted" in row["error"]
    assert runs.failures_before(store.db) == []  # not a failure of the registry or the network


def test_changes_come_newest_sync_first_and_in_diff_order_within_a_sync(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    study = updated(registry.studies["NCT07725679"])
    study["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    study["protocolSection"]["contactsLocationsModule"]["locations"] = [
        {"facility": "Hôpital Édouard Herriot", "status": "RECRUITING", "city": "Lyon",
         "country": "France", "geoPoint": {"lat": 45.74846, "lon": 4.84671}}]
    registry.put(study)
    refresh(registry)
    sync(settings, store, client)
    later = updated(registry.studies["NCT04078230"])
    later["protocolSection"]["statusModule"]["primaryCompletionDateStruct"] = {
        "date": "2028-06", "type": "ESTIMATED"}
    registry.put(later)
    refresh(registry, "2026-11-22T09:00:05")
    sync(settings, store, client)

    assert [(e.nct_id, e.summary) for e in store.changes()] == [
        ("NCT04078230", "Primary completion 2027-12-31 -> 2028-06"),
        ("NCT07725679", "Status: Not yet recruiting -> Recruiting"),
        ("NCT07725679", "New site: Lyon, France (Hôpital Édouard Herriot)"),
    ]


# --- removals: on the registry's word, and never en masse on one sync's say ------------------

EMPTY = b'{"totalCount":0,"studies":[]}'


def listing(path: str, params: dict[str, str]) -> bool:
    """The cheap ID listing of an incremental sync."""
    return path.endswith("/studies") and params.get("fields") == "NCTId|LastUpdatePostDate" \
        and "filter.ids" not in params


def test_an_empty_first_listing_page_removes_nothing(settings: Settings, store: Store,
                                                     client: CtGovClient,
                                                     registry: Registry) -> None:
    sync(settings, store, client)
    refresh(registry)
    before = snapshot(store)
    registry.fail(match=listing, status=200, body=EMPTY, times=1)

    with pytest.raises(IncompleteSync, match=r"listing left out 7 tracked trial\(s\) that its "
                                             r"search still finds"):
        sync(settings, store, client)

    assert snapshot(store) == before
    assert store.counts().removed == 0
    assert sync(settings, store, client).removed == 0  # the next sync recovers exactly
    assert store.changes() == []


def test_a_registry_that_answers_every_search_empty_has_its_removals_held(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    refresh(registry)
    registry.fail(match=lambda path, params: path.endswith("/studies"), status=200,
                  body=EMPTY, times=10_000)

    held = sync(settings, store, client)

    assert (held.held, held.removed, held.events) == (7, 0, 0)
    assert store.counts().tracked == 7 and store.changes() == []
    assert runs.last_sync(store.db).held == 7  # type: ignore[union-attr]
    registry.faults.clear()
    refresh(registry, "2026-11-22T09:00:05")
    healed = sync(settings, store, client)  # listed again: nothing happened, nothing said
    assert (healed.held, healed.removed) == (0, 0)
    assert store.changes() == [] and store.counts().tracked == 7


def test_a_study_gone_from_the_registry_is_removed_on_its_word(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    registry.drop("NCT00987428")
    registry.unmatch("NCT02803307")
    refresh(registry)

    result = sync(settings, store, client)

    assert (result.removed, result.held) == (2, 0)
    plain = {e.nct_id: e.summary for e in store.changes(kinds=["removed"])}
    assert plain == {
        "NCT00987428": "Removed: no longer on ClinicalTrials.gov",
        "NCT02803307": "Removed: no longer matches the tracked query on ClinicalTrials.gov"}
    asked = [p for p in registry.requests("/studies") if "filter.ids" in p]
    assert any("query.cond" in p for p in asked) and any("query.cond" not in p for p in asked)


def test_a_mass_removal_waits_for_a_later_refresh_to_confirm_it(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    leaving = ["NCT00874328", "NCT00987428", "NCT02210780", "NCT02248896"]
    for nct_id in leaving:
        registry.unmatch(nct_id)
    refresh(registry)

    first = sync(settings, store, client)
    refresh(registry, "2026-11-22T09:00:05")
    second = sync(settings, store, client)

    assert (first.held, first.removed) == (4, 0)
    assert (second.held, second.removed) == (0, 4)
    assert sorted(e.nct_id for e in store.changes(kinds=["removed"])) == leaving
    assert store.counts().tracked == 3


# --- records that cannot be read ------------------------------------------------------------

def test_a_record_that_cannot_be_read_is_kept_reported_and_skipped(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    broken = updated(registry.studies["NCT04078230"])
    broken["protocolSection"]["contactsLocationsModule"]["locations"] = {"city": "Lyon"}
    registry.put(broken)
    set_status(registry, "NCT07725679", "RECRUITING")
    refresh(registry)

    result = sync(settings, store, client)

    assert result.unreadable == [["NCT04078230", "locations is not a list"]]
    assert "1 record could not be read: NCT04078230, locations is not a list." \
        in sync_summary(result)
    assert [(e.nct_id, e.kind) for e in store.changes()] == [("NCT07725679", "status")]
    assert store.version_count("NCT04078230") == 2  # kept as received
    assert store.study("NCT04078230").overall_status == "RECRUITING"  # as before
    refresh(registry, "2026-11-22T09:00:05")
    again = sync(settings, store, client)
    assert again.unreadable == [["NCT04078230", "locations is not a list"]]
    assert store.version_count("NCT04078230") == 2  # not stored twice


def test_control_characters_from_the_registry_never_reach_the_database(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    noisy = updated(registry.studies["NCT04078230"])
    noisy["protocolSection"]["identificationModule"]["briefTitle"] = "Tofa\x00citinib\x07 in DM"
    registry.put(noisy)
    refresh(registry)

    sync(settings, store, client)

    assert store.study("NCT04078230").brief_title == "Tofacitinib in DM"
    stored = store.record(store.study("NCT04078230").version_id)
    assert stored["protocolSection"]["identificationModule"]["briefTitle"] == "Tofacitinib in DM"


def test_every_record_is_stored_as_received_and_reads_back_equal(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)

    for nct_id, served in registry.studies.items():
        study = store.study(nct_id)
        assert study.version_id is not None and store.record(study.version_id) == served


def test_a_treatment_added_by_its_code_is_named_as_patients_know_it(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> None:
    sync(settings, store, client)
    study = updated(registry.studies["NCT04078230"])
    arms = study["protocolSection"]["armsInterventionsModule"]
    arms["interventions"].append({"type": "DRUG", "name": "PF-06700841",
                                  "armGroupLabels": [arms["armGroups"][0]["label"]]})
    registry.put(study)
    registry.data_timestamp = "2026-11-21T09:00:05"
    sync(settings, store, client)

    (added,) = store.changes(kinds=["interventions"])
    assert added.plain is not None and "PF-06700841 (brepocitinib)" in added.plain
