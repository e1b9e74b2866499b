"""`tracker run`: the scheduler's wiring (paused), catch-up after downtime with a moving clock,
one scheduler at a time, a graceful stop, and the real command in a subprocess."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import time_machine
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import update

from tests.conftest import free_port, interruptible, updated
from tests.fakeapi import FakeApi, Registry
from tests.smtp import smtp_server
from tracker import jobs as J
from tracker import outbox, runs
from tracker.config import Settings
from tracker.errors import LockBusy
from tracker.jobs import SCHEDULED, Context, Outcome
from tracker.models import Job
from tracker.runs import JOB, RUN
from tracker.schedule import (
    GRACE,
    Runner,
    build_scheduler,
    is_overdue,
    next_runs,
    overdue,
    run,
)
from tracker.store import Store
from tracker.tags import Tagger
from tracker.vocabulary import load_vocabulary

PARIS = ZoneInfo("Europe/Paris")
TAGGER = Tagger(load_vocabulary())
SUNDAY = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # 11:00 in Paris


@pytest.fixture
def paris(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, timezone=PARIS, max_retries=0,
                               report_dir=tmp_path / "reports", digest_dir=tmp_path / "digests",
                               secret_key="k" * 32, stop_timeout=10)


def test_the_scheduler_has_three_jobs_with_fixed_ids_cron_triggers_and_safe_defaults(
        paris: Settings) -> None:
    with time_machine.travel(SUNDAY, tick=False):
        scheduler = build_scheduler(paris, lambda job: None)
        scheduler.start(paused=True)
        try:
            jobs = {job.id: job for job in scheduler.get_jobs()}
        finally:
            scheduler.shutdown(wait=False)

    assert set(jobs) == set(Job) == {"sync", "digests", "report"}
    for job_id, job in jobs.items():
        assert isinstance(job.trigger, CronTrigger)
        assert job.trigger.timezone == PARIS
        assert (job.coalesce, job.max_instances) == (True, 1)
        assert job.misfire_grace_time == GRACE[job_id]
        assert job.args == (job_id,)
    assert str(jobs["sync"].trigger) == "cron[month='*', day='*', day_of_week='*', " \
                                        "hour='*/6', minute='0']"
    assert str(jobs["report"].trigger).startswith("cron[month='*', day='*', day_of_week='mon'")
    assert jobs["sync"].next_run_time == datetime(2026, 11, 22, 12, 0, tzinfo=PARIS)
    assert jobs["digests"].next_run_time == datetime(2026, 11, 23, 7, 0, tzinfo=PARIS)
    assert jobs["report"].next_run_time == datetime(2026, 11, 23, 6, 0, tzinfo=PARIS)
    assert next_runs(paris, SUNDAY) == {job: jobs[job].next_run_time for job in Job}


def test_schedules_and_time_zone_come_from_settings(paris: Settings) -> None:
    custom = dataclasses.replace(paris, sync_schedule="15 14 * * 1-5",
                                 report_schedule="0 8 * * 0",
                                 timezone=ZoneInfo("America/New_York"))

    upcoming = next_runs(custom, SUNDAY)

    ny = ZoneInfo("America/New_York")
    assert upcoming["sync"] == datetime(2026, 11, 23, 14, 15, tzinfo=ny)  # Monday, cron's 1
    # cron's 0 is Sunday, and it is 05:00 on Sunday in New York
    assert upcoming["report"] == datetime(2026, 11, 22, 8, 0, tzinfo=ny)


def test_overdue_jobs_run_at_once_in_order_the_others_wait_for_their_time(
        paris: Settings) -> None:
    scheduler = build_scheduler(paris, lambda job: None, catch_up=["report", "sync"],
                                now=SUNDAY)
    scheduler.start(paused=True)
    try:
        times = {job.id: job.next_run_time for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)

    assert times["sync"] == SUNDAY
    assert times["report"] == SUNDAY + timedelta(seconds=2)  # after the sync
    assert times["digests"] == datetime(2026, 11, 23, 7, 0, tzinfo=PARIS)


def test_a_job_is_overdue_when_its_time_came_since_it_last_started() -> None:
    six_hourly = CronTrigger(hour="*/6", minute="0", timezone=UTC)
    ran = datetime(2026, 11, 22, 6, 0, 0, 300_000, tzinfo=UTC)

    assert is_overdue(six_hourly, None, ran)  # never ran
    assert not is_overdue(six_hourly, ran, ran + timedelta(hours=5, minutes=59))
    assert is_overdue(six_hourly, ran, datetime(2026, 11, 22, 12, 0, 1, tzinfo=UTC))
    assert is_overdue(six_hourly, ran, ran + timedelta(days=3))


def context(settings: Settings, store: Store, **kwargs: object) -> Context:
    ctx = Context(settings, store.db, **kwargs)  # type: ignore[arg-type]
    ctx.tagger = TAGGER
    return ctx


def test_catch_up_follows_the_clock_and_the_database(paris: Settings, store: Store) -> None:
    runner = Runner(context(paris, store), logging.getLogger("test"))
    with time_machine.travel(datetime(2026, 11, 23, 5, 0, tzinfo=UTC), tick=False) as clock:
        assert overdue(paris, store.db, datetime.now(UTC)) == ["sync", "digests", "report"]
        for job in Job:
            assert runner(job).status == "ok"
        assert overdue(paris, store.db, datetime.now(UTC)) == []

        clock.move_to(datetime(2026, 11, 23, 5, 59, tzinfo=UTC))  # 06:59 in Paris
        assert overdue(paris, store.db, datetime.now(UTC)) == []
        clock.move_to(datetime(2026, 11, 23, 6, 30, tzinfo=UTC))  # the 07:00 digests missed
        assert overdue(paris, store.db, datetime.now(UTC)) == ["digests"]
        runner("digests")
        clock.move_to(datetime(2026, 11, 23, 10, 59, tzinfo=UTC))  # 11:59
        assert overdue(paris, store.db, datetime.now(UTC)) == []
        clock.move_to(datetime(2026, 11, 23, 11, 30, tzinfo=UTC))  # the 12:00 sync was missed
        assert overdue(paris, store.db, datetime.now(UTC)) == ["sync"]
        clock.move_to(datetime(2026, 11, 24, 6, 30, tzinfo=UTC))  # digests at 07:00 too
        assert overdue(paris, store.db, datetime.now(UTC)) == ["sync", "digests"]
        clock.move_to(datetime(2026, 11, 30, 6, 30, tzinfo=UTC))  # and Monday's report
        assert overdue(paris, store.db, datetime.now(UTC)) == ["sync", "digests", "report"]


def test_a_manual_sync_counts_as_the_sync_having_run(paris: Settings, store: Store) -> None:
    with time_machine.travel(datetime(2026, 11, 23, 5, 0, tzinfo=UTC), tick=False):
        J.sync(context(paris, store))  # not through the runner: no job run recorded
        assert "sync" not in overdue(paris, store.db, datetime.now(UTC))


def test_the_runner_records_each_run_and_logs_its_outcome_and_next_time(
        paris: Settings, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    failing = {**SCHEDULED, Job.DIGESTS: lambda ctx: Outcome("failed", "the mail server refused")}
    runner = Runner(context(paris, store), logging.getLogger("test"),
                    next_run=lambda job: datetime(2026, 11, 23, 7, 0, tzinfo=PARIS),
                    jobs=failing)  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO, logger="test"):
        runner("sync")
        runner("digests")

    sync_run, digests_run = runs.last_job(store.db, "sync"), runs.last_job(store.db, "digests")
    assert sync_run is not None and sync_run.status == "ok"
    assert (sync_run.summary or "").startswith("Baseline recorded")
    assert digests_run is not None and digests_run.status == "failed"
    first, second = caplog.records
    assert first.levelname == "INFO" and first.getMessage().startswith("sync ok in ")
    assert first.getMessage().endswith("; next 2026-11-23 07:00 CET")
    assert second.levelname == "WARNING"
    assert second.getMessage().startswith("digests failed in ")


def test_a_job_raising_a_bug_is_recorded_and_the_scheduler_lives_on(
        paris: Settings, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    broken = {**SCHEDULED, Job.REPORT: lambda ctx: 1 / 0}
    runner = Runner(context(paris, store), logging.getLogger("test"),
                    jobs=broken)  # type: ignore[arg-type]

    outcome = runner("report")

    assert outcome == Outcome("failed", "unexpected ZeroDivisionError: division by zero")
    assert any(r.exc_info for r in caplog.records)  # the traceback is in the log
    assert runner.idle.is_set() and runner.current is None


def run_in_thread(settings: Settings, store: Store, stop: threading.Event
                  ) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    ctx = context(settings, store, stop=stop)
    thread = threading.Thread(target=lambda: result.append(run(ctx, logging.getLogger("test"))))
    thread.start()
    return thread, result


def wait_for(condition: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.slow
def test_only_one_scheduler_runs_and_it_stops_cleanly(paris: Settings, store: Store) -> None:
    stop = threading.Event()
    thread, result = run_in_thread(paris, store, stop)
    wait_for(lambda: (r := runs.last_job(store.db, "report")) and r.status != "running")

    with pytest.raises(LockBusy, match=r"Another scheduler \('tracker run'\) is already"):
        run(context(paris, store), logging.getLogger("test"))
    stop.set()
    thread.join(timeout=15)

    assert result == [True]
    assert [runs.last_job(store.db, j).status for j in Job] == ["ok", "ok", "ok"]  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_stop_during_a_sync_interrupts_it_without_saving_anything(
        paris: Settings, store: Store, registry: Registry) -> None:
    J.sync(context(paris, store))
    with store.engine.begin() as conn:  # the last sync was long ago: catch up at start
        conn.execute(update(RUN).values(started_at=datetime(2026, 1, 1, tzinfo=UTC)))
    registry.data_timestamp = "2026-11-21T09:00:05"
    registry.put(updated(registry.studies["NCT07725679"]))
    registry.fail(match=lambda path, params: path.endswith("/studies"), delay=1.5,
                  passthrough=True)  # the first request for studies is slow
    before = len(registry.requests("/studies"))
    stop = threading.Event()
    thread, result = run_in_thread(paris, store, stop)
    wait_for(lambda: len(registry.requests("/studies")) > before)

    stop.set()
    thread.join(timeout=15)

    assert result == [True]
    assert runs.last_job(store.db, "sync").status == "interrupted"  # type: ignore[union-attr]
    assert runs.last_sync(store.db).status == "interrupted"  # type: ignore[union-attr]
    assert store.changes() == []
    assert runs.last_job(store.db, "digests") is None  # queued behind the sync, never started


@pytest.mark.slow
def test_a_job_that_overruns_the_stop_timeout_is_abandoned(
        paris: Settings, store: Store, registry: Registry) -> None:
    registry.fail(match=lambda path, params: path.endswith("/version"), status=200, delay=4,
                  body=b'{"apiVersion": "2.0.5", "dataTimestamp": "2026-11-20T09:00:05"}')
    stop = threading.Event()
    thread, result = run_in_thread(dataclasses.replace(paris, stop_timeout=0.5), store, stop)
    wait_for(lambda: registry.requests("/version"))

    started = time.monotonic()
    stop.set()
    wait_for(lambda: result, timeout=5)

    assert result == [False]
    assert time.monotonic() - started < 2
    thread.join(timeout=15)


# --- the real command ---------------------------------------------------------------------------

def tracker(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_tracker_run_syncs_sends_and_exits_cleanly_on_sigterm(
        fake_api: FakeApi, registry: Registry, tmp_path: Path) -> None:
    database = tmp_path / "data" / "tracker.db"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CTGOV_"))}
    with smtp_server() as mailbox:
        env = {**clean, "CTGOV_BASE_URL": fake_api.base_url,
               "TRACKER_DATABASE_URL": f"sqlite:///{database}",
               "TRACKER_REQUEST_INTERVAL": "0", "TRACKER_MAX_RETRIES": "0",
               "TRACKER_SECRET_KEY": "k" * 32, "TRACKER_TIMEZONE": "Europe/Paris",
               "TRACKER_SMTP_HOST": "127.0.0.1", "TRACKER_SMTP_PORT": str(mailbox.port),
               "TRACKER_SMTP_SECURITY": "none", "TRACKER_MAIL_FROM": "tracker@example.org",
               "TRACKER_WEB_PORT": str(web_port := free_port())}
        assert tracker(env, "sync", cwd=tmp_path).returncode == 0
        assert tracker(env, "subscribe", "pat@example.org", "--changes", "all", "--cadence",
                       "daily", "--confirmed", cwd=tmp_path).returncode == 0
        study = updated(registry.studies["NCT07725679"])
        study["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
        registry.put(study)
        registry.data_timestamp = "2026-11-21T09:00:05"
        store = Store.open(f"sqlite:///{database}", create=True)
        with store.engine.begin() as conn:  # the tracker was down for a day
            conn.execute(update(RUN).values(started_at=datetime.now(UTC) - timedelta(days=1)))

        process = subprocess.Popen([sys.executable, "-m", "tracker", "run"], env=env,
                                   cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: mailbox.accepted)
            wait_for(lambda: (r := runs.last_job(store.db, "report")) and r.status != "running")
            health = httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=5)
            report_index = httpx.get(f"http://127.0.0.1:{web_port}/reports/", timeout=5)
            second = tracker(env, "run", cwd=tmp_path)
            status = tracker(env, "status", cwd=tmp_path)
        finally:
            process.send_signal(signal.SIGTERM)
            _, log = process.communicate(timeout=30)

    assert process.returncode == 0, log
    assert "Catching up now: sync, digests, report" in log
    assert log.count("next now (catching up)") == 3  # the plan, logged before anything runs
    assert log.index("Catching up now") < log.index("sync ok in ")
    assert "sync ok in " in log and "1 changed" in log
    assert "digests ok in " in log and "1 sent" in log
    assert "report ok in " in log
    assert "Received SIGTERM." in log and log.rstrip().endswith("Stopped cleanly.")
    assert f"Serving the site on http://127.0.0.1:{web_port}/" in log
    assert health.status_code == 200  # the site answers while the scheduler runs
    assert report_index.status_code == 200 and "2026-W" in report_index.text
    [received] = mailbox.accepted
    assert received.rcpt_tos == ("pat@example.org",)
    assert "Now recruiting" in received.message.get_body(("plain",)).get_content()
    assert second.returncode == 3
    assert "Another scheduler ('tracker run') is already running (pid " in second.stderr
    assert f"Scheduler:             running (pid {process.pid}" in status.stdout
    assert "  sync     0 */6 * * *      next " in status.stdout
    assert [m.status for m in outbox.messages(store.db)] == ["sent"]
    assert [r["status"] for r in store.engine.connect().execute(
        JOB.select().order_by(JOB.c.id)).mappings()] == ["ok", "ok", "ok"]
    store.close()


def test_the_systemd_unit_runs_the_scheduler_and_outwaits_its_graceful_stop() -> None:
    unit = (Path(__file__).parents[1] / "docs" / "tracker.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines()
                 if "=" in line and not line.startswith("#"))

    assert lines["ExecStart"].endswith("/.venv/bin/tracker run")
    assert lines["KillSignal"] == "SIGTERM"
    assert float(lines["TimeoutStopSec"]) > Settings().stop_timeout
    assert set(lines["RestartPreventExitStatus"].split()) == {"2", "3"}  # bad config, lock


@pytest.mark.slow
def test_ctrl_c_twice_abandons_a_stuck_sync_at_once_and_loses_nothing(
        fake_api: FakeApi, registry: Registry, tmp_path: Path) -> None:
    database = tmp_path / "tracker.db"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CTGOV_"))}
    env = {**clean, "CTGOV_BASE_URL": fake_api.base_url,
           "TRACKER_DATABASE_URL": f"sqlite:///{database}", "TRACKER_REQUEST_INTERVAL": "0",
           "TRACKER_STOP_TIMEOUT": "600", "TRACKER_TIMEOUT": "60", "TRACKER_WEB": "off"}
    registry.fail(match=lambda path, params: path.endswith("/studies"), delay=30,
                  passthrough=True)  # the registry hangs on the first page
    process = subprocess.Popen([sys.executable, "-m", "tracker", "run"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=interruptible)
    try:
        wait_for(lambda: registry.requests("/studies"))
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, log = process.communicate(timeout=10)
    finally:
        process.kill()

    assert time.monotonic() - started < 5
    assert process.returncode == 1, log
    assert "Stopping: waiting up to 600s for the sync job to finish" in log
    assert "the sync job is abandoned at a second signal; nothing it did is half-saved" in log
    store = Store.open(f"sqlite:///{database}", create=True)
    assert store.counts().tracked == 0 and store.changes() == []
    assert (tracker(env, "sync", cwd=tmp_path).returncode == 0)  # no stale lock left behind
    assert runs.last_sync(store.db, "interrupted") is not None  # the abandoned run, marked as such
    store.close()
