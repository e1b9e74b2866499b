"""One holder at a time, across processes: a file lock for SQLite, an advisory lock for
PostgreSQL.

Both are released by the operating system or the server when the holder dies, so a killed
process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import text

from tracker.database import Database, sqlite_path
from tracker.errors import LockBusy

# An arbitrary, fixed key for pg_try_advisory_lock ("myositis" in ASCII, fits in a bigint).
PG_LOCK_KEY = 0x6D796F7369746973


class Lock(StrEnum):
    SYNC = "sync"  # one sync at a time
    SEND = "send"  # one sender draining the outbox
    SCHEDULER = "scheduler"  # one `tracker run`


MESSAGES = {
    Lock.SYNC: "Another sync is already running{who}; this one did nothing. Try again when "
               "it finishes.",
    Lock.SEND: "Another send is already running{who}; this one did nothing. Try again when "
               "it finishes.",
    Lock.SCHEDULER: "Another scheduler ('tracker run') is already running{who}; only one may "
                    "run at a time, so this one did not start.",
}


@contextmanager
def hold(db: Database, name: Lock) -> Iterator[None]:
    """Hold `name` for the duration of the block, or raise LockBusy at once."""
    if db.is_sqlite:
        with _file_lock(_lock_path(db.url, name), name):
            yield
    else:
        with _advisory_lock(db, name):
            yield


def holder(db: Database, name: Lock) -> str | None:
    """Who holds `name` right now ("pid 12, started ..."; "yes" where that is unknown), or
    None if nobody does. Probing takes and drops the lock at once."""
    try:
        with hold(db, name):
            return None
    except LockBusy as busy:
        return busy.holder or "yes"


def _busy(name: Lock, who: str | None) -> LockBusy:
    return LockBusy(name, MESSAGES[name].format(who=f" ({who})" if who else ""), who)


def _lock_path(url: str, name: Lock) -> Path:
    suffix = ".lock" if name is Lock.SYNC else f".{name}.lock"
    path = sqlite_path(url)
    if path is None:
        return Path(f".tracker-memory{suffix}")
    return path.with_name(path.name + suffix)


@contextmanager
def _file_lock(path: Path, name: Lock) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise _busy(name, who or None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {datetime.now():%Y-%m-%d %H:%M:%S}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _advisory_lock(db: Database, name: Lock) -> Iterator[None]:
    key = PG_LOCK_KEY + list(Lock).index(name)
    with db.engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
        if not got:
            raise _busy(name, None)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
