"""The database: a SQLite file by default, PostgreSQL when TRACKER_DATABASE_URL says so.

Opening is explicit about writing. Commands that change things open with `create=True`: the
SQLite folder is made if needed and the schema is brought up to date by the migrations. Commands
that only read never create anything: with no database where the settings point they raise
`NoSnapshot` naming the place they looked, and with an old schema they say how to upgrade it.

SQLite runs in WAL mode with a busy timeout, so readers never block a writer and vice versa.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc

from tracker import migrate
from tracker.config import redact_url
from tracker.errors import ConfigError, DatabaseBusy, NoSnapshot

# How long a write waits for another process's write before giving up. A sync writes in short
# transactions (tracker.staging), so only a crashed or very slow writer exhausts it.
BUSY_SECONDS = 10


class Database:
    """One engine over the tracker's database; every stored thing is read through it."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.revisions: tuple[str | None, str] | None = None  # set by upgrade()

    @classmethod
    def open(cls, url: str, *, create: bool = False) -> Database:
        """Open the database at `url`. With `create`, make it (or upgrade its schema) first;
        without, refuse a database that does not exist or that needs an upgrade."""
        path = sqlite_path(url)
        if path is not None and not create and not path.is_file():
            raise NoSnapshot(str(path))
        if path is not None and create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError(f"Cannot create the folder {path.parent} for the database "
                                  f"(TRACKER_DATABASE_URL): {error.strerror}") from error
        database = cls(url, _engine(url))
        try:
            if create:
                database.upgrade()
            else:
                database.check_schema()
        except BaseException:
            database.close()
            raise
        return database

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def where(self) -> str:
        """Where the data is, as a person should read it: an absolute path, or the URL
        without its password."""
        path = sqlite_path(self.url)
        return str(path) if path is not None else redact_url(self.url)

    def upgrade(self) -> tuple[str | None, str]:
        """Bring the schema up to date; returns the revisions before and after."""
        try:
            self.revisions = migrate.upgrade(self.engine)
            return self.revisions
        except sa_exc.OperationalError as error:
            raise ConfigError(f"Cannot open the database at {self.where}: "
                              f"{first_line(error)}. Check TRACKER_DATABASE_URL.") from error

    def check_schema(self) -> None:
        """Refuse a database this version cannot read as it is, without changing it."""
        try:
            state = migrate.state(self.engine)
        except sa_exc.OperationalError as error:
            raise ConfigError(f"Cannot open the database at {self.where}: "
                              f"{first_line(error)}. Check TRACKER_DATABASE_URL.") from error
        if state is migrate.SchemaState.EMPTY:
            raise NoSnapshot(self.where)
        if state in (migrate.SchemaState.LEGACY, migrate.SchemaState.BEHIND):
            raise ConfigError(f"The database at {self.where} was written by an older version "
                              "of the tracker; run 'tracker db upgrade' (or 'tracker sync') to "
                              "upgrade it.")
        if state is migrate.SchemaState.AHEAD:
            migrate.upgrade(self.engine)  # raises the clear "newer version" error

    def close(self) -> None:
        self.engine.dispose()


def sqlite_path(url: str) -> Path | None:
    """The absolute path of a SQLite database file; None for other databases and memory."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser().absolute()


def _engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        engine = create_engine(url, connect_args={"timeout": BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "handle_error", _busy(url))
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (sa_exc.ArgumentError, ImportError) as error:
        raise ConfigError(f"TRACKER_DATABASE_URL={redact_url(url)} cannot be used: {error}"
                          ) from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _busy(url: str) -> Any:
    """A write that waited BUSY_SECONDS for another process becomes one clear line."""
    path = sqlite_path(url)

    def handle(context: Any) -> None:
        original = context.original_exception
        if isinstance(original, sqlite3.OperationalError) and "locked" in str(original):
            raise DatabaseBusy(
                f"The database at {path} stayed busy for {BUSY_SECONDS} seconds (another "
                "tracker process is writing to it); nothing was changed. Try again in a "
                "moment.") from original

    return handle


def first_line(error: BaseException) -> str:
    """The database's own message, first line only: no SQL, no traceback."""
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
