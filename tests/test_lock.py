"""One holder per lock across processes: a file lock beside a SQLite file, an advisory lock on
PostgreSQL; the busy error says which lock and, where known, who holds it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from tracker.database import Database
from tracker.errors import LockBusy
from tracker.lock import Lock, hold, holder


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url, create=True)
    yield database
    database.close()


def test_a_second_holder_is_refused_at_once_with_the_lock_named(db: Database) -> None:
    with hold(db, Lock.SYNC), pytest.raises(LockBusy) as busy, hold(db, Lock.SYNC):
        pass

    assert busy.value.name == Lock.SYNC
    assert busy.value.exit_code == 3
    assert str(busy.value).startswith("Another sync is already running")


def test_the_holder_is_named_where_the_lock_can_say(db: Database) -> None:
    assert holder(db, Lock.SCHEDULER) is None
    with hold(db, Lock.SCHEDULER):
        who = holder(db, Lock.SCHEDULER)
    assert holder(db, Lock.SCHEDULER) is None  # released with the block
    if db.is_sqlite:
        assert who is not None and re.fullmatch(rf"pid {os.getpid()}, started .+", who)
    else:
        assert who == "yes"  # an advisory lock does not say whose it is


def test_locks_of_different_names_do_not_block_each_other(db: Database) -> None:
    with hold(db, Lock.SYNC), hold(db, Lock.SEND), hold(db, Lock.SCHEDULER):
        assert holder(db, Lock.SYNC) is not None


def test_a_lock_is_released_when_its_block_fails(db: Database) -> None:
    with pytest.raises(RuntimeError), hold(db, Lock.SEND):
        raise RuntimeError("the job failed")

    with hold(db, Lock.SEND):
        pass
