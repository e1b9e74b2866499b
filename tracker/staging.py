"""A sync's scratch work, kept in the database but outside the snapshot until the end.

While the registry is being read, the sync writes only here, page by page, each in its own
short transaction: the IDs it saw listed, and what it will write for each study (the record,
the study row, the change events). Nothing here is visible to readers of the snapshot, and no
write lock is held across a network request, so other commands and web requests never wait
on the registry. When the pages are proven complete, `apply` moves everything into the
snapshot in one short transaction: all or nothing. A sync that dies leaves scratch rows that
the next sync clears before it starts.

Removals held back (too many trials vanished at once) are remembered here too, until a sync
on a later registry refresh confirms them or the trials are listed again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    Column,
    Connection,
    LargeBinary,
    Text,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlmodel import Field, SQLModel

from tracker.database import Database
from tracker.record import loads
from tracker.store import BATCH, STUDY, VERSION, Transaction


class ListedStudy(SQLModel, table=True):
    """The IDs the current sync saw listed, so memory stays flat."""

    __tablename__ = "sync_listing"

    nct_id: str = Field(primary_key=True, max_length=11)
    last_update_posted: str | None = None
    # A new fingerprint of the JSON received for a study whose content the sync found
    # unchanged (`confirm`); written to the study when the sync is applied.
    received_hash: str | None = Field(default=None, max_length=64)


class StagedStudy(SQLModel, table=True):
    """What the current sync will write for one study."""

    __tablename__ = "sync_stage"

    nct_id: str = Field(primary_key=True, max_length=11)
    position: int = Field(index=True)  # arrival order: the order events are recorded in
    content_hash: str = Field(max_length=64)
    last_update_posted: str | None = None
    record: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The study row as JSON; None for a record that could not be read: it is kept as
    # received, and the study stays as it was.
    study: str | None = Field(default=None, sa_column=Column(Text))
    is_new: bool = False
    first_seen_at: datetime | None = None
    events: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON rows


class HeldRemoval(SQLModel, table=True):
    """A tracked study missing from the listing whose removal waits for confirmation."""

    __tablename__ = "held_removal"

    nct_id: str = Field(primary_key=True, max_length=11)
    data_timestamp: str | None = None  # the registry refresh that first missed it
    sync_run_id: int
    held_at: datetime


LISTING = ListedStudy.__table__  # type: ignore[attr-defined]
STAGE = StagedStudy.__table__  # type: ignore[attr-defined]
HELD = HeldRemoval.__table__  # type: ignore[attr-defined]
# Staged rows and events as JSON: text, numbers from the record's own JSON and ages read from
# digits, never NaN, so msgspec writes what json would, minus the spaces.
_SCRATCH = msgspec.json.Encoder()


@dataclass(frozen=True)
class Known:
    """What the snapshot holds for a study, as the diff needs it."""

    content_hash: str
    last_update_posted: str | None
    version_id: int | None
    removed: bool
    first_seen_at: datetime
    received_hash: str | None = None  # of the JSON content_hash was computed from


@dataclass(frozen=True)
class Staged:
    """One study's writes, ready to stage."""

    nct_id: str
    content_hash: str
    last_update_posted: str | None
    record: bytes
    study: dict[str, Any] | None  # None: unreadable, kept as received
    is_new: bool
    first_seen_at: datetime | None
    events: list[dict[str, Any]]


class Staging:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.position = 0
        self.confirmed = 0  # fingerprints confirmed by this sync

    def clear(self) -> None:
        """Forget any scratch rows (a sync that died leaves some); call under the sync lock."""
        with self.db.engine.begin() as conn:
            _clear(conn)

    # --- while the registry is read: short transactions ----------------------------------

    def add_listing(self, rows: Sequence[tuple[str, str | None]]) -> None:
        if rows:
            with self.db.engine.begin() as conn:
                conn.execute(insert(LISTING), [
                    {"nct_id": nct_id, "last_update_posted": posted}
                    for nct_id, posted in rows])

    def stage(self, studies: Iterable[Staged]) -> None:
        rows = []
        for s in studies:
            self.position += 1
            rows.append({"nct_id": s.nct_id, "position": self.position,
                         "content_hash": s.content_hash,
                         "last_update_posted": s.last_update_posted, "record": s.record,
                         "study": _SCRATCH.encode(s.study).decode() if s.study is not None
                         else None,
                         "is_new": s.is_new, "first_seen_at": s.first_seen_at,
                         "events": _SCRATCH.encode(s.events).decode()})
        if rows:
            with self.db.engine.begin() as conn:
                conn.execute(insert(STAGE), rows)

    # --- reading the snapshot beside the scratch rows -------------------------------------

    def known(self, nct_ids: Sequence[str]) -> dict[str, Known]:
        query = (select(STUDY.c.nct_id, STUDY.c.content_hash, STUDY.c.last_update_posted,
                        STUDY.c.version_id, STUDY.c.removed_at, STUDY.c.first_seen_at,
                        STUDY.c.received_hash)
                 .where(STUDY.c.nct_id.in_(list(nct_ids))))
        with self.db.engine.connect() as conn:
            return {r[0]: Known(r[1], r[2], r[3], r[4] is not None, r[5], r[6])
                    for r in conn.execute(query)}

    def confirm(self, fingerprints: Sequence[tuple[str, str]]) -> None:
        """(study, received hash) of studies whose content this sync found unchanged in JSON
        with a new fingerprint: `apply` stores it, so the next sync need not read that JSON.
        The study must be listed (every study a sync reads is)."""
        if fingerprints:
            self.confirmed += len(fingerprints)
            with self.db.engine.begin() as conn:
                conn.execute(update(LISTING).where(LISTING.c.nct_id == bindparam("key"))
                             .values(received_hash=bindparam("fingerprint")),
                             [{"key": k, "fingerprint": f} for k, f in fingerprints])

    def has_version(self, nct_id: str, content_hash: str) -> bool:
        query = select(VERSION.c.id).where(VERSION.c.nct_id == nct_id,
                                           VERSION.c.content_hash == content_hash).limit(1)
        with self.db.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def listed_count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(LISTING)).scalar_one())

    def stale_listed(self) -> list[str]:
        """Listed IDs the snapshot lacks, holds as removed, or holds at another update date,
        and that this sync has not fetched yet."""
        query = (
            select(LISTING.c.nct_id)
            .select_from(LISTING.outerjoin(STUDY, STUDY.c.nct_id == LISTING.c.nct_id))
            .where((STUDY.c.nct_id.is_(None)) | (STUDY.c.removed_at.is_not(None))
                   | (STUDY.c.last_update_posted.is_distinct_from(LISTING.c.last_update_posted)))
            .where(LISTING.c.nct_id.not_in(select(STAGE.c.nct_id)))
            .order_by(LISTING.c.nct_id)
        )
        with self.db.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def unlisted_active(self) -> list[str]:
        """Tracked studies missing from this sync's listing: candidates for removal."""
        query = (select(STUDY.c.nct_id)
                 .where(STUDY.c.removed_at.is_(None),
                        STUDY.c.nct_id.not_in(select(LISTING.c.nct_id)))
                 .order_by(STUDY.c.nct_id))
        with self.db.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def tracked_count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(STUDY)
                                    .where(STUDY.c.removed_at.is_(None))).scalar_one())

    def held(self) -> dict[str, str | None]:
        """Held removals: study -> the registry refresh that first missed it."""
        with self.db.engine.connect() as conn:
            return dict(conn.execute(select(HELD.c.nct_id, HELD.c.data_timestamp)).all())

    # --- the end: one short transaction --------------------------------------------------

    def apply(self, tx: Transaction, run_id: int, now: datetime) -> None:
        """Move the staged writes into the snapshot, in arrival order, inside `tx`, and the
        confirmed fingerprints into their studies. The records go from table to table in
        one statement, without passing through Python."""
        conn = tx.conn
        if self.confirmed:
            confirmed = select(LISTING.c.received_hash).where(
                LISTING.c.nct_id == STUDY.c.nct_id).scalar_subquery()
            conn.execute(update(STUDY).values(received_hash=confirmed).where(
                STUDY.c.nct_id.in_(select(LISTING.c.nct_id)
                                   .where(LISTING.c.received_hash.is_not(None)))))
        conn.execute(insert(VERSION).from_select(
            ["nct_id", "content_hash", "last_update_posted", "sync_run_id", "fetched_at",
             "record"],
            select(STAGE.c.nct_id, STAGE.c.content_hash, STAGE.c.last_update_posted,
                   literal(run_id, VERSION.c.sync_run_id.type),
                   literal(now, VERSION.c.fetched_at.type), STAGE.c.record)
            .order_by(STAGE.c.position)))
        last = 0
        while True:
            rows = conn.execute(
                select(STAGE.c.position, STAGE.c.nct_id, STAGE.c.study, STAGE.c.is_new,
                       STAGE.c.first_seen_at, STAGE.c.events)
                .where(STAGE.c.position > last).order_by(STAGE.c.position).limit(BATCH)
            ).mappings().all()
            if not rows:
                return
            last = rows[-1]["position"]
            # One version per study and sync (the stage is keyed by study): found by both.
            version_ids: dict[str, int] = dict(conn.execute(
                select(VERSION.c.nct_id, VERSION.c.id)
                .where(VERSION.c.sync_run_id == run_id,
                       VERSION.c.nct_id.in_([r["nct_id"] for r in rows]))).all())
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            for row in rows:
                if row["study"] is None:
                    continue  # unreadable: kept as received, the study stays as it was
                version_id = version_ids[row["nct_id"]]
                study = {**loads(row["study"]), "version_id": version_id,
                         "removed_at": None, "last_changed_at": now}
                if row["is_new"]:
                    inserts.append({**study, "first_seen_at": row["first_seen_at"] or now})
                else:
                    updates.append(study)
                events.extend({**event, "version_id": version_id, "detected_at": now,
                               "sync_run_id": run_id} for event in loads(row["events"]))
            tx.insert_studies(inserts)
            tx.update_studies(updates)
            tx.add_events(events)

    def hold(self, tx: Transaction, nct_ids: Sequence[str], data_timestamp: str | None,
             run_id: int, now: datetime) -> None:
        """Hold these removals back; one already held keeps the refresh that first missed it."""
        already = set(self.held())
        fresh = [n for n in nct_ids if n not in already]
        if fresh:
            tx.conn.execute(insert(HELD), [{"nct_id": n, "data_timestamp": data_timestamp,
                                            "sync_run_id": run_id, "held_at": now}
                                           for n in fresh])

    def release(self, tx: Transaction, nct_ids: Iterable[str]) -> None:
        ids = list(nct_ids)
        for start in range(0, len(ids), BATCH):
            tx.conn.execute(delete(HELD).where(HELD.c.nct_id.in_(ids[start:start + BATCH])))

    def finish(self, tx: Transaction) -> None:
        _clear(tx.conn)


def _clear(conn: Connection) -> None:
    conn.execute(delete(LISTING))
    conn.execute(delete(STAGE))

