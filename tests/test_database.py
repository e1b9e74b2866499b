"""Opening the database: reading never creates one, writing creates and upgrades it, and a
database another process keeps busy is one clear line, not a stack of SQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tracker import database, subscribers
from tracker.database import Database
from tracker.errors import DatabaseBusy, NoSnapshot
from tracker.subscribers import Preferences
from tracker.times import utcnow


def test_reading_a_database_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "tracker.db"

    with pytest.raises(NoSnapshot) as missing:
        Database.open(f"sqlite:///{path}")

    assert missing.value.where == str(path)
    assert not path.parent.exists()


def test_writing_creates_the_folder_and_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "new" / "tracker.db"

    db = Database.open(f"sqlite:///{path}", create=True)
    db.close()
    again = Database.open(f"sqlite:///{path}")  # now a reader finds it, current

    assert again.where == str(path) and again.revisions is None
    again.close()


def test_a_database_kept_busy_by_another_process_is_one_clear_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "BUSY_SECONDS", 1)
    path = tmp_path / "tracker.db"
    db = Database.open(f"sqlite:///{path}", create=True)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer that does not let go
    try:
        with pytest.raises(DatabaseBusy) as busy:
            subscribers.subscribe(db, "pat@example.org", Preferences(), confirmed=True,
                                  now=utcnow())
    finally:
        other.execute("ROLLBACK")
        other.close()
        db.close()

    assert str(busy.value) == (f"The database at {path} stayed busy for 1 seconds (another "
                               "tracker process is writing to it); nothing was changed. Try "
                               "again in a moment.")
    assert busy.value.exit_code == 3
