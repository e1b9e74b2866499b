"""Build digests: pick each subscriber's changes, group them by trial, render, make the e-mail.

Everything here is pure: stored rows and settings in, a complete `email.message.EmailMessage`
out. Registry text is untrusted: the HTML template autoescapes it, and it reaches a header
only through `clean_header` (subjects are built from counts and short, cleaned titles).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from urllib.parse import urlencode

from tracker import templating
from tracker.config import Settings
from tracker.matching import describe, wants
from tracker.models import ChangeEvent, MessageKind, Study, Subscriber
from tracker.record import status_words
from tracker.text import history_url, one_line, shorten, split_list, study_url
from tracker.times import long_date, utc_time
from tracker.vocabulary import Vocabulary, load_vocabulary

# Long lines rather than RFC 2047 encoded words: List-Unsubscribe URLs must stay readable.
STALE_AFTER = timedelta(days=2)  # the registry refreshes every weekday
POLICY = SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class Freshness:
    data_timestamp: str | None
    last_success: datetime | None
    last_sync_failed: bool
    last_error: str | None = None
    failed_syncs: int = 0  # failed in a row since the last success
    stale: bool = False  # no successful sync for longer than STALE_AFTER

    def sentence(self) -> str:
        stamp = self.data_timestamp or "unknown"
        when = utc_time(self.last_success)
        return (f"Data from ClinicalTrials.gov as of {stamp} (registry data timestamp); "
                f"last successful sync {when}.")

    def warning(self) -> str | None:
        """Why the data may be stale, or None; phrased to follow "Warning: "."""
        if self.failed_syncs > 1:
            return (f"the last {self.failed_syncs} attempts to update from ClinicalTrials.gov "
                    "failed, so the data may be stale and this digest may miss the newest "
                    "changes.")
        if self.last_sync_failed:
            return ("the most recent attempt to update from ClinicalTrials.gov failed, so this "
                    "digest may miss the newest changes.")
        if self.stale and self.last_success:
            return (f"the data was last updated from ClinicalTrials.gov on "
                    f"{self.last_success:%Y-%m-%d}, more than {STALE_AFTER.days} days ago, so "
                    "it may be stale and this digest may miss the newest changes.")
        return None


@dataclass
class Trial:
    study: Study
    events: list[ChangeEvent] = field(default_factory=list)


@dataclass
class Digest:
    recipient: str
    trials: list[Trial]
    window_end: int
    subscriber: Subscriber | None = None

    @property
    def change_count(self) -> int:
        return sum(len(t.events) for t in self.trials)


def plan(subscriber: Subscriber, events: Sequence[ChangeEvent],
         studies: dict[str, Study]) -> Digest | None:
    """The subscriber's digest of `events` (oldest first), or None if nothing matches."""
    trials: dict[str, Trial] = {}
    for event in events:
        study = studies.get(event.nct_id)
        if wants(subscriber, study, event) and study is not None:
            trials.setdefault(event.nct_id, Trial(study)).events.append(event)
    if not trials:
        return None
    window_end = max(e.id or 0 for e in events)
    return Digest(subscriber.email, list(trials.values()), window_end, subscriber)


def plan_operator(recipient: str, events: Sequence[ChangeEvent],
                  studies: dict[str, Study]) -> Digest | None:
    """Every change, for the operator's own review."""
    trials: dict[str, Trial] = {}
    for event in events:
        study = studies.get(event.nct_id)
        if study is not None:
            trials.setdefault(event.nct_id, Trial(study)).events.append(event)
    if not trials:
        return None
    return Digest(recipient, list(trials.values()), max(e.id or 0 for e in events))


def clean_header(text: str, limit: int = 60) -> str:
    """Registry text made safe for a header: no control characters or line breaks, short."""
    return shorten(text, limit)


def subject(digest: Digest) -> str:
    n_trials, n_changes = len(digest.trials), digest.change_count
    head = (f"Myositis trials: {n_changes} update{'s' if n_changes != 1 else ''} on "
            f"{n_trials} trial{'s' if n_trials != 1 else ''}")
    titles = [clean_header(t.study.brief_title, 50) for t in digest.trials[:2]]
    more = f" and {n_trials - 2} more" if n_trials > 2 else ""
    return clean_header(f"{head}: {'; '.join(titles)}{more}", 180)


class Renderer:
    """Jinja2 templates (see tracker.templating), autoescaped for HTML, plain for text."""

    def __init__(self, settings: Settings, vocabulary: Vocabulary | None = None) -> None:
        self.settings = settings
        self.env = templating.environment(override=settings.templates_dir)
        # Patients read labels ("Inclusion body myositis"), never tag codes.
        self.vocabulary = vocabulary or load_vocabulary(settings.vocabulary)

    def digest(self, digest: Digest, freshness: Freshness, unsubscribe_url: str | None,
               notices: Sequence[str] = (), manage_url: str | None = None) -> tuple[str, str]:
        """The text and HTML bodies; `notices` (operator digests only) go under the intro;
        `manage_url` opens the subscriber's page for changing what they receive."""
        operator = digest.subscriber is None
        context = {
            "heading": "All changes to tracked myositis trials" if operator
            else "News about myositis trials you follow",
            "intro": f"{digest.change_count} change{'s' if digest.change_count != 1 else ''} "
                     f"to {len(digest.trials)} trial{'s' if len(digest.trials) != 1 else ''} "
                     "since the last digest.",
            "trials": [_trial_context(t, self.vocabulary, technical=operator)
                       for t in digest.trials],
            "freshness": freshness.sentence(),
            "stale_warning": freshness.warning(),
            "filters": choices(digest.subscriber, self.settings.weekly_day, self.vocabulary)
            if digest.subscriber else None,
            "unsubscribe_url": unsubscribe_url,
            "manage_url": manage_url,
            "notices": list(notices),
        }
        return (self.env.get_template("digest.txt").render(context),
                self.env.get_template("digest.html").render(context))

    def confirmation(self, subscriber: Subscriber, confirm_url: str,
                     manage_url: str | None = None) -> tuple[str, str]:
        context = {"cadence": subscriber.cadence,
                   "filters": choices(subscriber, self.settings.weekly_day, self.vocabulary),
                   "confirm_url": confirm_url, "days": self.settings.confirm_days,
                   "manage_url": manage_url}
        return (self.env.get_template("confirm.txt").render(context),
                self.env.get_template("confirm.html").render(context))


def choices(subscriber: Subscriber, weekly_day: int | None, vocabulary: Vocabulary) -> str:
    """What the subscriber chose, as they read it: tags by their labels, a place by the name
    they gave, never codes or coordinates (a place set by coordinates alone, as the CLI can,
    is "the place you chose")."""
    if subscriber.near_lat is not None and not (subscriber.near_label or "").strip():
        subscriber = subscriber.model_copy(update={"near_label": "the place you chose"})
    return describe(subscriber, weekly_day, lambda tag: _label(vocabulary, tag))


def _label(vocabulary: Vocabulary, tag: str) -> str:
    """The tag's label; a tag the vocabulary no longer has is not shown by its code."""
    label = vocabulary.label(tag)
    return "a choice no longer offered" if label == tag else label


def _trial_context(trial: Trial, vocabulary: Vocabulary, *,
                   technical: bool) -> dict[str, object]:
    """One trial as the digest shows it. Only the operator's digest (`technical`) carries
    each change's kind and technical summary; a subscriber reads the plain sentences."""
    s = trial.study
    # A tag the vocabulary no longer has would show as its code: it is left out instead.
    tags = [vocabulary.label(t) for t in split_list(s.subtypes) + split_list(s.therapies)
            if vocabulary.label(t) != t]
    return {
        "title": one_line(s.brief_title),
        "nct_id": s.nct_id,
        "status": status_words(s.overall_status),
        "tags": ", ".join(tags),
        "url": study_url(s.nct_id),
        "history_url": history_url(s.nct_id),
        "posted": registry_dates(trial.events),
        "changes": [{"plain": one_line(e.plain or e.summary),
                     "technical": f"{e.kind}: {one_line(e.summary)}" if technical else None}
                    for e in trial.events],
    }


def registry_dates(events: Iterable[ChangeEvent]) -> str:
    """When the registry posted these changes, in words: "Updated on the registry on
    18 November 2026 and 21 November 2026". The digest holds what the tracker recorded since
    the last one, but a reader wants the day the trial itself changed."""
    days = [long_date(day) for day in sorted({e.posted_on for e in events})]
    if not days:
        return ""
    joined = days[0] if len(days) == 1 else f"{', '.join(days[:-1])} and {days[-1]}"
    return f"Updated on the registry on {joined}"


def link(settings: Settings, action: str, token: str) -> str:
    return f"{settings.public_url}/{action}?{urlencode({'token': token})}"


def message(settings: Settings, *, recipient: str, subject_line: str, text: str, html: str,
            message_id: str, now: datetime, unsubscribe_url: str | None = None) -> EmailMessage:
    """A multipart/alternative e-mail: plain text first, then HTML."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.mail_from
    msg["To"] = Address(addr_spec=recipient)
    msg["Subject"] = clean_header(subject_line, 200)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    if unsubscribe_url:
        sender = parseaddr(settings.mail_from)[1]
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <mailto:{sender}?subject=unsubscribe>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def message_key(kind: MessageKind, *parts: object) -> str:
    """What a message is about, e.g. "digest.7.120.164": the same key is never queued twice."""
    return ".".join([kind, *(str(p) for p in parts)])


def new_message_id(settings: Settings) -> str:
    """A Message-ID unique across databases and resets: random, at the sender's domain."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{uuid.uuid4().hex}@{domain}>"


def oldest_first(events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    return sorted(events, key=lambda e: e.id or 0)
