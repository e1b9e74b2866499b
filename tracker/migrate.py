"""The database schema's revision, and the one way to bring it up to date.

The migrations live in `tracker/migrations` and run through Alembic, configured here in code
(no alembic.ini, logging left alone). `upgrade` runs in one transaction under a lock, so two
processes starting at once migrate once, and a failed migration leaves the database as it was.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from functools import cache
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from tracker.errors import ConfigError

FIRST = "0001"
# The first release's tables: every database the tracker made before migrations has them all.
FIRST_TABLES = frozenset({"study", "study_version", "change_event", "sync_run", "sync_listing"})
TRACKER_TABLES = FIRST_TABLES | {"subscriber", "outbox", "used_token", "job_run"}
# Key for pg_advisory_xact_lock: "migrate" in ASCII, apart from tracker.lock's keys.
PG_LOCK_KEY = 0x6D696772617465


class SchemaState(StrEnum):
    """Where a database stands against this tracker's migrations."""

    EMPTY = "empty"  # no tracker tables at all
    LEGACY = "legacy"  # tracker tables from before migrations: no alembic_version
    BEHIND = "behind"
    CURRENT = "current"
    AHEAD = "ahead"  # a revision this tracker does not know: written by a newer one


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's settings for the shipped migrations; env.py runs them on `connection`."""
    # Alembic's own messages (upgrade and stamp print none) never reach the terminal.
    config = Config(stdout=io.StringIO())
    folder = str(resources.files("tracker") / "migrations")
    config.set_main_option("script_location", folder.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of the tracker knows."""
    revision = _scripts().get_current_head()
    assert revision is not None
    return revision


def current(bind: Engine | Connection) -> str | None:
    """The database's revision; None if it has no alembic_version (empty, or legacy)."""
    with _reported(bind, "read"), _connected(bind) as conn:
        return _revision(conn)


def state(engine: Engine) -> SchemaState:
    """Where the database stands against this tracker's migrations; reads only."""
    with _reported(engine, "read"), engine.connect() as conn:
        return _state(conn)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to `head()`; returns the revisions before and after.

    Empty: every migration runs. Legacy: stamped 0001, then upgraded (0002 adds only what is
    missing). Current: nothing happens. Ahead: ConfigError, and nothing is touched. A database
    error becomes a one-line ConfigError, with everything rolled back.

    A current database is recognised by reading alone, so starting a command never waits
    for another process's write transaction; the lock is taken only when there is work.
    """
    with _reported(engine, "upgrade"), engine.connect() as conn:
        if _state(conn) is SchemaState.CURRENT:
            return head(), head()
    with _reported(engine, "upgrade"), engine.begin() as conn:
        _lock(conn)
        before = _revision(conn)
        found = _state(conn)
        if found is SchemaState.AHEAD:
            raise ConfigError(
                f"The database at {_url(engine)} was upgraded by a newer version of the "
                f"tracker (revision {before}); this version knows up to {head()}. "
                "Upgrade the tracker."
            )
        if found is SchemaState.CURRENT:
            return before, head()
        config = alembic_config(conn)
        if found is SchemaState.LEGACY:
            _require_first_tables(conn)
            command.stamp(config, FIRST)
        command.upgrade(config, "head")
        return before, head()


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _state(conn: Connection) -> SchemaState:
    revision = _revision(conn)
    if revision is None:
        tables = set(inspect(conn).get_table_names())
        return SchemaState.LEGACY if tables & TRACKER_TABLES else SchemaState.EMPTY
    if revision == head():
        return SchemaState.CURRENT
    known = {script.revision for script in _scripts().walk_revisions()}
    return SchemaState.BEHIND if revision in known else SchemaState.AHEAD


def _lock(conn: Connection) -> None:
    """Take the lock that makes a concurrent upgrade wait, released when the transaction ends.

    SQLite: BEGIN IMMEDIATE takes the write lock at once and, unlike the driver's default,
    makes the DDL part of the transaction. PostgreSQL: a transaction-level advisory lock.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})


def _require_first_tables(conn: Connection) -> None:
    """A legacy database is stamped 0001 only if it really holds the first release's tables."""
    missing = FIRST_TABLES - set(inspect(conn).get_table_names())
    if missing:
        raise ConfigError(
            f"The database at {_url(conn)} holds some of the tracker's tables but not "
            f"{', '.join(sorted(missing))}, so it was not made by the tracker. "
            "Check TRACKER_DATABASE_URL."
        )


@cache
def _scripts() -> ScriptDirectory:
    """The shipped migrations, read once: they cannot change while the tracker runs."""
    return ScriptDirectory.from_config(alembic_config())


@contextmanager
def _connected(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


@contextmanager
def _reported(bind: Engine | Connection, doing: str) -> Iterator[None]:
    """Database errors become one line naming the database, without the SQL."""
    try:
        yield
    except (SQLAlchemyError, CommandError) as error:
        raise ConfigError(f"Cannot {doing} the database at {_url(bind)}: {_first_line(error)}"
                          ) from error


def _url(bind: Engine | Connection) -> str:
    return bind.engine.url.render_as_string(hide_password=True)


def _first_line(error: BaseException) -> str:
    message = str(getattr(error, "orig", None) or error).strip()
    return message.splitlines()[0] if message else type(error).__name__
