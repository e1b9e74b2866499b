"""Schema migrations: every database the tracker ever made reaches today's models, once.

Each specification runs on SQLite and on PostgreSQL (when TRACKER_TEST_POSTGRES_URL is set).
"Matches the models" means Alembic's autogenerate comparison finds nothing to do.
"""

from __future__ import annotations

import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, inspect, select, text
from sqlmodel import SQLModel

from tests.conftest import POSTGRES_URL, load_study
from tracker import staging  # noqa: F401  (its tables too: the models hold every table)
from tracker.errors import ConfigError
from tracker.migrate import SchemaState, alembic_config, current, head, state, upgrade
from tracker.record import compact_json
from tracker.runs import RUN
from tracker.store import EVENT, STUDY, VERSION

# What the first release wrote: naive times, meaning UTC.
FIRST_SEEN = datetime(2026, 11, 22, 3, 18)
# The columns 0002 adds to the first release's study table.
STUDY_ADDITIONS = ("subtypes", "therapies", "tag_evidence", "recruiting", "children",
                   "min_age_years", "max_age_years", "recruiting_countries", "recruiting_sites",
                   "site_points", "vocabulary")
# A tracker process opening the database at a given moment; prints what upgrade returned.
OPEN_AT = """
import sys, time
from sqlalchemy import create_engine
from tracker.migrate import upgrade
engine = create_engine(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(upgrade(engine))
"""


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each kind; on PostgreSQL, emptied again afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracker.db'}"
    elif not POSTGRES_URL:
        pytest.skip("set TRACKER_TEST_POSTGRES_URL to run against PostgreSQL")
    else:
        url = POSTGRES_URL
    engine = create_engine(url)
    drop_everything(engine)
    yield engine
    drop_everything(engine)
    engine.dispose()


def drop_everything(engine: Engine) -> None:
    with engine.begin() as conn:
        for view in inspect(conn).get_view_names():
            conn.execute(text(f'DROP VIEW "{view}"'))
        found = sa.MetaData()
        found.reflect(conn)
        found.drop_all(conn)


def differences(engine: Engine) -> list[Any]:
    """What Alembic would still change to make the database match the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        return list(compare_metadata(context, SQLModel.metadata))


def migrate_to(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def insert(conn: Connection, table: str, **values: Any) -> None:
    """A row shaped like an older schema, written without today's models."""
    conn.execute(sa.table(table, *map(sa.column, values)).insert().values(values))


def insert_first_release_rows(conn: Connection) -> None:
    insert(conn, "sync_run", started_at=FIRST_SEEN, finished_at=FIRST_SEEN, status="ok",
           mode="baseline", query="myositis", requests=1, fetched=1, new=1, changed=0,
           removed=0, unchanged=0, reformatted=0, events=1)
    insert(conn, "study", nct_id="NCT00000001", brief_title="Rituximab in myositis",
           overall_status="RECRUITING", has_results=False, site_count=3,
           content_hash="h" * 64, version_id=1, first_seen_at=FIRST_SEEN,
           last_changed_at=FIRST_SEEN)
    insert(conn, "study_version", nct_id="NCT00000001", content_hash="h" * 64, sync_run_id=1,
           fetched_at=FIRST_SEEN, record=b"\x78\x9c\x03\x00\x00\x00\x00\x01")
    insert(conn, "change_event", sync_run_id=1, nct_id="NCT00000001", kind="new",
           field="", summary="New study", detected_at=FIRST_SEEN)


def make_legacy_database(conn: Connection) -> None:
    """What the hand-written upgrade left at the e-mail release: the first release's tables,
    the tag columns added nullable (as store.upgrade_schema did), the mail tables as
    create_all made them then (subscriber without weekday and served_at), no job_run, and no
    alembic_version."""
    command.upgrade(alembic_config(conn), "0001")
    conn.execute(text("DROP TABLE alembic_version"))
    for column in STUDY.columns:
        if column.name in STUDY_ADDITIONS:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f'ALTER TABLE study ADD COLUMN "{column.name}" {kind}'))
    conn.execute(text("CREATE INDEX ix_study_recruiting ON study (recruiting)"))
    conn.execute(text('ALTER TABLE change_event ADD COLUMN "plain" TEXT'))
    for table in ("subscriber", "outbox", "used_token"):
        SQLModel.metadata.tables[table].create(conn)
    for column_name in ("weekday", "served_at"):
        conn.execute(text(f'ALTER TABLE subscriber DROP COLUMN "{column_name}"'))
    conn.execute(text("DROP INDEX ix_outbox_key"))  # the outbox had no key then
    conn.execute(text('ALTER TABLE outbox DROP COLUMN "key"'))
    # The outbox then stored the message and both of its bodies, uncompressed.
    conn.execute(text('ALTER TABLE outbox DROP COLUMN "content"'))
    blob = sa.LargeBinary().compile(dialect=conn.dialect)
    conn.execute(text(f'ALTER TABLE outbox ADD COLUMN "message" {blob}'))
    for body in ("text_body", "html_body"):
        conn.execute(text(f'ALTER TABLE outbox ADD COLUMN "{body}" TEXT'))


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_an_empty_database_is_upgraded_to_the_models(engine: Engine,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    assert state(engine) is SchemaState.EMPTY

    assert upgrade(engine) == (None, head())

    assert state(engine) is SchemaState.CURRENT
    assert current(engine) == head() == "0009"
    assert differences(engine) == []
    assert capfd.readouterr() == ("", "")  # Alembic neither prints nor sets up logging output


def test_the_first_release_is_upgraded_with_its_rows_kept(engine: Engine) -> None:
    migrate_to(engine, "0001")
    with engine.begin() as conn:
        insert_first_release_rows(conn)

    assert upgrade(engine) == ("0001", head())

    assert differences(engine) == []
    with engine.connect() as conn:
        study = conn.execute(select(STUDY)).mappings().one()
        version = conn.execute(select(VERSION)).mappings().one()
        event = conn.execute(select(EVENT)).mappings().one()
        run = conn.execute(select(RUN)).mappings().one()
    assert study["brief_title"] == "Rituximab in myositis"
    assert study["site_count"] == 3
    assert study["first_seen_at"] == FIRST_SEEN.replace(tzinfo=UTC)  # naive times were UTC
    assert study["recruiting"] is False and study["children"] is False
    assert all(study[name] is None for name in STUDY_ADDITIONS
               if name not in ("recruiting", "children"))
    assert version["record"] == b"\x78\x9c\x03\x00\x00\x00\x00\x01"
    assert version["fetched_at"] == FIRST_SEEN.replace(tzinfo=UTC)
    assert (event["summary"], event["plain"]) == ("New study", None)
    assert (run["status"], run["mode"], run["new"], run["events"]) == ("ok", "baseline", 1, 1)


def test_a_database_from_before_migrations_is_upgraded_in_place(engine: Engine) -> None:
    with engine.begin() as conn:
        make_legacy_database(conn)
        insert_first_release_rows(conn)
        insert(conn, "study", nct_id="NCT00000002", brief_title="Untagged yet",
               has_results=False, site_count=0, content_hash="g" * 64,
               first_seen_at=FIRST_SEEN, last_changed_at=FIRST_SEEN)
        conn.execute(text("UPDATE study SET recruiting = true, subtypes = 'dm' "
                          "WHERE nct_id = 'NCT00000001'"))
        insert(conn, "subscriber", email="ana@example.org", children=False,
               recruiting_only=True, changes="all", cadence="daily", last_event_id=1,
               created_at=FIRST_SEEN.replace(tzinfo=UTC))
        insert(conn, "outbox", kind="digest", subscriber_id=1, recipient="ana@example.org",
               subject="Myositis trials: 1 update", message_id="<digest.1.0.2@example.org>",
               message=b"...", text_body="", html_body="", status="sent", attempts=1,
               events=1, window_end=2, created_at=FIRST_SEEN.replace(tzinfo=UTC))
    assert state(engine) is SchemaState.LEGACY

    assert upgrade(engine) == (None, head())

    assert differences(engine) == []
    assert "alembic_version" in table_names(engine)
    with engine.connect() as conn:
        flags = conn.execute(text("SELECT nct_id, recruiting, children, subtypes FROM study "
                                  "ORDER BY nct_id")).all()
        subscriber = conn.execute(text("SELECT email, recruiting_only, weekday, served_at "
                                       "FROM subscriber")).one()
    assert [tuple(row) for row in flags] == [("NCT00000001", True, False, "dm"),
                                             ("NCT00000002", False, False, None)]
    assert tuple(subscriber) == ("ana@example.org", True, None, None)
    with engine.connect() as conn:  # the key the tracker now computes for that same digest
        assert conn.execute(text("SELECT key FROM outbox")).scalar_one() == "digest.1.0.2"
        content = conn.execute(text("SELECT content FROM outbox")).scalar_one()
    assert zlib.decompress(content) == b"..."  # the message kept, compressed, once


def test_0006_dates_every_event_and_fills_the_new_study_facts_from_the_records(
        engine: Engine) -> None:
    migrate_to(engine, "0005")
    late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # late enough for a time zone to show
    with engine.begin() as conn:
        for number, (nct_id, record) in enumerate([
                # Records stored before 0006 were zlib streams (store.compress now writes zstd).
                ("NCT04078230", zlib.compress(compact_json(load_study("NCT04078230")))),
                ("NCT02248896", zlib.compress(compact_json(load_study("NCT02248896")))),
                ("NCT00000001", b"\x78\x9c\x03\x00\x00\x00\x00\x01")], start=1):
            insert(conn, "study_version", nct_id=nct_id, content_hash="h" * 64,
                   sync_run_id=1, fetched_at=late, record=record)
            insert(conn, "study", nct_id=nct_id, brief_title="", has_results=False,
                   site_count=0, recruiting=False, children=False, content_hash="h" * 64,
                   version_id=number, first_seen_at=late, last_changed_at=late)
        for posted in ("2026-11-20", None):
            insert(conn, "change_event", sync_run_id=1, nct_id="NCT04078230", kind="removed",
                   field="", summary="Removed", detected_at=late, last_update_posted=posted)

    assert upgrade(engine) == ("0005", head())

    assert differences(engine) == []
    with engine.connect() as conn:
        posted = conn.execute(select(EVENT.c.last_update_posted).order_by(EVENT.c.id))
        facts = conn.execute(select(STUDY.c.nct_id, STUDY.c.sponsor_class,
                                    STUDY.c.start_date_type, STUDY.c.status_verified,
                                    STUDY.c.first_submitted).order_by(STUDY.c.nct_id))
        assert list(posted.scalars()) == ["2026-11-20", "2026-11-22"]
        assert [tuple(row) for row in facts] == [
            ("NCT00000001", None, None, None, None),  # a record that cannot be read
            ("NCT02248896", "INDUSTRY", None, "2014-09", "2014-09-24"),  # no start date type
            ("NCT04078230", "OTHER", "ACTUAL", "2022-01", "2019-08-26"),
        ]
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("change_event")}
    assert indexes["ix_change_event_posted"] == ["last_update_posted"]
    assert {c["name"] for c in inspect(engine).get_columns("report_week")} == \
        {"week", "first_written_at", "last_written_at", "last_event_id"}


def test_0009_keeps_every_study_with_its_fingerprint_unknown(engine: Engine) -> None:
    migrate_to(engine, "0008")
    with engine.begin() as conn:
        insert(conn, "study", nct_id="NCT00000001", brief_title="Rituximab in myositis",
               has_results=False, site_count=3, recruiting=False, children=False,
               content_hash="h" * 64, version_id=1, first_seen_at=FIRST_SEEN,
               last_changed_at=FIRST_SEEN)
        # a development database may have one of the columns already: it is looked for first
        conn.execute(text('ALTER TABLE sync_listing ADD COLUMN "received_hash" VARCHAR(64)'))

    assert upgrade(engine) == ("0008", head())

    assert differences(engine) == []
    with engine.connect() as conn:
        study = conn.execute(select(STUDY)).mappings().one()
    assert (study["content_hash"], study["received_hash"]) == ("h" * 64, None)


def test_a_second_upgrade_does_nothing(engine: Engine) -> None:
    upgrade(engine)

    assert upgrade(engine) == (head(), head())
    assert state(engine) is SchemaState.CURRENT


def test_a_database_from_a_newer_tracker_is_refused_and_left_alone(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    tables = table_names(engine)

    with pytest.raises(ConfigError) as refused:
        upgrade(engine)

    url = engine.url.render_as_string(hide_password=True)
    assert str(refused.value) == (f"The database at {url} was upgraded by a newer version of "
                                  "the tracker (revision 0099); this version knows up to 0009. "
                                  "Upgrade the tracker.")
    assert current(engine) == "0099"
    assert table_names(engine) == tables


def test_a_failed_upgrade_leaves_the_database_as_it_was(engine: Engine) -> None:
    migrate_to(engine, "0001")
    with engine.begin() as conn:
        insert_first_release_rows(conn)
        # In 0002's way at its last step: a view named job_run, which cannot be indexed.
        conn.execute(text("CREATE VIEW job_run AS SELECT nct_id FROM study"))

    with pytest.raises(ConfigError) as failed:
        upgrade(engine)

    assert str(failed.value).startswith("Cannot upgrade the database at ")
    assert "\n" not in str(failed.value)
    assert current(engine) == "0001"
    columns = {c["name"] for c in inspect(engine).get_columns("study")}
    assert not columns & set(STUDY_ADDITIONS)  # the steps before the failure were undone
    assert "subscriber" not in table_names(engine)


@pytest.mark.slow
def test_trackers_starting_at_once_migrate_once(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    at = time.time() + 2  # both processes are ready by then and start together
    trackers = [subprocess.Popen([sys.executable, "-c", OPEN_AT, url, str(at)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [tracker.communicate(timeout=60) for tracker in trackers]

    results = sorted(out.strip() for out, _ in outputs)
    assert results == sorted([str((None, head())), str((head(), head()))]), outputs
    assert differences(engine) == []


def test_state_tells_each_kind_of_database_apart(engine: Engine) -> None:
    assert state(engine) is SchemaState.EMPTY
    migrate_to(engine, "0001")
    assert state(engine) is SchemaState.BEHIND
    migrate_to(engine, "head")
    assert state(engine) is SchemaState.CURRENT
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    assert state(engine) is SchemaState.AHEAD
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    assert state(engine) is SchemaState.LEGACY
    assert current(engine) is None


def test_some_tracker_tables_without_the_first_release_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE study (nct_id VARCHAR(11) PRIMARY KEY)"))
    assert state(engine) is SchemaState.LEGACY

    with pytest.raises(ConfigError, match="but not change_event, study_version, sync_listing, "
                                          "sync_run, so it was not made by the tracker"):
        upgrade(engine)

    assert table_names(engine) == {"study"}


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    engine = create_engine(f"sqlite:///{tmp_path / 'not-a-folder' / 'tracker.db'}")

    with pytest.raises(ConfigError) as failed:
        upgrade(engine)
    with pytest.raises(ConfigError, match=r"^Cannot read the database at sqlite:///"):
        state(engine)

    assert str(failed.value) == (f"Cannot upgrade the database at sqlite:///{tmp_path}/"
                                 "not-a-folder/tracker.db: unable to open database file")
