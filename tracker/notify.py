"""Queue digests: for each subscriber whose day has come (`matching.is_due`), a digest of the
changes since their last one; an operator digest of every change; a confirmation e-mail.

Queueing a digest and advancing its subscriber's window happen in one transaction (see
`outbox.queue_digests`, which records a batch of subscribers at once), so a crash loses
nothing and a rerun never queues the same digest twice.
One subscriber's failure is recorded and the run goes on. Delivery is the sender's business
(`mail.drain`).
"""

from __future__ import annotations

import json
import uuid
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.utils import parseaddr

from tracker import digest as render
from tracker import outbox, runs, subscribers
from tracker.config import Settings
from tracker.errors import WindowMoved
from tracker.matching import Facts, Wish, is_due
from tracker.models import ChangeEvent, MessageKind, RunStatus, Study, Subscriber, SyncRun
from tracker.staging import Staging
from tracker.store import Store
from tracker.times import as_utc, utcnow
from tracker.tokens import Purpose, make
from tracker.views import sync_notices

OPERATOR = "operator"  # the recipient of a file-mode operator digest: its file names
SERVE_BATCH = 500  # subscribers served per transaction
CONFIRM_SUBJECT = "Please confirm your subscription to myositis trial updates"


@dataclass
class Planned:
    recipient: str
    kind: MessageKind
    subject: str
    changes: int
    trials: int
    outbox_id: int | None = None


@dataclass
class NotifyResult:
    planned: list[Planned] = field(default_factory=list)
    nothing_new: int = 0
    not_due: int = 0
    errors: list[str] = field(default_factory=list)


def failed_since(failed: SyncRun | None, ok: SyncRun | None) -> bool:
    """Whether the latest sync failed (a failure newer than the latest success)."""
    if failed is None or failed.id is None:
        return False
    return ok is None or ok.id is None or failed.id > ok.id


def freshness(store: Store, now: datetime | None = None) -> render.Freshness:
    ok = runs.last_sync(store.db, *runs.SUCCEEDED)
    failed = runs.last_sync(store.db, RunStatus.FAILED)
    streak = runs.failures_before(store.db)
    last_success = as_utc(ok.finished_at) if ok and ok.finished_at else None
    stale = last_success is not None and (now or utcnow()) - last_success > render.STALE_AFTER
    return render.Freshness(ok.data_timestamp if ok else None, last_success,
                            failed_since(failed, ok), failed.error if failed else None,
                            failed_syncs=len(streak), stale=stale)


def operator_notices(store: Store) -> list[str]:
    """What the operator must know beside the changes: held removals, unreadable records."""
    last = runs.last_sync(store.db, RunStatus.OK)
    unreadable = json.loads(last.unreadable) if last and last.unreadable else []
    return sync_notices(len(Staging(store.db).held()), unreadable)


def operator_recipient(settings: Settings, *, to_files: bool) -> str | None:
    """Who gets the digest of every change: a file named "operator" when digests are
    written, TRACKER_ADMIN_EMAIL when they are mailed, nobody if that is not set."""
    return OPERATOR if to_files else settings.admin_email


def prepare_digests(settings: Settings, store: Store, now: datetime, *, operator: str | None,
                    dry_run: bool = False) -> NotifyResult:
    """Queue (or, with dry_run, only plan) every due digest, and the operator's digest of
    every change for `operator` (see `operator_recipient`) unless that is None; then prune
    messages sent longer ago than TRACKER_OUTBOX_RETENTION_DAYS.

    Due is judged in TRACKER_TIMEZONE, weekly digests on TRACKER_WEEKLY_DAY unless the
    subscriber chose a day. A due subscriber is recorded as served whether a digest was
    queued or nothing was new for them; a dry run records nothing. The changes since the
    oldest due window, and their studies, are read once; each subscriber's digest is what
    `render.plan` makes of the changes after their own window. Servings are written
    `SERVE_BATCH` at a time, each digest in the transaction that moves its window.
    """
    result = NotifyResult()
    renderer = render.Renderer(settings)
    fresh = freshness(store, now)
    due = []
    for subscriber in subscribers.listing(store.db):
        if is_due(subscriber, now, settings.timezone, settings.weekly_day):
            due.append(subscriber)
        else:
            result.not_due += subscriber.confirmed_at is not None
    # Only digests carry signed links: a site with no one due needs no key yet.
    secret = settings.require_secret() if due and not dry_run \
        else (settings.secret_key or "dry-run")
    changes = Changes.since(store, min((s.last_event_id for s in due), default=0)) if due \
        else Changes([], {}, [])
    plans, letters = _Plans(changes), render.Letters(settings, renderer, fresh, now)
    for start in range(0, len(due), SERVE_BATCH):
        servings = [_subscriber_digest(settings, plans, letters, subscriber, secret, dry_run)
                    for subscriber in due[start:start + SERVE_BATCH]]
        outcomes = [None] * len(servings) if dry_run else outbox.queue_digests(
            store.db, [serving for serving, _ in servings], now=now)
        for (_, planned), outcome in zip(servings, outcomes, strict=True):
            if planned is None:
                # Served even so: a change arriving later waits for their next day. A window
                # another run moved first was served by that run.
                result.nothing_new += 1
            elif isinstance(outcome, WindowMoved):
                result.errors.append(str(outcome))
            else:
                planned.outbox_id = outcome
                result.planned.append(planned)
    if operator:
        planned = _operator_digest(settings, store, renderer, fresh, operator, now, dry_run)
        if planned:
            result.planned.append(planned)
    if not dry_run:
        outbox.prune(store.db, now - timedelta(days=settings.outbox_retention_days))
    return result


@dataclass(frozen=True)
class Changes:
    """The change events after some window (oldest first), the studies they concern, and
    what matching reads of each event (`Facts`, in the same order)."""

    events: list[ChangeEvent]
    studies: dict[str, Study]
    facts: list[Facts | None]

    @classmethod
    def since(cls, store: Store, after_id: int) -> Changes:
        events = store.events_after(after_id)
        studies = store.studies(e.nct_id for e in events)
        return cls(events, studies, [Facts.of(studies.get(e.nct_id), e) for e in events])

    def after(self, event_id: int) -> tuple[list[ChangeEvent], list[Facts | None]]:
        """The events after `event_id`, as `Store.events_after(event_id)` reads them, and
        their facts."""
        start = bisect_right(self.events, event_id, key=lambda e: e.id or 0)
        return self.events[start:], self.facts[start:]


class _Plans:
    """Each due subscriber's digest, decided once per window and `Wish`: subscribers who
    share both want the same changes."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.decided: dict[tuple[object, ...], tuple[render.Digest | None, int]] = {}

    def digest(self, subscriber: Subscriber) -> tuple[render.Digest | None, int]:
        """The subscriber's digest (None: nothing new) and where their window moves."""
        key = (subscriber.last_event_id, Wish.of(subscriber))
        if key not in self.decided:
            events, facts = self.changes.after(subscriber.last_event_id)
            digest = render.plan(subscriber, events, self.changes.studies, facts)
            end = digest.window_end if digest else \
                max((e.id or 0 for e in events), default=subscriber.last_event_id)
            self.decided[key] = (digest, end)
        digest, end = self.decided[key]
        if digest is None:
            return None, end
        return replace(digest, recipient=subscriber.email, subscriber=subscriber), end


def _subscriber_digest(settings: Settings, plans: _Plans, letters: render.Letters,
                       subscriber: Subscriber, secret: str, dry_run: bool
                       ) -> tuple[outbox.Serving, Planned | None]:
    """What serving this subscriber writes, and the digest planned (None: nothing new)."""
    digest, window_end = plans.digest(subscriber)
    window = outbox.Window(subscriber, window_end)
    if digest is None:
        return outbox.Serving(window), None
    assert subscriber.id is not None
    subject = render.subject(digest)
    planned = Planned(subscriber.email, MessageKind.DIGEST, subject, digest.change_count,
                      len(digest.trials))
    if dry_run:
        return outbox.Serving(window), planned
    message_id = render.new_message_id(settings)
    personal = render.Personal(
        subscriber.email, message_id,
        make(secret, Purpose.UNSUBSCRIBE, subscriber.id, subscriber.email),
        make(secret, Purpose.MANAGE, subscriber.id, subscriber.email),
        letters.renderer.choices(subscriber))
    draft = outbox.Draft(
        kind=MessageKind.DIGEST,
        key=render.message_key(MessageKind.DIGEST, subscriber.id, subscriber.last_event_id,
                               digest.window_end),
        recipient=subscriber.email, subject=subject, message_id=message_id,
        message=letters.message(digest, subject, personal), subscriber_id=subscriber.id,
        events=digest.change_count, window_end=digest.window_end)
    return outbox.Serving(window, draft), planned


def _operator_digest(settings: Settings, store: Store, renderer: render.Renderer,
                     fresh: render.Freshness, recipient: str, now: datetime, dry_run: bool
                     ) -> Planned | None:
    start = outbox.operator_window(store.db)
    events = store.events_after(start)
    studies = store.studies(e.nct_id for e in events)
    digest = render.plan_operator(recipient, events, studies)
    if digest is None:
        return None
    subject = render.subject(digest)
    planned = Planned(recipient, MessageKind.OPERATOR, subject, digest.change_count,
                      len(digest.trials))
    if dry_run:
        return planned
    text, html = renderer.digest(digest, fresh, None, operator_notices(store))
    message_id = render.new_message_id(settings)
    address = parseaddr(settings.mail_from)[1] if recipient == OPERATOR else recipient
    msg = render.message(settings, recipient=address, subject_line=subject,
                         text=text, html=html, message_id=message_id, now=now)
    draft = outbox.Draft(
        kind=MessageKind.OPERATOR,
        key=render.message_key(MessageKind.OPERATOR, start, digest.window_end),
        recipient=recipient, subject=subject, message_id=message_id, message=msg.as_bytes(),
        events=digest.change_count,
        window_end=digest.window_end)
    planned.outbox_id = outbox.queue(store.db, draft, now=now)
    return planned


def queue_confirmation(settings: Settings, store: Store, subscriber: Subscriber,
                       now: datetime) -> int | None:
    """Queue the double opt-in e-mail; nothing else is sent until it is confirmed."""
    assert subscriber.id is not None
    secret = settings.require_secret()
    token = make(secret, Purpose.CONFIRM, subscriber.id, subscriber.email)
    url = render.link(settings, "confirm", token)
    manage_url = render.link(settings, "manage",
                             make(secret, Purpose.MANAGE, subscriber.id, subscriber.email))
    text, html = render.Renderer(settings).confirmation(subscriber, url, manage_url)
    message_id = render.new_message_id(settings)
    msg = render.message(settings, recipient=subscriber.email, subject_line=CONFIRM_SUBJECT,
                         text=text, html=html, message_id=message_id, now=now)
    draft = outbox.Draft(
        kind=MessageKind.CONFIRM,
        key=render.message_key(MessageKind.CONFIRM, subscriber.id, uuid.uuid4().hex),
        recipient=subscriber.email, subject=CONFIRM_SUBJECT, message_id=message_id,
        message=msg.as_bytes(), subscriber_id=subscriber.id)
    return outbox.queue(store.db, draft, now=now)
