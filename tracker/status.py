"""What `tracker status` reports, gathered in one place as plain JSON-able data: where the
data is, how fresh, what is stored, the outbox, the subscribers and the scheduler.

Reads only, and counts in the database (never loads messages or studies to count them).
"""

from __future__ import annotations

from typing import Any

from tracker import outbox, runs, schedule, subscribers
from tracker.jobs import Context
from tracker.lock import Lock, holder
from tracker.models import Job, RunStatus
from tracker.notify import failed_since
from tracker.staging import Staging
from tracker.views import run_dict


def overview(ctx: Context) -> dict[str, Any]:
    db, settings = ctx.db, ctx.settings
    last_ok = runs.last_sync(db, *runs.SUCCEEDED)
    last_data = runs.last_sync(db, RunStatus.OK)
    last_failed = runs.last_sync(db, RunStatus.FAILED)
    counts = ctx.store.counts()
    people = subscribers.counts(db)
    messages = outbox.counts(db)
    return {
        "database": db.where,
        "api": settings.base_url,
        "data_timestamp": last_ok.data_timestamp if last_ok else None,
        "last_success": run_dict(last_ok),
        "last_data_change": run_dict(last_data),
        "last_failure": run_dict(last_failed),
        "last_sync_failed": failed_since(last_failed, last_ok),
        "failed_in_a_row": len(runs.failures_before(db)),
        "held_removals": len(Staging(db).held()),
        "counts": {"tracked": counts.tracked, "removed": counts.removed,
                   "recruiting": counts.recruiting, "versions": counts.versions,
                   "changes": counts.changes, "syncs": runs.sync_count(db)},
        "mail": {"confirmed": people.confirmed, "unconfirmed": people.unconfirmed,
                 **{str(status): n for status, n in messages.items()}},
        "scheduler": _scheduler(ctx),
    }


def _scheduler(ctx: Context) -> dict[str, Any]:
    next_runs = schedule.next_runs(ctx.settings, ctx.clock())
    jobs: dict[str, Any] = {}
    for job in Job:
        last = runs.last_job(ctx.db, job)
        upcoming = next_runs[job]
        jobs[job] = {
            "schedule": schedule.schedule_of(ctx.settings, job),
            "next": upcoming.isoformat() if upcoming else None,
            "last": {"status": last.status, "started_at": last.started_at.isoformat(),
                     "summary": last.summary} if last else None,
        }
    return {"running": holder(ctx.db, Lock.SCHEDULER), "timezone": ctx.settings.timezone.key,
            "jobs": jobs}
