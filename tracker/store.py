"""The snapshot database: SQLite by default, PostgreSQL when the URL says so.

Writes of a sync go through one `Transaction` (snapshot, versions, change events: all or
nothing). Sync runs are recorded outside it, so a failed sync is still on record. SQLite runs
in WAL mode with a busy timeout, so readers never block the sync and vice versa.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlmodel import Field, SQLModel

from tracker.config import redact_url
from tracker.diff import Change
from tracker.errors import ConfigError
from tracker.models import ChangeEvent, JobRun, Study, StudyVersion, SyncRun
from tracker.plain import explain
from tracker.tags import Tagger
from tracker.tags import columns as tag_columns

BATCH = 500


class ListedStudy(SQLModel, table=True):
    """Scratch table: the IDs the current sync saw listed, so memory stays flat."""

    __tablename__ = "sync_listing"

    nct_id: str = Field(primary_key=True, max_length=11)
    last_update_posted: str | None = None


STUDY = Study.__table__  # type: ignore[attr-defined]
VERSION = StudyVersion.__table__  # type: ignore[attr-defined]
EVENT = ChangeEvent.__table__  # type: ignore[attr-defined]
RUN = SyncRun.__table__  # type: ignore[attr-defined]
JOB = JobRun.__table__  # type: ignore[attr-defined]
LISTING = ListedStudy.__table__  # type: ignore[attr-defined]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Times are stored in UTC, but some databases (SQLite) hand them back naive."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def compress(record: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode())


def decompress(blob: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(blob))


@dataclass(frozen=True)
class Known:
    content_hash: str
    last_update_posted: str | None
    version_id: int | None
    removed: bool


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        try:
            SQLModel.metadata.create_all(self.engine)
            upgrade_schema(self.engine)
        except sa_exc.OperationalError as error:
            raise ConfigError(
                f"Cannot open the database {redact_url(url)}: {_first_line(error)}. "
                "Check TRACKER_DATABASE_URL."
            ) from error

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        self.engine.dispose()

    # --- sync runs (each in its own short transaction) -------------------------------------

    def begin_run(self, query: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(RUN.insert().values(started_at=utcnow(), status="running",
                                                      mode="full", query=query))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_run(self, run_id: int, status: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(RUN).where(RUN.c.id == run_id)
                         .values(status=status, finished_at=utcnow(), **values))

    def mark_interrupted(self) -> int:
        """Runs left 'running' by a killed process; call only while holding the sync lock."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(RUN).where(RUN.c.status == "running")
                .values(status="interrupted", finished_at=utcnow(),
                        error="Interrupted: the process stopped before the sync finished; "
                              "nothing from it was saved.")
            )
            return int(result.rowcount or 0)

    def last_run(self, *statuses: str) -> SyncRun | None:
        """The latest sync run with one of these statuses (any status if none is given)."""
        query = select(RUN).order_by(RUN.c.id.desc()).limit(1)
        if statuses:
            query = query.where(RUN.c.status.in_(statuses))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return SyncRun(**row) if row else None

    def failures_before(self, run_id: int | None = None) -> list[SyncRun]:
        """The failed syncs since the last successful one before `run_id` (default: now),
        oldest first: the current streak, or the streak that `run_id` ended."""
        with self.engine.connect() as conn:
            last_ok = select(func.coalesce(func.max(RUN.c.id), 0)).where(
                RUN.c.status.in_(("ok", "skipped")))
            query = select(RUN).where(RUN.c.status == "failed").order_by(RUN.c.id)
            if run_id is not None:
                last_ok = last_ok.where(RUN.c.id < run_id)
                query = query.where(RUN.c.id < run_id)
            query = query.where(RUN.c.id > last_ok.scalar_subquery())
            return [SyncRun(**row) for row in conn.execute(query).mappings()]

    # --- scheduled jobs ----------------------------------------------------------------------

    def begin_job(self, job: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(JOB.insert().values(job=job, started_at=utcnow(),
                                                      status="running"))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_job(self, job_run_id: int, status: str, summary: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(JOB).where(JOB.c.id == job_run_id)
                         .values(status=status, finished_at=utcnow(), summary=summary))

    def last_job(self, job: str) -> JobRun | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(JOB).where(JOB.c.job == job)
                               .order_by(JOB.c.id.desc()).limit(1)).mappings().first()
        return JobRun(**row) if row else None

    def mark_jobs_interrupted(self) -> int:
        """Job runs left 'running' by a process that died; call only under the scheduler lock."""
        with self.engine.begin() as conn:
            result = conn.execute(update(JOB).where(JOB.c.status == "running").values(
                status="interrupted", finished_at=utcnow(),
                summary="the scheduler stopped before this run finished"))
            return int(result.rowcount or 0)

    # --- the sync's transaction ------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All of a sync's writes; any exception rolls every one of them back."""
        with self.engine.begin() as conn:
            yield Transaction(conn)

    # --- reading ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            def count(table: Any, *where: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table).where(*where))
                           .scalar_one())

            return {
                "tracked": count(STUDY, STUDY.c.removed_at.is_(None)),
                "removed": count(STUDY, STUDY.c.removed_at.is_not(None)),
                "recruiting": count(STUDY, STUDY.c.removed_at.is_(None),
                                    STUDY.c.overall_status == "RECRUITING"),
                "versions": count(VERSION),
                "changes": count(EVENT),
                "syncs": count(RUN),
            }

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
                where: StudyFilter | None = None) -> list[ChangeEvent]:
        # Newest sync first; within a sync, the order the diff reported them.
        query = select(EVENT).order_by(EVENT.c.sync_run_id.desc(), EVENT.c.id)
        if where is not None and where.active:
            query = query.join(STUDY, STUDY.c.nct_id == EVENT.c.nct_id).where(*where.clauses())
        if since is not None:
            query = query.where(EVENT.c.detected_at >= since)
        if nct_id:
            query = query.where(EVENT.c.nct_id == nct_id)
        if kinds:
            query = query.where(EVENT.c.kind.in_(kinds))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [ChangeEvent(**row) for row in conn.execute(query).mappings()]

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


    def tag_counts(self) -> dict[str, dict[str, int]]:
        """How many tracked studies carry each subtype and each therapy class."""
        counts: dict[str, dict[str, int]] = {"subtypes": {}, "therapies": {}}
        query = (select(STUDY.c.subtypes, STUDY.c.therapies)
                 .where(STUDY.c.removed_at.is_(None)))
        with self.engine.connect() as conn:
            for subtypes, therapies in conn.execute(query):
                for group, joined in (("subtypes", subtypes), ("therapies", therapies)):
                    for tag in (joined or "").split("|"):
                        if tag:
                            counts[group][tag] = counts[group].get(tag, 0) + 1
        return counts

    def retag(self, tagger: Tagger) -> int:
        """Re-tag every study tagged with another vocabulary (or none); returns how many.

        Runs on start-up, so editing the vocabulary file takes effect on the next command.
        """
        digest = tagger.vocabulary.digest
        stale = (STUDY.c.vocabulary.is_(None)) | (STUDY.c.vocabulary != digest)
        done = 0
        with self.engine.begin() as conn:
            pending = conn.execute(select(STUDY.c.nct_id, STUDY.c.version_id).where(stale)
                                   .order_by(STUDY.c.nct_id)).all()
            for start in range(0, len(pending), BATCH):
                rows = []
                for nct_id, version_id in pending[start:start + BATCH]:
                    if version_id is None:
                        continue
                    blob = conn.execute(select(VERSION.c.record)
                                        .where(VERSION.c.id == version_id)).scalar_one()
                    record = decompress(blob)
                    rows.append({"nct_id": nct_id, **tag_columns(tagger.tag(record), record),
                                 "vocabulary": digest})
                Transaction(conn).update_studies(rows)
                done += len(rows)
            _explain_old_events(conn)
        return done


@dataclass(frozen=True)
class StudyFilter:
    """What `changes` and `export` narrow to; values within one option are alternatives."""

    subtypes: tuple[str, ...] = ()
    therapies: tuple[str, ...] = ()
    recruiting: bool = False
    children: bool = False
    countries: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.subtypes or self.therapies or self.recruiting or self.children
                    or self.countries)

    def clauses(self) -> list[Any]:
        out: list[Any] = []
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


def _explain_old_events(conn: Connection) -> None:
    """Events recorded before plain sentences existed get theirs from the stored values."""
    rows = conn.execute(select(EVENT.c.id, EVENT.c.kind, EVENT.c.field, EVENT.c.old_value,
                               EVENT.c.new_value, EVENT.c.summary)
                        .where(EVENT.c.plain.is_(None))).all()
    updates = [{"key_id": r[0], "v_plain": explain(Change(
        r[1], r[2], json.loads(r[3]) if r[3] else None, json.loads(r[4]) if r[4] else None,
        r[5]))} for r in rows]
    if updates:
        conn.execute(update(EVENT).where(EVENT.c.id == bindparam("key_id"))
                     .values(plain=bindparam("v_plain")), updates)


def upgrade_schema(engine: Engine) -> None:
    """Add columns (and their indexes) that this version's models have and the database lacks.

    Additive only: tables are created by `create_all`; columns are added nullable, and the
    retag pass fills them in.
    """
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c for c in table.columns if c.name not in present]
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
            if missing:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)


class Transaction:
    """Batched writes inside one database transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def known(self, nct_ids: Sequence[str]) -> dict[str, Known]:
        rows = self.conn.execute(
            select(STUDY.c.nct_id, STUDY.c.content_hash, STUDY.c.last_update_posted,
                   STUDY.c.version_id, STUDY.c.removed_at)
            .where(STUDY.c.nct_id.in_(list(nct_ids)))
        )
        return {r[0]: Known(r[1], r[2], r[3], r[4] is not None) for r in rows}

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

    def clear_listing(self) -> None:
        self.conn.execute(delete(LISTING))

    def add_listing(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(LISTING.insert(), rows)

    def listed_count(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(LISTING)).scalar_one())

    def stale_listed(self) -> list[str]:
        """Listed IDs the snapshot lacks, holds as removed, or holds at another update date."""
        query = (
            select(LISTING.c.nct_id)
            .select_from(LISTING.outerjoin(STUDY, STUDY.c.nct_id == LISTING.c.nct_id))
            .where((STUDY.c.nct_id.is_(None)) | (STUDY.c.removed_at.is_not(None))
                   | (STUDY.c.last_update_posted.is_distinct_from(LISTING.c.last_update_posted)))
            .order_by(LISTING.c.nct_id)
        )
        return list(self.conn.execute(query).scalars())

    def unlisted_active(self) -> list[str]:
        """Tracked studies missing from this sync's listing: they stopped matching."""
        query = (select(STUDY.c.nct_id)
                 .where(STUDY.c.removed_at.is_(None),
                        STUDY.c.nct_id.not_in(select(LISTING.c.nct_id)))
                 .order_by(STUDY.c.nct_id))
        return list(self.conn.execute(query).scalars())

    def mark_removed(self, nct_ids: list[str], when: datetime) -> None:
        for start in range(0, len(nct_ids), BATCH):
            chunk = nct_ids[start:start + BATCH]
            self.conn.execute(update(STUDY).where(STUDY.c.nct_id.in_(chunk))
                              .values(removed_at=when, last_changed_at=when))


def _engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            try:
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError(
                    f"Cannot create the folder for TRACKER_DATABASE_URL={url}: {error}"
                ) from error
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (sa_exc.ArgumentError, ImportError) as error:
        raise ConfigError(f"TRACKER_DATABASE_URL={redact_url(url)} cannot be used: {error}"
                          ) from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__

