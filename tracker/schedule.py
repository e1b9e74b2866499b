"""`tracker run`: one long-running process that syncs, sends digests and writes the weekly
report on schedule, with APScheduler 3.

Three jobs with fixed ids, cron triggers in TRACKER_TIMEZONE, one worker thread (jobs run one
after another, never two at once), `coalesce` (a backlog of missed runs becomes one run) and
`max_instances=1`. The in-memory job store forgets everything on restart, so catching up is
ours: a job whose schedule fired since it last started (as recorded in the database) runs at
once. The scheduler lock keeps a second `tracker run` out; the sync and send locks keep a
manual `tracker sync` or `tracker digest` from running alongside a scheduled one.

On SIGTERM or Ctrl-C no new job starts; the job in flight gets `stop_timeout` seconds to finish
(a sync stops at its next request and rolls back). If it has not finished by then it is
abandoned: the process exits, its transaction is never committed, and the locks die with it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from tracker import runs
from tracker.config import Settings
from tracker.cron import cron_trigger
from tracker.database import Database
from tracker.errors import TrackerError
from tracker.jobs import SCHEDULED, Context, Outcome
from tracker.lock import Lock, hold
from tracker.models import Job, RunStatus
from tracker.times import as_utc, local_time, utcnow

SCHEDULES = {Job.SYNC: "sync_schedule", Job.DIGESTS: "digest_schedule",
             Job.REPORT: "report_schedule"}
# How late a run may start and still run (a busy worker or a suspended machine delays it):
# a sync later than half an hour waits for the next one; digests and the report are still
# worth sending hours late.
GRACE = {Job.SYNC: 30 * 60, Job.DIGESTS: 6 * 3600, Job.REPORT: 12 * 3600}


def schedule_of(settings: Settings, job: Job) -> str:
    """The job's crontab line."""
    return str(getattr(settings, SCHEDULES[job]))


def triggers(settings: Settings) -> dict[Job, CronTrigger]:
    return {job: cron_trigger(schedule_of(settings, job), settings.timezone) for job in Job}


def next_runs(settings: Settings, now: datetime) -> dict[Job, datetime | None]:
    """When each job fires next, in the schedule's time zone."""
    return {job: trigger.get_next_fire_time(None, now)
            for job, trigger in triggers(settings).items()}


def last_started(db: Database, job: Job) -> datetime | None:
    """The latest start of `job`; for the sync, a manual `tracker sync` counts too."""
    starts = []
    if (run := runs.last_job(db, job)) is not None:
        starts.append(as_utc(run.started_at))
    if job == Job.SYNC and (sync_run := runs.last_sync(db)) is not None:
        starts.append(as_utc(sync_run.started_at))
    return max(starts) if starts else None


def is_overdue(trigger: CronTrigger, last: datetime | None, now: datetime) -> bool:
    """True if the schedule fired between the last start (never: always) and now."""
    if last is None:
        return True
    missed = trigger.get_next_fire_time(None, last + timedelta(microseconds=1))
    return missed is not None and missed <= now


def overdue(settings: Settings, db: Database, now: datetime) -> list[Job]:
    return [job for job, trigger in triggers(settings).items()
            if is_overdue(trigger, last_started(db, job), now)]


def build_scheduler(settings: Settings, run: Callable[[Job], object], *,
                    catch_up: Sequence[Job] = (), now: datetime | None = None
                    ) -> BackgroundScheduler:
    """The scheduler with its three jobs; jobs in `catch_up` run at once, in `Job` order."""
    now = now or utcnow()
    scheduler = BackgroundScheduler(
        timezone=settings.timezone,
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1},
    )
    for order, (job, trigger) in enumerate(triggers(settings).items()):
        first = now + timedelta(seconds=order) if job in catch_up \
            else trigger.get_next_fire_time(None, now)
        scheduler.add_job(run, trigger, args=[job], id=job, name=job, coalesce=True,
                          max_instances=1, misfire_grace_time=GRACE[job],
                          replace_existing=True, next_run_time=first)
    return scheduler


class Runner:
    """Runs one job, records it in the database and logs its outcome and the next run."""

    def __init__(self, ctx: Context, log: logging.Logger,
                 next_run: Callable[[Job], datetime | None] = lambda job: None,
                 jobs: dict[Job, Callable[[Context], Outcome]] | None = None) -> None:
        self.ctx = ctx
        self.jobs = jobs or SCHEDULED
        self.log = log
        self.next_run = next_run
        self.current: Job | None = None
        self.idle = threading.Event()
        self.idle.set()

    def __call__(self, job: Job) -> Outcome:
        ctx = self.ctx
        if ctx.stop.is_set():
            return Outcome(RunStatus.SKIPPED, "the scheduler is stopping")
        self.current = job
        self.idle.clear()
        started = utcnow()
        run_id = runs.begin_job(ctx.db, job)
        try:
            outcome = self.jobs[job](ctx)
        except TrackerError as error:  # a bad setting, a full disk: one clear line
            outcome = Outcome(RunStatus.FAILED, str(error))
        except Exception as error:  # a bug: keep the scheduler alive, keep the traceback
            self.log.exception("%s: unexpected error", job)
            outcome = Outcome(RunStatus.FAILED, f"unexpected {type(error).__name__}: {error}")
        finally:
            self.current = None
        try:
            runs.finish_job(ctx.db, run_id, outcome.status, outcome.summary)
        finally:
            self.idle.set()
        took = (utcnow() - started).total_seconds()
        level = logging.INFO if outcome.status in runs.SUCCEEDED else logging.WARNING
        self.log.log(level, "%s %s in %.1fs: %s; next %s", job, outcome.status, took,
                     outcome.summary.rstrip("."),
                     local_time(self.next_run(job), ctx.settings.timezone, "not scheduled"))
        return outcome


def run(ctx: Context, log: logging.Logger,
        jobs: dict[Job, Callable[[Context], Outcome]] | None = None) -> bool:
    """Run the scheduler until SIGTERM or Ctrl-C (or `ctx.stop` is set). Returns True if it
    stopped cleanly, False if a job in flight had to be abandoned."""
    settings, db = ctx.settings, ctx.db
    stop, hurry = ctx.stop, threading.Event()
    with hold(db, Lock.SCHEDULER), _stop_on_signals(stop, hurry, log):
        runs.mark_jobs_interrupted(db)
        now = utcnow()
        late = overdue(settings, db, now)
        scheduler: BackgroundScheduler | None = None

        def next_run(job: Job) -> datetime | None:
            found = scheduler.get_job(job) if scheduler else None
            return found.next_run_time if found else None

        runner = Runner(ctx, log, next_run, jobs)
        scheduler = build_scheduler(settings, runner, catch_up=late, now=now)
        scheduler.start(paused=True)  # the plan is logged before anything runs
        log.info("Scheduler started; times in %s. Stop with SIGTERM or Ctrl-C.",
                 settings.timezone.key)
        for job in Job:
            log.info("  %-8s %-16s next %s", job, schedule_of(settings, job),
                     "now (catching up)" if job in late
                     else local_time(next_run(job), settings.timezone, "not scheduled"))
        if late:
            log.info("Catching up now: %s (their schedule fired since they last ran).",
                     ", ".join(late))
        scheduler.resume()
        while not stop.wait(1.0):
            pass
        scheduler.shutdown(wait=False)
        busy = runner.current
        if busy:
            log.info("Stopping: waiting up to %.0fs for the %s job to finish (a second "
                     "signal stops at once).", settings.stop_timeout, busy)
        deadline = time.monotonic() + settings.stop_timeout
        while not runner.idle.wait(0.1):
            if hurry.is_set() or time.monotonic() > deadline:
                break
        else:
            log.info("Stopped cleanly.")
            return True
        why = "at a second signal" if hurry.is_set() else \
            f"after {settings.stop_timeout:.0f}s"
        log.warning("Stopping: the %s job is abandoned %s; nothing it did is half-saved (a "
                    "sync is one transaction, the outbox never sends twice).",
                    runner.current, why)
        return False


@contextmanager
def _stop_on_signals(stop: threading.Event, hurry: threading.Event,
                     log: logging.Logger) -> Iterator[None]:
    def handle(number: int, frame: FrameType | None) -> None:
        log.info("Received %s.", signal.Signals(number).name)
        if stop.is_set():
            hurry.set()
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; the caller stops us with `stop`
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
