"""Telling the operator that syncs keep failing, once, and once more when they work again.

After TRACKER_ALERT_AFTER failures in a row, one alert to TRACKER_ADMIN_EMAIL; when a sync
succeeds after an alerted streak, one recovery message. Each alert's key names the first
failure of its streak, so the outbox refuses a second copy however often syncs run.
"""

from __future__ import annotations

import html
from datetime import datetime

from tracker import digest as render
from tracker import outbox, runs
from tracker.config import Settings
from tracker.database import Database
from tracker.models import MessageKind, SyncRun
from tracker.sync import SyncResult
from tracker.times import utc_time
from tracker.views import sync_notices, sync_summary

FAILING = "failing"
RECOVERED = "recovered"


def after_failure(settings: Settings, db: Database, now: datetime) -> tuple[str, int | None]:
    """A note for the failed run's summary, and the outbox id of an alert queued now."""
    streak = runs.failures_before(db)
    if len(streak) < settings.alert_after:
        return "", None
    if not settings.admin_email:
        return (f" ({len(streak)} failed in a row; set TRACKER_ADMIN_EMAIL to be told by "
                "e-mail)"), None
    subject, text = failing_alert(streak)
    queued = _queue(settings, db, FAILING, streak[0], subject, text, now)
    told = "alert queued for" if queued else "already alerted:"
    return f" ({len(streak)} failed in a row; {told} {settings.admin_email})", queued


def after_success(settings: Settings, db: Database, result: SyncResult,
                  now: datetime) -> tuple[str, int | None]:
    """After a success that ended an alerted streak: the recovery message, queued once."""
    streak = runs.failures_before(db, result.run_id)
    if not streak or not settings.admin_email:
        return "", None
    if not outbox.has(db, _key(FAILING, streak[0])):
        return "", None
    subject, text = recovered_alert(streak, result, now)
    queued = _queue(settings, db, RECOVERED, streak[0], subject, text, now)
    return "; the operator was told syncing works again", queued


def after_sync_notices(settings: Settings, db: Database, result: SyncResult,
                       now: datetime) -> int | None:
    """After a sync that held removals back or could not read a record: tell the operator
    once for that sync (the next digest carries it too)."""
    notices = sync_notices(result.held, result.unreadable)
    if not notices or not settings.admin_email:
        return None
    subject = ("Myositis trials tracker: a sync needs a look"
               if not result.held else "Myositis trials tracker: removals held back")
    text = ("The last sync succeeded, with something to check:\n\n"
            + "\n\n".join(f"- {notice}" for notice in notices)
            + "\n\n'tracker status' shows the state; 'tracker show NCT...' a study.\n")
    key = render.message_key(MessageKind.ALERT, "notice", result.run_id)
    return _queue_keyed(settings, db, key, subject, text, now)


def failing_alert(streak: list[SyncRun]) -> tuple[str, str]:
    first, last = streak[0], streak[-1]
    subject = f"Myositis trials tracker: {len(streak)} syncs in a row have failed"
    text = (
        f"The tracker has failed to update from ClinicalTrials.gov {len(streak)} times in a "
        f"row, since {utc_time(first.started_at, 'an unknown time')}.\n\n"
        f"Last error ({utc_time(last.finished_at or last.started_at, 'an unknown time')}):\n"
        f"  {last.error}\n\n"
        "Subscribers' digests and the weekly report now say that the data may be stale.\n"
        "This is the only alert for this run of failures; you will get one more message when "
        "a sync succeeds again.\n\n"
        "To look into it: 'tracker status' and the service's log "
        "(journalctl -u tracker if it runs under systemd).\n"
    )
    return subject, text


def recovered_alert(streak: list[SyncRun], result: SyncResult, now: datetime) -> tuple[str, str]:
    subject = "Myositis trials tracker: syncing works again"
    text = (
        f"A sync succeeded at {utc_time(now)} after {len(streak)} failed attempts in a row "
        f"(the first at {utc_time(streak[0].started_at, 'an unknown time')}).\n\n"
        f"{sync_summary(result)}\n"
    )
    return subject, text


def _key(kind: str, first: SyncRun) -> str:
    return render.message_key(MessageKind.ALERT, kind, first.id)


def _queue(settings: Settings, db: Database, kind: str, first: SyncRun, subject: str,
           text: str, now: datetime) -> int | None:
    """Queue one alert; None if it had been queued before."""
    return _queue_keyed(settings, db, _key(kind, first), subject, text, now)


def _queue_keyed(settings: Settings, db: Database, key: str, subject: str, text: str,
                 now: datetime) -> int | None:
    assert settings.admin_email is not None
    message_id = render.new_message_id(settings)
    body = f'<pre style="font-family:monospace;white-space:pre-wrap">{html.escape(text)}</pre>'
    msg = render.message(settings, recipient=settings.admin_email, subject_line=subject,
                         text=text, html=body, message_id=message_id, now=now)
    draft = outbox.Draft(kind=MessageKind.ALERT, key=key,
                         recipient=settings.admin_email, subject=subject,
                         message_id=message_id, message=msg.as_bytes())
    return outbox.queue(db, draft, now=now)
