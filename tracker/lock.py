"""One holder at a time, across processes: a file lock for SQLite, an advisory lock for
PostgreSQL. And senders (`sender`): one at a time on SQLite, any number on PostgreSQL, each
with a number that says whether it is still alive.

Both are released by the operating system or the server when the holder dies, so a killed
process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Connection, text

from tracker.database import Database, sqlite_path
from tracker.errors import LockBusy

# An arbitrary, fixed key for pg_try_advisory_lock ("myositis" in ASCII, fits in a bigint).
PG_LOCK_KEY = 0x6D796F7369746973
# The first key of a sender's two-key advisory lock (the second is its number); PostgreSQL
# keeps two-key locks apart from one-key ones.
PG_SENDER_SPACE = 0x6D796F73


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


@dataclass(frozen=True)
class Sender:
    """A registered sender: `number` marks the outbox messages it takes; `alive(n)` says
    whether sender `n` still runs (its registration is held by a live process)."""

    number: int
    alive: Callable[[int], bool]


@contextmanager
def sender(db: Database, taken: Callable[[int], bool]) -> Iterator[Sender]:
    """Register a sender for the block. On SQLite it holds Lock.SEND (one sender; others get
    LockBusy), so no other sender is alive. On PostgreSQL senders run side by side: each
    holds an advisory lock on its own number for as long as its session lives, so a number
    whose lock can be taken belongs to a sender that has stopped or died. `taken(n)` says
    whether messages still carry number n; such a number is not reused."""
    if db.is_sqlite:
        with hold(db, Lock.SEND):
            number = _fresh_number(taken)
            yield Sender(number, lambda other: other == number)
        return
    with db.engine.connect() as conn:
        number = _registered(conn, taken)
        try:
            yield Sender(number, lambda other: other == number or not _free(conn, other))
        finally:
            _unlock(conn, number)


def _fresh_number(taken: Callable[[int], bool]) -> int:
    while True:
        number = 1 + secrets.randbelow(2**31 - 2)
        if not taken(number):
            return number


def _registered(conn: Connection, taken: Callable[[int], bool]) -> int:
    """A number nobody else holds, and that no message carries, locked by this session."""
    while True:
        number = _fresh_number(taken)
        got = conn.execute(text("SELECT pg_try_advisory_lock(:s, :n)"),
                           {"s": PG_SENDER_SPACE, "n": number}).scalar()
        conn.commit()
        if got and not taken(number):
            return number
        if got:
            _unlock(conn, number)


def _free(conn: Connection, number: int) -> bool:
    """Whether no live session holds sender `number` (its lock is taken and dropped)."""
    got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:s, :n)"),
                            {"s": PG_SENDER_SPACE, "n": number}).scalar())
    conn.commit()
    if got:
        _unlock(conn, number)
    return got


def _unlock(conn: Connection, number: int) -> None:
    conn.execute(text("SELECT pg_advisory_unlock(:s, :n)"), {"s": PG_SENDER_SPACE, "n": number})
    conn.commit()


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
