"""A sync reads only the JSON it has not seen: a study whose JSON is the one its stored content
was computed from (its versionHolder aside) costs a fingerprint of its bytes, not a decode.

Every shortcut here must leave the snapshot as the full reading would: the same versions, the
same events, the same study rows. Runs against SQLite and PostgreSQL and the local fake API.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import updated
from tests.fakeapi import Registry
from tracker.config import Settings
from tracker.ctgov import CtGovClient, PageStudy
from tracker.record import Record
from tracker.store import EVENT, STUDY, VERSION, Store
from tracker.sync import sync

NEXT_DAY = "2026-11-21T09:00:05"
DAY_AFTER = "2026-11-22T09:00:05"


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The NCT IDs of the studies a sync decodes, in order (a spy on PageStudy.record)."""
    seen: list[str] = []
    record = PageStudy.record

    def spy(self: PageStudy) -> Record:
        seen.append(self.nct_id)
        return record(self)

    monkeypatch.setattr(PageStudy, "record", spy)
    yield seen


def history(store: Store) -> dict[str, list[Any]]:
    """Versions, events and each study's content hash and record version."""
    with store.engine.connect() as conn:
        return {
            "versions": sorted(tuple(r) for r in conn.execute(select(VERSION))),
            "events": sorted(tuple(r) for r in conn.execute(select(EVENT))),
            "studies": sorted(tuple(r) for r in conn.execute(
                select(STUDY.c.nct_id, STUDY.c.content_hash, STUDY.c.version_id,
                       STUDY.c.subtypes, STUDY.c.therapies, STUDY.c.tag_evidence))),
        }


def fingerprints(store: Store) -> dict[str, str | None]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(STUDY.c.nct_id, STUDY.c.received_hash)).all())


def reordered(study: dict[str, Any]) -> dict[str, Any]:
    """The same record with its top-level keys in reverse order: other JSON, same content."""
    return dict(reversed(list(copy.deepcopy(study).items())))


def test_every_study_stored_has_the_fingerprint_of_the_json_it_came_from(
        settings: Settings, store: Store, client: CtGovClient) -> None:
    sync(settings, store, client)

    found = fingerprints(store)
    assert len(found) == 7 and all(found.values())


def test_an_unchanged_study_in_a_full_sync_is_not_even_decoded(
        settings: Settings, store: Store, client: CtGovClient, decoded: list[str]) -> None:
    sync(settings, store, client)
    before = history(store)
    decoded.clear()

    result = sync(settings, store, client, full=True)

    assert decoded == []
    assert (result.fetched, result.unchanged, result.changed, result.events) == (7, 7, 0, 0)
    assert history(store) == before


def test_a_moved_version_holder_costs_no_decode_either(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        decoded: list[str]) -> None:
    sync(settings, store, client)
    before = history(store)
    for study in registry.studies.values():
        study["derivedSection"]["miscInfoModule"]["versionHolder"] = "2026-11-21"
    registry.data_timestamp = NEXT_DAY
    decoded.clear()

    result = sync(settings, store, client, full=True)

    assert decoded == []
    assert (result.unchanged, result.reformatted, result.changed) == (7, 0, 0)
    assert history(store) == before


def test_a_changed_study_is_read_and_diffed_as_before_while_the_others_are_skipped(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        decoded: list[str]) -> None:
    sync(settings, store, client)
    study = updated(registry.studies["NCT07725679"])
    study["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    registry.put(study)
    registry.data_timestamp = NEXT_DAY
    decoded.clear()

    result = sync(settings, store, client, full=True)

    assert decoded == ["NCT07725679"]
    assert [e.summary for e in store.changes()] == ["Status: Not yet recruiting -> Recruiting"]
    assert (result.changed, result.unchanged) == (1, 6)


def test_other_json_with_the_same_content_is_read_once_then_known(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        decoded: list[str]) -> None:
    sync(settings, store, client)
    before = history(store)
    registry.put(reordered(registry.studies["NCT04078230"]))
    registry.data_timestamp = NEXT_DAY
    decoded.clear()

    first = sync(settings, store, client, full=True)

    assert decoded == ["NCT04078230"]  # new JSON: read, found the same content
    assert (first.unchanged, first.reformatted, first.events) == (7, 0, 0)
    assert history(store) == before  # no version, no event, the same row
    registry.data_timestamp = DAY_AFTER
    decoded.clear()

    sync(settings, store, client, full=True)

    assert decoded == []  # its new fingerprint was kept


def test_a_study_stored_before_fingerprints_were_kept_is_read_as_before(
        settings: Settings, store: Store, client: CtGovClient, decoded: list[str]) -> None:
    sync(settings, store, client)
    with store.engine.begin() as conn:  # as rows from before migration 0009 are
        conn.execute(update(STUDY).values(received_hash=None))
    before = history(store)
    decoded.clear()

    result = sync(settings, store, client, full=True)

    assert sorted(decoded) == sorted(fingerprints(store))
    assert (result.unchanged, result.events) == (7, 0)
    assert history(store) == before
    assert all(fingerprints(store).values())  # filled in, so that next time
    decoded.clear()
    sync(settings, store, client, full=True)
    assert decoded == []


def test_a_record_that_cannot_be_read_is_read_and_reported_every_time(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        decoded: list[str]) -> None:
    sync(settings, store, client)
    broken = updated(registry.studies["NCT04078230"])
    broken["protocolSection"]["contactsLocationsModule"]["locations"] = {"city": "Lyon"}
    registry.put(broken)
    registry.data_timestamp = NEXT_DAY

    first = sync(settings, store, client, full=True)
    decoded.clear()
    registry.data_timestamp = DAY_AFTER
    again = sync(settings, store, client, full=True)

    assert first.unreadable == again.unreadable == [["NCT04078230", "locations is not a list"]]
    assert decoded == ["NCT04078230"]
    assert store.version_count("NCT04078230") == 2  # kept once, as received


def test_a_study_removed_and_listed_again_is_read_and_reported_new(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        decoded: list[str]) -> None:
    sync(settings, store, client)
    kept = registry.studies["NCT04078230"]
    registry.drop("NCT04078230")
    registry.data_timestamp = NEXT_DAY
    sync(settings, store, client)
    registry.put(kept)  # the same JSON as the fingerprint it was stored with
    registry.data_timestamp = DAY_AFTER
    decoded.clear()

    result = sync(settings, store, client, full=True)

    assert decoded == ["NCT04078230"]
    assert result.new == 1
    assert [e.kind for e in store.changes(nct_id="NCT04078230")][:1] == ["new"]
