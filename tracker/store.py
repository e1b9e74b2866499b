"""The snapshot: every tracked study, every version of its record, every change event.

Writes of a sync go through one `Transaction` (studies, versions, change events: all or
nothing). This module knows tables and SQL only; what a study's tags or a change's sentence
should be is decided by the sync (`tracker.sync`), which hands the rows here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from tracker.database import Database
from tracker.models import ChangeEvent, ReportWeek, RunStatus, Study, StudyVersion, SyncRun
from tracker.packed import pack, unpack
from tracker.record import compact_json, loads
from tracker.text import JOINER
from tracker.times import as_utc

BATCH = 500


STUDY = Study.__table__  # type: ignore[attr-defined]
VERSION = StudyVersion.__table__  # type: ignore[attr-defined]
EVENT = ChangeEvent.__table__  # type: ignore[attr-defined]
REPORT_WEEK = ReportWeek.__table__  # type: ignore[attr-defined]
SYNC_RUN = SyncRun.__table__  # type: ignore[attr-defined]


def compress(record: dict[str, Any]) -> bytes:
    """A record as stored: compact JSON in one zstd frame (`packed`)."""
    return compress_json(compact_json(record))


def compress_json(raw: bytes) -> bytes:
    """A record's JSON, as received or as `compress` writes it, stored: `decompress` reads it
    back as the record (spacing and key order are the JSON's own)."""
    return pack(raw)


def decompress(blob: bytes) -> dict[str, Any]:
    """A stored record, whichever codec wrote it: zstd (now) or zlib (tracker 0.1). Anything
    else is a ValueError: a row to look at, not to guess."""
    record: dict[str, Any] = loads(unpack(blob))
    return record


@dataclass(frozen=True)
class Counts:
    tracked: int
    removed: int
    recruiting: int
    versions: int
    changes: int


class Store:
    """Reads the snapshot; the sync writes it through `transaction()`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str, *, create: bool = False) -> Store:
        """The snapshot at `url` (see `Database.open`)."""
        return cls(Database.open(url, create=create))

    def close(self) -> None:
        self.db.close()

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All of a sync's writes; any exception rolls every one of them back."""
        with self.engine.begin() as conn:
            yield Transaction(conn)

    def counts(self) -> Counts:
        active = STUDY.c.removed_at.is_(None)
        query = select(
            func.count().filter(active),
            func.count().filter(STUDY.c.removed_at.is_not(None)),
            func.count().filter(active, STUDY.c.overall_status == "RECRUITING"),
        ).select_from(STUDY)
        with self.engine.connect() as conn:
            tracked, removed, recruiting = conn.execute(query).one()
            versions = conn.execute(select(func.count()).select_from(VERSION)).scalar_one()
            changes = conn.execute(select(func.count()).select_from(EVENT)).scalar_one()
        return Counts(int(tracked), int(removed), int(recruiting), int(versions), int(changes))

    def study(self, nct_id: str) -> Study | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(STUDY).where(STUDY.c.nct_id == nct_id)).mappings().first()
        return Study(**row) if row else None

    def record(self, version_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            blob = conn.execute(select(VERSION.c.record).where(VERSION.c.id == version_id)
                                ).scalar_one()
        return decompress(blob)

    def version_count(self, nct_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(VERSION)
                                    .where(VERSION.c.nct_id == nct_id)).scalar_one())

    def changes(self, *, since: datetime | None = None, nct_id: str | None = None,
                kinds: Sequence[str] = (), limit: int | None = None,
                where: StudyFilter | None = None, posted_from: date | None = None,
                posted_before: date | None = None) -> list[ChangeEvent]:
        """Newest sync first; within a sync, the order the diff reported them.

        `since` narrows by when the tracker recorded a change (operator views);
        `posted_from` (inclusive) and `posted_before` (exclusive) by the registry's date."""
        query = select(EVENT).order_by(EVENT.c.sync_run_id.desc(), EVENT.c.id)
        if where is not None and where.active:
            query = query.join(STUDY, STUDY.c.nct_id == EVENT.c.nct_id).where(*where.clauses())
        if since is not None:
            query = query.where(EVENT.c.detected_at >= since)
        if posted_from is not None:
            query = query.where(EVENT.c.last_update_posted >= posted_from.isoformat())
        if posted_before is not None:
            query = query.where(EVENT.c.last_update_posted < posted_before.isoformat())
        if nct_id:
            query = query.where(EVENT.c.nct_id == nct_id)
        if kinds:
            query = query.where(EVENT.c.kind.in_(list(kinds)))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [ChangeEvent(**row) for row in conn.execute(query).mappings()]

    def events_after(self, after_id: int) -> list[ChangeEvent]:
        """Every change recorded after event `after_id`, oldest first (a digest's window)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(EVENT).where(EVENT.c.id > after_id).order_by(EVENT.c.id))
            return [ChangeEvent(**row) for row in rows.mappings()]

    def newest_event_id(self) -> int:
        """The id of the newest change event; 0 when there is none."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(EVENT.c.id), 0))
                                    ).scalar_one())

    def versions_posted(self, start: date, end: date) -> dict[str, str]:
        """nct_id -> the newest registry update date within [start, end) among the stored
        versions of each tracked study: what the registry updated in those days, even for a
        study the tracker holds only a baseline of (so no change event)."""
        query = (select(VERSION.c.nct_id, func.max(VERSION.c.last_update_posted))
                 .join(STUDY, STUDY.c.nct_id == VERSION.c.nct_id)
                 .where(STUDY.c.removed_at.is_(None),
                        VERSION.c.last_update_posted >= start.isoformat(),
                        VERSION.c.last_update_posted < end.isoformat())
                 .group_by(VERSION.c.nct_id))
        with self.engine.connect() as conn:
            return {str(nct_id): str(posted) for nct_id, posted in conn.execute(query)}

    def earliest_records(self, nct_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Each study's oldest stored record (as first seen: planned enrolment, dates...);
        studies without a stored version are left out."""
        ids = sorted(set(nct_ids))
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), BATCH):
                chunk = ids[start:start + BATCH]
                oldest = (select(func.min(VERSION.c.id)).where(VERSION.c.nct_id.in_(chunk))
                          .group_by(VERSION.c.nct_id))
                rows = conn.execute(select(VERSION.c.nct_id, VERSION.c.record)
                                    .where(VERSION.c.id.in_(oldest)))
                out.update((str(nct_id), decompress(blob)) for nct_id, blob in rows)
        return out

    def watching_since(self) -> date | None:
        """The registry day the tracker's first successful sync saw (its data timestamp, else
        the day it ran): changes posted after it were all seen as changes."""
        query = (select(SYNC_RUN.c.data_timestamp, SYNC_RUN.c.started_at)
                 .where(SYNC_RUN.c.status == RunStatus.OK).order_by(SYNC_RUN.c.id).limit(1))
        with self.engine.connect() as conn:
            first = conn.execute(query).first()
        if first is None:
            return None
        with contextlib.suppress(TypeError, ValueError):
            return date.fromisoformat(str(first.data_timestamp)[:10])
        return as_utc(first.started_at).date()

    # --- the weekly report's record of what it wrote --------------------------------------

    def report_weeks(self) -> dict[str, ReportWeek]:
        """Every week whose report was written, by week."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(REPORT_WEEK).order_by(REPORT_WEEK.c.week)).mappings()
            return {row["week"]: _report_week(row) for row in rows}

    def mark_report_written(self, week: str, now: datetime, last_event_id: int) -> None:
        """Record that `week`'s report was written at `now`, covering events up to
        `last_event_id`: the first time sets both times, later times only the last one."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(REPORT_WEEK).values(
            week=week, first_written_at=now, last_written_at=now, last_event_id=last_event_id)
        statement = statement.on_conflict_do_update(
            index_elements=[REPORT_WEEK.c.week],
            set_={"last_written_at": now, "last_event_id": last_event_id})
        with self.engine.begin() as conn:
            conn.execute(statement)

    def studies(self, nct_ids: Iterable[str]) -> dict[str, Study]:
        ids = sorted(set(nct_ids))
        out: dict[str, Study] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), BATCH):
                chunk = ids[start:start + BATCH]
                out.update((row["nct_id"], Study(**row)) for row in conn.execute(
                    select(STUDY).where(STUDY.c.nct_id.in_(chunk))).mappings())
        return out

    def iter_studies(self, include_removed: bool = False,
                     where: StudyFilter | None = None) -> Iterator[Study]:
        query = select(STUDY).order_by(STUDY.c.nct_id)
        if not include_removed:
            query = query.where(STUDY.c.removed_at.is_(None))
        if where is not None and where.active:
            query = query.where(*where.clauses())
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=BATCH).execute(query).mappings():
                yield Study(**row)

    def count_studies(self, where: StudyFilter | None = None) -> int:
        """Tracked studies matching `where`, counted by the database."""
        query = select(func.count()).select_from(STUDY).where(STUDY.c.removed_at.is_(None))
        if where is not None and where.active:
            query = query.where(*where.clauses())
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def study_page(self, where: StudyFilter | None, offset: int, limit: int) -> list[Study]:
        """One page of the tracked studies matching `where`, by NCT number."""
        query = (select(STUDY).where(STUDY.c.removed_at.is_(None)).order_by(STUDY.c.nct_id)
                 .offset(offset).limit(limit))
        if where is not None and where.active:
            query = query.where(*where.clauses())
        with self.engine.connect() as conn:
            return [Study(**row) for row in conn.execute(query).mappings()]

    def recruiting_sites(self, where: StudyFilter | None = None
                         ) -> Iterator[tuple[str, str | None]]:
        """(nct_id, recruiting sites as stored) of the tracked studies matching `where`:
        what a search near a place needs, without loading whole rows."""
        query = (select(STUDY.c.nct_id, STUDY.c.recruiting_sites)
                 .where(STUDY.c.removed_at.is_(None)).order_by(STUDY.c.nct_id))
        if where is not None and where.active:
            query = query.where(*where.clauses())
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield str(row[0]), row[1]

    def countries(self) -> list[str]:
        """Every country a tracked study has a site in, as the registry spells it."""
        names: set[str] = set()
        with self.engine.connect() as conn:
            for (joined,) in conn.execute(select(STUDY.c.countries).distinct()):
                names.update(part for part in (joined or "").split(JOINER) if part)
        return sorted(names)

    def tag_counts(self) -> dict[str, dict[str, int]]:
        """How many tracked studies carry each subtype and each therapy class."""
        counts: dict[str, dict[str, int]] = {"subtypes": {}, "therapies": {}}
        query = (select(STUDY.c.subtypes, STUDY.c.therapies)
                 .where(STUDY.c.removed_at.is_(None)))
        with self.engine.connect() as conn:
            for subtypes, therapies in conn.execute(query):
                for group, joined in (("subtypes", subtypes), ("therapies", therapies)):
                    for tag in (joined or "").split(JOINER):
                        if tag:
                            counts[group][tag] = counts[group].get(tag, 0) + 1
        return counts


def _report_week(row: Any) -> ReportWeek:
    """A stored row with its times in UTC (SQLite hands them back without a zone)."""
    return ReportWeek(week=row["week"], first_written_at=as_utc(row["first_written_at"]),
                      last_written_at=as_utc(row["last_written_at"]),
                      last_event_id=int(row["last_event_id"]))


@dataclass(frozen=True)
class StudyFilter:
    """What `changes` and `export` narrow to; values within one option are alternatives.
    `myositis_only` keeps the studies with a myositis subtype, leaving out the look-alikes
    (viral myositis, myositis ossificans...) a broad query also brings in."""

    subtypes: tuple[str, ...] = ()
    therapies: tuple[str, ...] = ()
    recruiting: bool = False
    children: bool = False
    countries: tuple[str, ...] = ()
    myositis_only: bool = False

    @property
    def active(self) -> bool:
        return bool(self.subtypes or self.therapies or self.recruiting or self.children
                    or self.countries or self.myositis_only)

    def clauses(self) -> list[Any]:
        out: list[Any] = []
        if self.myositis_only:
            out.append(func.coalesce(STUDY.c.subtypes, "") != "")
        if self.subtypes:
            out.append(or_(*(_has(STUDY.c.subtypes, t) for t in self.subtypes)))
        if self.therapies:
            out.append(or_(*(_has(STUDY.c.therapies, t) for t in self.therapies)))
        if self.recruiting:
            out.append(STUDY.c.recruiting.is_(True))
        if self.children:
            out.append(STUDY.c.children.is_(True))
        if self.countries:
            column = STUDY.c.recruiting_countries if self.recruiting else STUDY.c.countries
            out.append(or_(*(_has(func.lower(column), c.lower()) for c in self.countries)))
        return out


def _has(column: Any, value: str) -> Any:
    """A "|"-joined list column contains `value` exactly."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (literal("|") + column + literal("|")).like(f"%|{escaped}|%", escape="\\")


class Transaction:
    """Batched writes inside one database transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def record(self, version_id: int) -> dict[str, Any]:
        blob = self.conn.execute(select(VERSION.c.record).where(VERSION.c.id == version_id)
                                 ).scalar_one()
        return decompress(blob)

    def add_versions(self, rows: list[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        result = self.conn.execute(
            VERSION.insert().returning(VERSION.c.id, sort_by_parameter_order=True), rows)
        return [int(r[0]) for r in result]

    def insert_studies(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(STUDY.insert(), rows)

    def update_studies(self, rows: list[dict[str, Any]]) -> None:
        """Rows are complete column sets keyed by nct_id, so one statement fits all."""
        if not rows:
            return
        columns = [c for c in rows[0] if c != "nct_id"]
        statement = (update(STUDY).where(STUDY.c.nct_id == bindparam("key_nct_id"))
                     .values({c: bindparam(f"v_{c}") for c in columns}))
        self.conn.execute(statement, [
            {"key_nct_id": r["nct_id"], **{f"v_{c}": r[c] for c in columns}} for r in rows])

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(EVENT.insert(), rows)

    def mark_removed(self, nct_ids: list[str], when: datetime) -> None:
        for start in range(0, len(nct_ids), BATCH):
            chunk = nct_ids[start:start + BATCH]
            self.conn.execute(update(STUDY).where(STUDY.c.nct_id.in_(chunk))
                              .values(removed_at=when, last_changed_at=when))

    # --- keeping derived columns current (the sync decides when) ---------------------------

    def untagged(self, vocabulary_digest: str) -> list[tuple[str, int]]:
        """(nct_id, version_id) of studies tagged with another vocabulary, or none."""
        stale = (STUDY.c.vocabulary.is_(None)) | (STUDY.c.vocabulary != vocabulary_digest)
        rows = self.conn.execute(select(STUDY.c.nct_id, STUDY.c.version_id)
                                 .where(stale, STUDY.c.version_id.is_not(None))
                                 .order_by(STUDY.c.nct_id))
        return [(r[0], int(r[1])) for r in rows]

    def unexplained(self) -> list[ChangeEvent]:
        """Events recorded before plain sentences existed."""
        rows = self.conn.execute(select(EVENT).where(EVENT.c.plain.is_(None))).mappings()
        return [ChangeEvent(**row) for row in rows]

    def explain_events(self, sentences: dict[int, str]) -> None:
        if sentences:
            self.conn.execute(update(EVENT).where(EVENT.c.id == bindparam("key_id"))
                              .values(plain=bindparam("v_plain")),
                              [{"key_id": k, "v_plain": v} for k, v in sentences.items()])
