"""Every job the tracker does, one function each, called alike by the command line, the
scheduler (`tracker run`) and the web pages: they only parse input and show the outcome.

    sync(ctx)         fetch, diff, save; tell the operator when syncs keep failing
    digests(ctx)      queue the due digests, then deliver the outbox
    report(ctx)       write a week's report, the index and the feeds
    deliver(ctx)      deliver what is queued (or some of it)
    subscribe(ctx)    add or change a subscription; send the confirmation e-mail
    confirm(ctx)      spend a confirmation token
    unsubscribe(ctx)  end a subscription, by address or by a link's token

A `Context` carries what they share: settings, the database, the vocabulary, the clock, a
stop event and where warnings go. Jobs that can fail in the ordinary way (a registry or mail
server down) return an `Outcome` saying so; a bad argument or setting raises TrackerError.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from tracker import alerts, notify, outbox, subscribers
from tracker import report as reports
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.database import Database
from tracker.errors import ConfigError, LockBusy, Stopped, TrackerError
from tracker.mail import DrainResult, drain, transport_for, transports_for
from tracker.models import Job, OutboxMessage, RunStatus, Subscriber
from tracker.store import Store
from tracker.subscribers import Outcome as Subscription
from tracker.subscribers import Preferences
from tracker.sync import Progress, SyncResult
from tracker.sync import sync as run_sync
from tracker.tags import Tagger
from tracker.times import utcnow
from tracker.tokens import UNSUBSCRIBE_MAX_AGE, Purpose, Token, read
from tracker.views import sync_summary
from tracker.vocabulary import Vocabulary, load_vocabulary


def _ignore(_message: str) -> None:
    pass


@dataclass
class Context:
    """What every job needs; built once per command, scheduler or web app."""

    settings: Settings
    db: Database
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], datetime] = utcnow
    warn: Callable[[str], None] = _ignore

    @cached_property
    def store(self) -> Store:
        return Store(self.db)

    @cached_property
    def tagger(self) -> Tagger:
        return Tagger(load_vocabulary(self.settings.vocabulary))

    @property
    def vocabulary(self) -> Vocabulary:
        return self.tagger.vocabulary


@dataclass(frozen=True)
class Outcome:
    """How a job ended, in one line (logged by the scheduler, recorded for `status`)."""

    status: RunStatus
    summary: str


@dataclass(frozen=True)
class Synced(Outcome):
    result: SyncResult | None = None
    error: TrackerError | None = None  # why it failed, was skipped or was interrupted


@dataclass(frozen=True)
class Digested(Outcome):
    planned: notify.NotifyResult = field(default_factory=notify.NotifyResult)
    delivered: DrainResult | None = None  # None for a dry run
    to_files: bool = False
    folder: Path | None = None


@dataclass(frozen=True)
class Reported(Outcome):
    week: reports.Week | None = None
    folder: Path | None = None
    written: list[Path] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)  # earlier weeks, for changes seen late


@dataclass(frozen=True)
class Subscribed:
    subscriber: Subscriber
    outcome: Subscription
    confirmation: DrainResult | None = None  # the confirmation e-mail's delivery, if one


# --- the scheduled jobs ----------------------------------------------------------------------

def sync(ctx: Context, *, full: bool = False, progress: Progress | None = None) -> Synced:
    """One sync. Failures are recorded and, after TRACKER_ALERT_AFTER in a row, told to the
    operator once (see `tracker.alerts`); a bug still raises, after being counted."""
    client = CtGovClient(ctx.settings, stop=ctx.stop, on_retry=ctx.warn)
    try:
        result = run_sync(ctx.settings, ctx.store, client, ctx.tagger, full=full,
                          progress=progress)
    except Stopped as error:
        return Synced(RunStatus.INTERRUPTED, str(error), error=error)
    except LockBusy as error:
        return Synced(RunStatus.SKIPPED, str(error), error=error)
    except Exception as error:
        note, alert = alerts.after_failure(ctx.settings, ctx.db, ctx.clock())
        _deliver_alert(ctx, alert)
        if not isinstance(error, TrackerError):
            raise
        return Synced(RunStatus.FAILED, str(error) + note, error=error)
    finally:
        client.close()
    note, alert = alerts.after_success(ctx.settings, ctx.db, result, ctx.clock())
    _deliver_alert(ctx, alert)
    _deliver_alert(ctx, alerts.after_sync_notices(ctx.settings, ctx.db, result, ctx.clock()))
    summary = sync_summary(result)
    return Synced(RunStatus.OK, summary.rstrip(".") + note if note else summary, result=result)


def digests(ctx: Context, *, send: bool = False, folder: Path | None = None,
            dry_run: bool = False) -> Digested:
    """Queue every due digest (and the operator's), then deliver everything queued.

    By SMTP when a mail server is configured (required with `send`), else as files in
    TRACKER_DIGEST_DIR; as files in `folder` when it is given."""
    settings = ctx.settings
    if send and folder is not None:
        raise ConfigError("Choose sending or writing files, not both.")
    if send and not settings.smtp_configured:
        raise ConfigError("Sending needs TRACKER_SMTP_HOST (and usually TRACKER_SMTP_USER and "
                          "TRACKER_SMTP_PASSWORD); see config.example.env.")
    to_files = folder is not None or not settings.smtp_configured
    target = folder or (settings.digest_dir if to_files else None)
    planned = notify.prepare_digests(
        settings, ctx.store, ctx.clock(),
        operator=notify.operator_recipient(settings, to_files=to_files), dry_run=dry_run)
    for error in planned.errors:
        ctx.warn(error)
    queued = (f"{len(planned.planned)} digest(s) {'planned' if dry_run else 'queued'}, "
              f"{planned.nothing_new} with nothing new, {planned.not_due} not due")
    if dry_run:
        return Digested(RunStatus.OK, queued, planned=planned, to_files=to_files,
                        folder=target)
    delivered = drain(ctx.db, transports_for(settings, folder if to_files else None),
                      stop=ctx.stop)
    how = "written" if to_files else "sent"
    summary = (f"{queued}; {delivered.sent} {how}, {delivered.failed} failed, "
               f"{delivered.unknown} unknown, {delivered.left} left queued")
    status = RunStatus.OK
    if delivered.left and not ctx.stop.is_set():
        status = RunStatus.FAILED
        summary += f" (not delivered for now: {delivered.errors[-1] if delivered.errors else '?'})"
    return Digested(status, summary, planned=planned, delivered=delivered, to_files=to_files,
                    folder=target)


def report(ctx: Context, week: reports.Week | None = None,
           folder: Path | None = None) -> Reported:
    """Write a week's report (default: the last complete week in TRACKER_TIMEZONE) into
    `folder` (default: TRACKER_REPORT_DIR), with the index of weeks and the feeds."""
    now = ctx.clock()
    week = week or reports.Week.last_complete(now.astimezone(ctx.settings.timezone).date())
    folder = folder or ctx.settings.report_dir
    site = ctx.settings.public_url
    written = reports.write(ctx.store, ctx.vocabulary, week, folder, now, f"{site}/reports",
                            templates_dir=ctx.settings.templates_dir,
                            trial_pages=f"{site}/trials" if ctx.settings.web else None)
    rewritten = sorted({p.stem for p in written if p.suffix == ".html"
                        and reports.WEEK.match(p.stem) and p.stem != week.name})
    late = f"; rewrote {', '.join(rewritten)} with changes seen late" if rewritten else ""
    return Reported(RunStatus.OK, f"report for {week.name} written to {folder}/ "
                                  f"({len(written)} files{late})", week=week, folder=folder,
                    written=written, rewritten=rewritten)


SCHEDULED: dict[Job, Callable[[Context], Outcome]] = {
    Job.SYNC: sync, Job.DIGESTS: digests, Job.REPORT: report,
}


# --- delivery ----------------------------------------------------------------------------------

def deliver(ctx: Context, ids: list[int] | None = None,
            folder: Path | None = None) -> DrainResult:
    """Deliver queued messages (only `ids`, if given) by the configured transport."""
    return drain(ctx.db, transports_for(ctx.settings, folder), ids=ids, stop=ctx.stop)


def retry(ctx: Context, message_id: int) -> tuple[OutboxMessage, DrainResult]:
    """Queue a failed or unknown message again, at an operator's request, and deliver it."""
    message = outbox.retry(ctx.db, message_id)
    return message, drain(ctx.db, transport_for(ctx.settings), ids=[message_id], stop=ctx.stop)


def _deliver_alert(ctx: Context, outbox_id: int | None) -> None:
    if outbox_id is None:
        return
    try:
        result = drain(ctx.db, transport_for(ctx.settings), ids=[outbox_id], stop=ctx.stop)
    except LockBusy:  # another sender is at work; the next digest run delivers it
        result = DrainResult(left=1, errors=["another send was running"])
    if result.left:
        ctx.warn(f"the alert to {ctx.settings.admin_email} is queued, not yet sent: "
                 f"{result.errors[-1] if result.errors else 'see tracker outbox'}")


# --- what a subscriber does --------------------------------------------------------------------

def subscribe(ctx: Context, email: str, preferences: Preferences, *,
              confirmed: bool = False) -> Subscribed:
    """Add or change a subscription. Unless `confirmed` (an operator's word), the address
    gets a confirmation e-mail and nothing else until it is confirmed."""
    address = subscribers.normalise_address(email)
    if not confirmed:
        ctx.settings.require_secret()
    now = ctx.clock()
    subscriber, outcome = subscribers.subscribe(ctx.db, address, preferences,
                                                confirmed=confirmed, now=now)
    if subscriber.confirmed_at is not None:
        return Subscribed(subscriber, outcome)
    queued = notify.queue_confirmation(ctx.settings, ctx.store, subscriber, now)
    try:
        delivered = drain(ctx.db, transport_for(ctx.settings),
                          ids=[queued] if queued else [], stop=ctx.stop)
    except LockBusy as error:
        delivered = DrainResult(left=1, errors=[str(error)])
    return Subscribed(subscriber, outcome, delivered)


def read_token(ctx: Context, purpose: Purpose, token: str) -> Token:
    """A link's token, checked (signature, expiry), without acting on it."""
    max_age = ctx.settings.confirm_days * 86400 if purpose is Purpose.CONFIRM \
        else UNSUBSCRIBE_MAX_AGE
    return read(ctx.settings.require_secret(), purpose, token, max_age=max_age)


def confirm(ctx: Context, token: str) -> Subscriber:
    return subscribers.confirm(ctx.db, read_token(ctx, Purpose.CONFIRM, token), ctx.clock())


def unsubscribe(ctx: Context, email: str) -> tuple[Subscriber, bool]:
    """End `email`'s subscription; the bool says whether it was still active."""
    subscriber = subscribers.find(ctx.db, email)
    assert subscriber.id is not None
    return subscriber, subscribers.unsubscribe(ctx.db, subscriber.id, ctx.clock())


def unsubscribe_link(ctx: Context, token: str) -> tuple[Token, bool]:
    """End the subscription an unsubscribe link names."""
    parsed = read_token(ctx, Purpose.UNSUBSCRIBE, token)
    return parsed, subscribers.unsubscribe(ctx.db, parsed.subscriber_id, ctx.clock())
