"""The scheduled jobs: sync, digests and the weekly report, each ending in one `Outcome`.

`tracker run` calls them from its scheduler; they are plain methods over settings and a store,
so tests call them directly. Syncs that keep failing tell the operator once: after
TRACKER_ALERT_AFTER failures in a row, one alert to TRACKER_ADMIN_EMAIL, and one more when a
sync succeeds again. Each alert's Message-ID names the first failure of its run, so the outbox
refuses a second copy however often the job runs.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tracker import digest as render
from tracker import outbox, report
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.errors import LockBusy, Stopped, TrackerError
from tracker.mail import drain, transport_for
from tracker.models import SyncRun
from tracker.notify import operator_recipient, prepare_digests
from tracker.store import Store, as_utc, utcnow
from tracker.sync import SyncResult, sync
from tracker.tags import Tagger
from tracker.views import sync_summary


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | failed | skipped | interrupted
    summary: str


class Jobs:
    def __init__(self, settings: Settings, store: Store, tagger: Tagger, *,
                 stop: threading.Event | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 warn: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.tagger = tagger
        self.stop = stop or threading.Event()
        self.clock = clock
        self.warn = warn or (lambda message: None)

    def sync(self) -> Outcome:
        client = CtGovClient(self.settings, stop=self.stop, on_retry=self.warn)
        try:
            result = sync(self.settings, self.store, client, tagger=self.tagger)
        except Stopped as error:
            return Outcome("interrupted", str(error))
        except LockBusy as error:
            return Outcome("skipped", str(error))
        except Exception as error:
            note = self._after_failure()
            if not isinstance(error, TrackerError):
                raise
            return Outcome("failed", str(error) + note)
        finally:
            client.close()
        summary, told = sync_summary(result), self._after_success(result)
        return Outcome("ok", summary.rstrip(".") + told if told else summary)

    def digests(self) -> Outcome:
        now = self.clock()
        to_files = not self.settings.smtp_configured
        planned = prepare_digests(self.settings, self.store, now,
                                  operator=operator_recipient(self.settings, to_files=to_files))
        for error in planned.errors:
            self.warn(error)
        delivered = drain(self.store, transport_for(self.settings), stop=self.stop)
        how = "sent" if self.settings.smtp_configured else "written"
        summary = (f"{len(planned.planned)} digest(s) queued, {planned.nothing_new} with "
                   f"nothing new, {planned.not_due} not due; {delivered.sent} {how}, "
                   f"{delivered.failed} failed, {delivered.left} left queued")
        if delivered.left and not self.stop.is_set():
            return Outcome("failed", f"{summary} (the mail server refused for now: "
                                     f"{delivered.errors[-1] if delivered.errors else '?'})")
        return Outcome("ok", summary)

    def report(self) -> Outcome:
        now = self.clock()
        week = report.Week.last_complete(now.astimezone(self.settings.timezone).date())
        written = report.write(self.store, self.tagger.vocabulary, week,
                               self.settings.report_dir, now,
                               f"{self.settings.public_url}/reports")
        return Outcome("ok", f"report for {week.name} written to {self.settings.report_dir}/ "
                             f"({len(written)} files)")

    # --- alerts ---------------------------------------------------------------------------

    def _after_failure(self) -> str:
        streak = self.store.failures_before()
        if len(streak) < self.settings.alert_after:
            return ""
        if not self.settings.admin_email:
            return (f" ({len(streak)} failed in a row; set TRACKER_ADMIN_EMAIL to be told by "
                    "e-mail)")
        subject, text = failing_alert(streak)
        queued = self._queue_alert("failing", streak[0], subject, text)
        told = "alert queued for" if queued else "already alerted:"
        return f" ({len(streak)} failed in a row; {told} {self.settings.admin_email})"

    def _after_success(self, result: SyncResult) -> str:
        streak = self.store.failures_before(result.run_id)
        if not streak or not self.settings.admin_email:
            return ""
        alerted = render.message_id(self.settings, "alert", "failing", streak[0].id)
        if not any(m.message_id == alerted for m in outbox.messages(self.store)):
            return ""
        subject, text = recovered_alert(streak, result, self.clock())
        self._queue_alert("recovered", streak[0], subject, text)
        return "; the operator was told syncing works again"

    def _queue_alert(self, kind: str, first: SyncRun, subject: str, text: str) -> bool:
        """Queue and try to deliver one alert; False if it had been queued before."""
        assert self.settings.admin_email is not None
        now = self.clock()
        message_id = render.message_id(self.settings, "alert", kind, first.id)
        body = f'<pre style="font-family:monospace;white-space:pre-wrap">' \
               f"{html.escape(text)}</pre>"
        msg = render.message(self.settings, recipient=self.settings.admin_email,
                             subject_line=subject, text=text, html=body,
                             message_id=message_id, now=now)
        queued = outbox.queue(self.store, {
            "kind": "alert", "recipient": self.settings.admin_email, "subject": subject,
            "message_id": message_id, "message": msg.as_bytes(), "text_body": text,
            "html_body": body}, now=now)
        if queued is None:
            return False
        try:
            drain(self.store, transport_for(self.settings), ids=[queued], stop=self.stop)
        except TrackerError as error:  # stays queued; the next digest run delivers it
            self.warn(f"the alert to {self.settings.admin_email} is queued: {error}")
        return True


def failing_alert(streak: list[SyncRun]) -> tuple[str, str]:
    first, last = streak[0], streak[-1]
    subject = f"Myositis trials tracker: {len(streak)} syncs in a row have failed"
    text = (
        f"The tracker has failed to update from ClinicalTrials.gov {len(streak)} times in a "
        f"row, since {_when(first.started_at)}.\n\n"
        f"Last error ({_when(last.finished_at or last.started_at)}):\n  {last.error}\n\n"
        "Subscribers' digests and the weekly report now say that the data may be stale.\n"
        "This is the only alert for this run of failures; you will get one more message when "
        "a sync succeeds again.\n\n"
        "To look into it: 'tracker status' and the service's log "
        "(journalctl -u tracker if it runs under systemd).\n"
    )
    return subject, text


def recovered_alert(streak: list[SyncRun], result: SyncResult,
                    now: datetime) -> tuple[str, str]:
    subject = "Myositis trials tracker: syncing works again"
    text = (
        f"A sync succeeded at {_when(now)} after {len(streak)} failed attempts in a row "
        f"(the first at {_when(streak[0].started_at)}).\n\n"
        f"{sync_summary(result)}\n"
    )
    return subject, text


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return f"{as_utc(moment).astimezone(UTC):%Y-%m-%d %H:%M} UTC"
