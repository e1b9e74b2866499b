"""The scheduled jobs, called directly: what each does, and how failing syncs alert the operator
once per run of failures (and once more on recovery), never more."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from starlette.testclient import TestClient

from tests.conftest import updated
from tests.fakeapi import Registry
from tests.smtp import Mailbox, smtp_server
from tracker import jobs as J
from tracker import outbox, runs, subscribers, tokens
from tracker.config import Settings
from tracker.database import Database
from tracker.errors import ConfigError
from tracker.jobs import Context
from tracker.lock import Lock, hold
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.tags import Tagger
from tracker.times import utcnow
from tracker.vocabulary import load_vocabulary
from tracker.web import create_app

TAGGER = Tagger(load_vocabulary())
ADMIN = "ops@example.org"
SECRET = "s" * 32


@pytest.fixture
def job_settings(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, max_retries=0, admin_email=ADMIN, alert_after=3,
                               secret_key=SECRET, digest_dir=tmp_path / "digests",
                               report_dir=tmp_path / "reports",
                               mail_from="Tracker <tracker@trials.example.org>")


def context(settings: Settings, store: Store, **kwargs: object) -> Context:
    ctx = Context(settings, store.db, **kwargs)  # type: ignore[arg-type]
    ctx.tagger = TAGGER
    return ctx


@pytest.fixture
def jobs(job_settings: Settings, store: Store) -> Context:
    return context(job_settings, store)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


def refresh(registry: Registry, stamp: str) -> None:
    """The registry publishes new data, so the next sync really fetches."""
    registry.data_timestamp = stamp


def failing(registry: Registry) -> None:
    registry.fail(status=503, times=10_000)


def alerts(store: Store) -> list[tuple[str, str]]:
    return [(m.recipient, m.subject) for m in outbox.messages(store.db) if m.kind == "alert"]


def test_the_sync_job_syncs_and_says_what_it_did(jobs: Context, store: Store) -> None:
    outcome = J.sync(jobs)

    assert outcome.status == "ok"
    assert outcome.summary.startswith("Baseline recorded: 7 studies")
    assert store.counts().tracked == 7


def test_three_failed_syncs_in_a_row_alert_the_operator_once_and_recovery_once(
        jobs: Context, store: Store, registry: Registry, job_settings: Settings) -> None:
    assert J.sync(jobs).status == "ok"
    failing(registry)
    outcomes = []
    for day in range(21, 26):
        refresh(registry, f"2026-11-{day}T09:00:05")
        outcomes.append(J.sync(jobs))

    assert [o.status for o in outcomes] == ["failed"] * 5
    assert "failed in a row" not in outcomes[1].summary
    assert outcomes[2].summary.endswith(f"(3 failed in a row; alert queued for {ADMIN})")
    assert outcomes[4].summary.endswith(f"(5 failed in a row; already alerted: {ADMIN})")
    assert alerts(store) == [(ADMIN, "Myositis trials tracker: 3 syncs in a row have failed")]
    [alert] = [m for m in outbox.messages(store.db) if m.kind == "alert"]
    assert alert.status == "sent"  # no mail server configured: written as a file
    assert "HTTP 503" in alert.text_body and "only alert for this run" in alert.text_body
    assert len(list(job_settings.digest_dir.glob("*-alert-*.eml"))) == 1

    registry.faults.clear()
    recovered = J.sync(jobs)
    again = J.sync(jobs)

    assert recovered.status == "ok"
    assert recovered.summary.endswith("2026-11-25T09:00:05; the operator was told syncing works "
                                      "again")
    assert again.status == "ok" and "operator" not in again.summary
    assert alerts(store) == [(ADMIN, "Myositis trials tracker: 3 syncs in a row have failed"),
                             (ADMIN, "Myositis trials tracker: syncing works again")]
    recovery = outbox.messages(store.db)[-1]
    assert "after 5 failed attempts in a row" in recovery.text_body


def test_a_new_run_of_failures_gets_its_own_alert(jobs: Context, store: Store,
                                                  registry: Registry) -> None:
    J.sync(jobs)
    for streak, days in enumerate(((21, 22, 23), (24, 25, 26)), 1):
        failing(registry)
        for day in days:
            refresh(registry, f"2026-11-{day}T09:00:05")
            J.sync(jobs)
        registry.faults.clear()
        J.sync(jobs)
        assert len(alerts(store)) == 2 * streak


def test_short_runs_of_failures_and_a_missing_admin_address_send_nothing(
        jobs: Context, store: Store, registry: Registry) -> None:
    J.sync(jobs)
    failing(registry)
    for day in (21, 22):
        refresh(registry, f"2026-11-{day}T09:00:05")
        J.sync(jobs)
    registry.faults.clear()
    J.sync(jobs)
    assert alerts(store) == []  # two failures: under the threshold, and no recovery mail

    quiet = context(dataclasses.replace(jobs.settings, admin_email=None), store)
    failing(registry)
    outcomes = []
    for day in (23, 24, 25):
        refresh(registry, f"2026-11-{day}T09:00:05")
        outcomes.append(J.sync(quiet))
    assert "set TRACKER_ADMIN_EMAIL to be told by e-mail" in outcomes[-1].summary
    assert outbox.messages(store.db) == []


@pytest.mark.slow
def test_the_alert_goes_to_the_operator_over_smtp(job_settings: Settings, store: Store,
                                                  registry: Registry,
                                                  mailbox: Mailbox) -> None:
    jobs = context(dataclasses.replace(job_settings, smtp_host="127.0.0.1",
                                    smtp_port=mailbox.port, smtp_security="none",
                                    smtp_timeout=5), store)
    J.sync(jobs)
    failing(registry)
    for day in (21, 22, 23):
        refresh(registry, f"2026-11-{day}T09:00:05")
        J.sync(jobs)

    [received] = mailbox.accepted
    assert received.rcpt_tos == (ADMIN,)
    message = received.message
    assert message["Subject"] == "Myositis trials tracker: 3 syncs in a row have failed"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "HTTP 503" in message.get_body(("plain",)).get_content()


def test_an_smtp_outage_keeps_the_alert_queued_and_the_job_says_so(
        job_settings: Settings, store: Store, registry: Registry) -> None:
    warnings: list[str] = []
    jobs = context(dataclasses.replace(job_settings, smtp_host="127.0.0.1", smtp_port=9,
                                    smtp_security="none", smtp_timeout=2), store,
                warn=warnings.append)
    J.sync(jobs)
    failing(registry)
    for day in (21, 22, 23):
        refresh(registry, f"2026-11-{day}T09:00:05")
        J.sync(jobs)

    [alert] = [m for m in outbox.messages(store.db) if m.kind == "alert"]
    assert alert.status == "queued"
    assert any(f"the alert to {ADMIN} is queued" in w for w in warnings)


def test_digests_say_the_data_may_be_stale_after_failed_syncs(
        jobs: Context, store: Store, registry: Registry, job_settings: Settings) -> None:
    J.sync(jobs)
    subscribers.subscribe(store.db, "pat@example.org", Preferences(changes="all", cadence="daily"),
                     confirmed=True, now=utcnow())
    study = updated(registry.studies["NCT07725679"])
    study["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    registry.put(study)
    refresh(registry, "2026-11-21T09:00:05")
    J.sync(jobs)
    failing(registry)
    for day in (22, 23):
        refresh(registry, f"2026-11-{day}T09:00:05")
        J.sync(jobs)

    outcome = J.digests(jobs)

    assert outcome.status == "ok"
    # Pat's, and the operator's digest of every change (file mode: no mail server).
    assert outcome.summary.startswith("2 digest(s) queued, 0 with nothing new, 0 not due; "
                                      "2 written")
    [digest] = [m for m in outbox.messages(store.db) if m.kind == "digest"]
    assert digest.status == "sent"
    assert "the last 2 attempts to update from ClinicalTrials.gov failed" in digest.text_body
    assert "Now recruiting" in digest.text_body


def test_the_digest_job_needs_a_secret_key_only_once_someone_is_due(
        job_settings: Settings, store: Store) -> None:
    keyless = context(dataclasses.replace(job_settings, secret_key=None), store)
    J.sync(keyless)

    alone = J.digests(keyless)  # a fresh site: nobody has subscribed yet

    assert alone.status == "ok"
    assert alone.summary.startswith("0 digest(s) queued, 0 with nothing new, 0 not due")
    subscribers.subscribe(store.db, "pat@example.org", Preferences(), confirmed=True, now=utcnow())
    with pytest.raises(ConfigError, match="TRACKER_SECRET_KEY is not set"):
        J.digests(keyless)
    assert subscribers.find(store.db, "pat@example.org").served_at is None  # still due


def test_the_report_job_writes_the_last_complete_week_of_the_configured_zone(
        job_settings: Settings, store: Store) -> None:
    tokyo = dataclasses.replace(job_settings, timezone=__import__("zoneinfo").ZoneInfo(
        "Asia/Tokyo"))
    J.sync(context(tokyo, store))
    # Sunday 16:00 UTC is already Monday 01:00 in Tokyo: week 47 is complete there.
    with time_machine.travel(datetime(2026, 11, 22, 16, 0, tzinfo=UTC), tick=False):
        outcome = J.report(context(tokyo, store))

    assert outcome.status == "ok" and "2026-W47" in outcome.summary
    assert (tokyo.report_dir / "2026-W47.html").is_file()
    assert (tokyo.report_dir / "index.html").is_file()


def test_a_sync_already_running_makes_the_job_skip(jobs: Context, store: Store) -> None:
    with hold(store.db, Lock.SYNC):
        outcome = J.sync(jobs)

    assert outcome.status == "skipped"
    assert outcome.summary.startswith("Another sync is already running")
    assert runs.last_sync(store.db) is None


def test_a_stop_request_interrupts_the_sync_and_saves_nothing(
        job_settings: Settings, store: Store, registry: Registry) -> None:
    stop = threading.Event()
    jobs = context(job_settings, store, stop=stop)
    J.sync(jobs)
    refresh(registry, "2026-11-21T09:00:05")
    registry.put(updated(registry.studies["NCT07725679"]))
    stop.set()

    outcome = J.sync(jobs)

    assert outcome.status == "interrupted"
    run = runs.last_sync(store.db)
    assert run is not None and run.status == "interrupted"
    assert runs.failures_before(store.db) == []  # a stop is not a failure: no alert, no warning
    assert store.changes() == []


def test_a_sync_waiting_on_the_registry_holds_up_no_one(
        job_settings: Settings, store: Store, registry: Registry, tmp_path: Path) -> None:
    """A sync stalled on a slow registry: subscribing, sending digests and a one-click
    unsubscribe each finish in under a second, and the sync then completes."""
    J.sync(context(job_settings, store))
    pat, _ = subscribers.subscribe(store.db, "pat@example.org",
                                   Preferences(changes="all", cadence="daily"), confirmed=True,
                                   now=utcnow())
    registry.put(updated(registry.studies["NCT07725679"]))
    refresh(registry, "2026-11-21T09:00:05")
    registry.fail(match=lambda path, params: "filter.advanced" in params, status=200, delay=4,
                  passthrough=True)  # the updated studies take four seconds to come
    syncing = context(job_settings, store)
    outcome: list[J.Synced] = []
    thread = threading.Thread(target=lambda: outcome.append(J.sync(syncing)))
    thread.start()
    while not registry.requests("/studies") or \
            "filter.advanced" not in registry.requests("/studies")[-1]:
        time.sleep(0.02)
    time.sleep(0.2)  # the listing is staged; the sync now waits on the registry

    other = Database.open(job_settings.database_url)  # another process, as far as locks go
    try:
        ctx = Context(job_settings, other)
        ctx.tagger = TAGGER
        took = {}
        started = time.monotonic()
        J.subscribe(ctx, "sam@example.org", Preferences())
        took["subscribe"] = time.monotonic() - started
        started = time.monotonic()
        J.digests(ctx)
        took["digest"] = time.monotonic() - started
        token = tokens.make(SECRET, tokens.Purpose.UNSUBSCRIBE, pat.id or 0, pat.email)
        site = TestClient(create_app(ctx))
        started = time.monotonic()
        answer = site.post("/unsubscribe", params={"token": token},
                           data={"List-Unsubscribe": "One-Click"})
        took["unsubscribe"] = time.monotonic() - started
    finally:
        other.close()
    thread.join(timeout=30)

    assert answer.status_code == 200
    assert all(seconds < 1 for seconds in took.values()), took
    assert outcome and outcome[0].status == "ok", outcome
    assert subscribers.find(store.db, "pat@example.org").unsubscribed_at is not None
