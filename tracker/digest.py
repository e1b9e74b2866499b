"""Build digests: pick each subscriber's changes, group them by trial, render, make the e-mail.

Everything here is pure: stored rows and settings in, a complete `email.message.EmailMessage`
out. Registry text is untrusted: the HTML template autoescapes it, and it reaches a header
only through `clean_header` (subjects are built from counts and short, cleaned titles).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from urllib.parse import urlencode

from markupsafe import escape

from tracker import templating
from tracker.config import Settings
from tracker.matching import Facts, Wish, describe
from tracker.models import ChangeEvent, MessageKind, Study, Subscriber
from tracker.record import status_words
from tracker.text import history_url, one_line, shorten, split_list, study_url
from tracker.times import long_date, stamp, utc_time
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
        return (f"Data from ClinicalTrials.gov as of {stamp(self.data_timestamp, 'unknown')}; "
                f"last successful update {utc_time(self.last_success)}.")

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


def plan(subscriber: Subscriber, events: Sequence[ChangeEvent], studies: dict[str, Study],
         facts: Sequence[Facts | None] | None = None) -> Digest | None:
    """The subscriber's digest of `events` (oldest first), or None if nothing matches.
    `facts` are each event's `Facts`, in order, when a caller has read them already."""
    wish = Wish.of(subscriber)
    if facts is None:
        facts = [Facts.of(studies.get(e.nct_id), e) for e in events]
    trials: dict[str, Trial] = {}
    for event, found in zip(events, facts, strict=True):
        if found is not None and wish.accepts(found):
            trials.setdefault(event.nct_id, Trial(studies[event.nct_id])).events.append(event)
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
               notices: Sequence[str] = (), manage_url: str | None = None,
               filters: str | None = None) -> tuple[str, str]:
        """The text and HTML bodies; `notices` (operator digests only) go under the intro;
        `manage_url` opens the subscriber's page for changing what they receive; `filters`
        (what they chose, in words) is worked out from the subscriber when not given.

        Only those three and the recipient may differ between subscribers who get the same
        changes: `Letters` renders once for all of them and copies the rest."""
        operator = digest.subscriber is None
        if filters is None and digest.subscriber:
            filters = self.choices(digest.subscriber)
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
            "filters": filters,
            "unsubscribe_url": unsubscribe_url,
            "manage_url": manage_url,
            "notices": list(notices),
        }
        return (self.env.get_template("digest.txt").render(context),
                self.env.get_template("digest.html").render(context))

    def choices(self, subscriber: Subscriber) -> str:
        return choices(subscriber, self.settings.weekly_day, self.vocabulary)

    def overridden(self, name: str) -> bool:
        """Whether the operator's own folder replaces this shipped template."""
        folder = self.settings.templates_dir
        return folder is not None and (folder / name).is_file()

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


@dataclass(frozen=True)
class Personal:
    """What differs between the e-mails of two subscribers who get the same changes."""

    recipient: str
    message_id: str
    unsubscribe_token: str
    manage_token: str
    filters: str  # what they chose, in words (`Renderer.choices`)


# What a copy may carry in place of a placeholder: values the e-mail package writes out as
# they are (no quoting, folding or encoding) and, but for `filters`, HTML escaping leaves
# alone. `filters` is escaped in the HTML part, as the template would.
PLAIN = {"recipient": re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+\Z"),
         "message_id": re.compile(r"<[A-Za-z0-9._-]+@[A-Za-z0-9.-]+>\Z"),
         "unsubscribe_token": re.compile(r"[A-Za-z0-9._-]+\Z"),
         "manage_token": re.compile(r"[A-Za-z0-9._-]+\Z"),
         "filters": re.compile(r"[^\r\n]*\Z")}
LINE_END = POLICY.linesep.encode()


@dataclass(frozen=True)
class _Template:
    """A digest e-mail with placeholders, cut into fixed bytes and slots.

    `pieces` alternates fixed bytes and slots (a `Personal` field's name, and whether it is
    in the HTML part); `lines` holds, for each line with a slot, its fixed length, whether it
    is in the HTML part and its slots, so a copy checks the line limit without scanning.
    """

    pieces: tuple[bytes | tuple[str, bool], ...]
    lines: tuple[tuple[int, bool, tuple[str, ...]], ...]
    seven_bit: bool  # a body is 7bit: a value outside ASCII would make it 8bit


class Letters:
    """Subscribers' digest e-mails for one run, each distinct digest built only once.

    Subscribers who get the same changes get the same e-mail but for its recipient,
    Message-ID, two signed links and the sentence saying what they chose (`Personal`). It is
    rendered and built once, with a random placeholder for each of those, and each copy
    replaces them: the bytes building it afresh (`Renderer.digest`, `message`) gives, but for
    the MIME boundary. A copy the e-mail package would write otherwise (a body it encodes, a
    value it would quote, fold or encode, a line grown past the limit) is built afresh, and
    so is every e-mail when the operator's own folder replaces a digest template.
    """

    def __init__(self, settings: Settings, renderer: Renderer, freshness: Freshness,
                 now: datetime) -> None:
        self.settings, self.renderer, self.freshness, self.now = settings, renderer, freshness, now
        self.mark = uuid.uuid4().hex
        self.marks = Personal(f"{self.mark}to@example.invalid", f"<{self.mark}id@example.invalid>",
                              f"{self.mark}unsubscribe", f"{self.mark}manage",
                              f"{self.mark}filters")
        self.copying = not any(renderer.overridden(n) for n in ("digest.txt", "digest.html"))
        self.templates: dict[tuple[tuple[object, ...], ...], _Template | None] = {}
        self.built = 0  # e-mails built with the e-mail package, templates included

    def message(self, digest: Digest, subject_line: str, personal: Personal) -> bytes:
        """The digest's e-mail for `personal`, as `message(...).as_bytes()` would make it."""
        if not self.copying:
            return self._build(digest, subject_line, personal)
        key = tuple((t.study.nct_id, *(e.id for e in t.events)) for t in digest.trials)
        if key not in self.templates:
            self.templates[key] = self._template(digest, subject_line)
        template = self.templates[key]
        copy = self._copy(template, personal) if template is not None else None
        return copy if copy is not None else self._build(digest, subject_line, personal)

    def _build(self, digest: Digest, subject_line: str, personal: Personal) -> bytes:
        return self._message(digest, subject_line, personal)[0].as_bytes()

    def _message(self, digest: Digest, subject_line: str,
                 personal: Personal) -> tuple[EmailMessage, str, str]:
        self.built += 1
        unsubscribe_url = link(self.settings, "unsubscribe", personal.unsubscribe_token)
        text, html = self.renderer.digest(
            digest, self.freshness, unsubscribe_url,
            manage_url=link(self.settings, "manage", personal.manage_token),
            filters=personal.filters)
        msg = message(self.settings, recipient=personal.recipient, subject_line=subject_line,
                      text=text, html=html, message_id=personal.message_id, now=self.now,
                      unsubscribe_url=unsubscribe_url)
        return msg, text, html

    def _template(self, digest: Digest, subject_line: str) -> _Template | None:
        """The e-mail with placeholders, or None when a copy could not be exact: a body the
        e-mail package encodes (quoted-printable, base64), or a placeholder that does not
        appear in the bytes as often as in what was rendered."""
        msg, text, html = self._message(digest, subject_line, self.marks)
        parts = list(msg.iter_parts())
        encodings = [part["Content-Transfer-Encoding"] for part in parts]
        if [p.get_content_type() for p in parts] != ["text/plain", "text/html"] or \
                any(cte not in ("7bit", "8bit") for cte in encodings):
            return None
        data = msg.as_bytes()
        names = {mark.encode(): name for name, mark in vars(self.marks).items()}
        written = {mark: text.count(mark) + html.count(mark) for mark in vars(self.marks).values()}
        for header_mark in (self.marks.recipient, self.marks.message_id,
                            self.marks.unsubscribe_token):  # To, Message-ID, List-Unsubscribe
            written[header_mark] += 1
        if any(data.count(mark.encode()) != times for mark, times in written.items()):
            return None
        boundary = msg.get_boundary()
        assert boundary is not None
        html_starts = data.rindex(LINE_END + b"--" + boundary.encode() + LINE_END)
        split = re.compile(b"|".join(re.escape(mark) for mark in names))
        pieces: list[bytes | tuple[str, bool]] = []
        lines: list[tuple[int, bool, tuple[str, ...]]] = []
        line_start = 0
        for line in data.split(LINE_END):
            on_line = [m.group() for m in split.finditer(line)]
            if on_line:
                lines.append((len(line) - sum(map(len, on_line)), line_start > html_starts,
                              tuple(names[mark] for mark in on_line)))
            line_start += len(line) + len(LINE_END)
        at = 0
        for found in split.finditer(data):
            pieces += [data[at:found.start()], (names[found.group()], found.start() > html_starts)]
            at = found.end()
        pieces.append(data[at:])
        return _Template(tuple(pieces), tuple(lines), "7bit" in encodings)

    def _copy(self, template: _Template, personal: Personal) -> bytes | None:
        values = vars(personal)
        if not all(pattern.match(values[name]) for name, pattern in PLAIN.items()) or \
                (template.seven_bit and not personal.filters.isascii()):
            return None
        text = {name: value.encode() for name, value in values.items()}
        html = {**text, "filters": str(escape(personal.filters)).encode()}
        limit = POLICY.max_line_length or 998
        if any(fixed + sum(len((html if in_html else text)[name]) for name in slots) > limit
               for fixed, in_html, slots in template.lines):
            return None
        return b"".join(piece if isinstance(piece, bytes)
                        else (html if piece[1] else text)[piece[0]]
                        for piece in template.pieces)


def message_key(kind: MessageKind, *parts: object) -> str:
    """What a message is about, e.g. "digest.7.120.164": the same key is never queued twice."""
    return ".".join([kind, *(str(p) for p in parts)])


def new_message_id(settings: Settings) -> str:
    """A Message-ID unique across databases and resets: random, at the sender's domain."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{uuid.uuid4().hex}@{domain}>"


def oldest_first(events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    return sorted(events, key=lambda e: e.id or 0)
