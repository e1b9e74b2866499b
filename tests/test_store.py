"""The snapshot database: a database from before tags is upgraded and re-tagged, a new
vocabulary re-tags every study at the next sync, filters narrow by tag."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from tests.fakeapi import Registry
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.store import Store, StudyFilter
from tracker.sync import refresh_derived, sync
from tracker.tags import Tagger, load_vocabulary

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
    assert store.study("NCT02803307").therapies == "other"  # arimoclomol is in no class
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
                              "already enrolled"
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
