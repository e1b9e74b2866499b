"""Sync runs and scheduled job runs: when each ran, how it ended, in one line.

Each write is its own short transaction, outside a sync's, so a failed sync stays on record.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from tracker.database import Database
from tracker.models import Job, JobRun, RunStatus, SyncMode, SyncRun
from tracker.times import utcnow

RUN = SyncRun.__table__  # type: ignore[attr-defined]
JOB = JobRun.__table__  # type: ignore[attr-defined]
SUCCEEDED = (RunStatus.OK, RunStatus.SKIPPED)  # a sync that left the data current


# --- syncs ---------------------------------------------------------------------------------

def begin_sync(db: Database, query: str) -> int:
    with db.engine.begin() as conn:
        result = conn.execute(RUN.insert().values(started_at=utcnow(), status=RunStatus.RUNNING,
                                                  mode=SyncMode.FULL, query=query))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def finish_sync(db: Database, run_id: int, status: RunStatus, **values: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(RUN).where(RUN.c.id == run_id)
                     .values(status=status, finished_at=utcnow(), **values))


def mark_syncs_interrupted(db: Database) -> int:
    """Runs left running by a killed process; call only while holding the sync lock."""
    with db.engine.begin() as conn:
        result = conn.execute(
            update(RUN).where(RUN.c.status == RunStatus.RUNNING)
            .values(status=RunStatus.INTERRUPTED, finished_at=utcnow(),
                    error="Interrupted: the process stopped before the sync finished; "
                          "nothing from it was saved.")
        )
        return int(result.rowcount or 0)


def last_sync(db: Database, *statuses: RunStatus) -> SyncRun | None:
    """The latest sync run with one of these statuses (any status if none is given)."""
    query = select(RUN).order_by(RUN.c.id.desc()).limit(1)
    if statuses:
        query = query.where(RUN.c.status.in_(list(statuses)))
    with db.engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return SyncRun(**row) if row else None


def failures_before(db: Database, run_id: int | None = None) -> list[SyncRun]:
    """The failed syncs since the last successful one before `run_id` (default: now),
    oldest first: the current streak, or the streak that `run_id` ended."""
    with db.engine.connect() as conn:
        last_ok = select(func.coalesce(func.max(RUN.c.id), 0)).where(
            RUN.c.status.in_(list(SUCCEEDED)))
        query = select(RUN).where(RUN.c.status == RunStatus.FAILED).order_by(RUN.c.id)
        if run_id is not None:
            last_ok = last_ok.where(RUN.c.id < run_id)
            query = query.where(RUN.c.id < run_id)
        query = query.where(RUN.c.id > last_ok.scalar_subquery())
        return [SyncRun(**row) for row in conn.execute(query).mappings()]


def sync_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RUN)).scalar_one())


# --- scheduled jobs ------------------------------------------------------------------------

def begin_job(db: Database, job: Job) -> int:
    with db.engine.begin() as conn:
        result = conn.execute(JOB.insert().values(job=job, started_at=utcnow(),
                                                  status=RunStatus.RUNNING))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def finish_job(db: Database, job_run_id: int, status: RunStatus, summary: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(JOB).where(JOB.c.id == job_run_id)
                     .values(status=status, finished_at=utcnow(), summary=summary))


def last_job(db: Database, job: Job) -> JobRun | None:
    with db.engine.connect() as conn:
        row = conn.execute(select(JOB).where(JOB.c.job == job)
                           .order_by(JOB.c.id.desc()).limit(1)).mappings().first()
    return JobRun(**row) if row else None


def mark_jobs_interrupted(db: Database) -> int:
    """Job runs left running by a process that died; call only under the scheduler lock."""
    with db.engine.begin() as conn:
        result = conn.execute(update(JOB).where(JOB.c.status == RunStatus.RUNNING).values(
            status=RunStatus.INTERRUPTED, finished_at=utcnow(),
            summary="the scheduler stopped before this run finished"))
        return int(result.rowcount or 0)
