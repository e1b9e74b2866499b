"""One sync at a time, across processes: a file lock for SQLite, an advisory lock for PostgreSQL.

Both are released by the operating system or the server when the holder dies, so a killed
sync never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from tracker.errors import LockBusy
from tracker.store import Store

# An arbitrary, fixed key for pg_try_advisory_lock ("myositis" in ASCII, fits in a bigint).
PG_LOCK_KEY = 0x6D796F7369746973
LOCK_NAMES = ("sync", "send", "scheduler")
BUSY = "Another sync is already running{who}; this one did nothing. Try again when it finishes."
MESSAGES = {
    "sync": BUSY,
    "send": "Another send is already running{who}; this one did nothing. Try again when it "
            "finishes.",
    "scheduler": "Another scheduler ('tracker run') is already running{who}; only one may "
                 "run at a time, so this one did not start.",
}


@contextmanager
def sync_lock(store: Store) -> Iterator[None]:
    """Hold the sync lock for the duration of the block, or raise LockBusy at once."""
    with named_lock(store, "sync"):
        yield


@contextmanager
def named_lock(store: Store, name: str) -> Iterator[None]:
    """One holder of `name` at a time across processes ("sync", "send", "scheduler")."""
    what = MESSAGES[name]
    if store.is_sqlite:
        with _file_lock(_lock_path(store.url, name), what):
            yield
    else:
        with _advisory_lock(store, PG_LOCK_KEY + LOCK_NAMES.index(name), what):
            yield


def _lock_path(url: str, name: str) -> Path:
    suffix = ".lock" if name == "sync" else f".{name}.lock"
    path = url.removeprefix("sqlite:///")
    if not path or path == ":memory:":
        return Path(f".tracker-memory{suffix}")
    return Path(path + suffix)


def is_held(store: Store, name: str) -> str | None:
    """Who holds `name` right now ("pid 12, started ..."; "yes" where that is unknown), or
    None if nobody does. Probing takes and drops the lock at once."""
    try:
        with named_lock(store, name):
            return None
    except LockBusy as busy:
        found = re.search(r"\((pid [^)]*)\)", str(busy))
        return found.group(1) if found else "yes"


@contextmanager
def _file_lock(path: Path, busy: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise LockBusy(busy.format(who=f" ({holder})" if holder else "")) from None
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
def _advisory_lock(store: Store, key: int, busy: str) -> Iterator[None]:
    with store.engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
        if not got:
            raise LockBusy(busy.format(who=""))
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
