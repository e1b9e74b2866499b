"""The snapshot's tables.

- `Study`: the current record of each study ever tracked, with the fields people filter on
  as columns. A study that stops matching the query keeps its row, with `removed_at` set.
- `StudyVersion`: every distinct version of every record (zlib-compressed JSON), so the
  history can be diffed again or audited later.
- `ChangeEvent`: what changed, one row per change, tied to the sync that saw it.
- `SyncRun`: every sync, successful or not, with its counts and its error.
- `JobRun`: every run of a scheduled job, with its outcome.
- `ReportWeek`: when each week's report was first and last written.

The words stored in status and kind columns are `StrEnum`s here, so code compares with
`RunStatus.OK`, never a bare "ok". The schema changes only through Alembic migrations
(`tracker/migrations/`); a new column needs a migration beside its field here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Integer, LargeBinary, Text
from sqlmodel import Field, SQLModel

from tracker.mime import bodies
from tracker.packed import unpack


class RunStatus(StrEnum):
    """How a sync or a scheduled job run ended (or that it is still running)."""

    RUNNING = "running"
    OK = "ok"
    SKIPPED = "skipped"  # nothing to do: registry data unchanged, or another run held the lock
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped on purpose, or the process died


class SyncMode(StrEnum):
    BASELINE = "baseline"  # the first sync of a query: every study, no "new" events
    FULL = "full"
    INCREMENTAL = "incremental"
    SKIPPED = "skipped"


class Job(StrEnum):
    """The scheduled jobs of `tracker run`, in catch-up order."""

    SYNC = "sync"
    DIGESTS = "digests"
    REPORT = "report"


class ChangeKind(StrEnum):
    NEW = "new"
    REMOVED = "removed"
    STATUS = "status"
    RESULTS_POSTED = "results_posted"
    SITE_ADDED = "site_added"
    SITE_REMOVED = "site_removed"
    ENROLLMENT = "enrollment"
    DATES = "dates"
    ELIGIBILITY = "eligibility"
    INTERVENTIONS = "interventions"
    OUTCOMES = "outcomes"
    PHASE = "phase"
    CONTACTS = "contacts"
    SPONSOR = "sponsor"
    TITLE = "title"
    OTHER = "other"


class MessageKind(StrEnum):
    DIGEST = "digest"  # a subscriber's digest
    CONFIRM = "confirm"  # the double opt-in e-mail
    OPERATOR = "operator"  # every change, for the operator
    ALERT = "alert"  # syncs keep failing, or work again


class MessageStatus(StrEnum):
    """queued -> sending -> sent; or failed (permanent refusal), or unknown (the process
    stopped while the server held the message: it may or may not have been delivered)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class ChangeSet(StrEnum):
    PATIENT = "patient"  # what matters to someone looking to join a trial
    ALL = "all"


class Study(SQLModel, table=True):
    __tablename__ = "study"

    nct_id: str = Field(primary_key=True, max_length=11)
    brief_title: str = Field(default="", sa_column=Column(Text, nullable=False))
    official_title: str | None = Field(default=None, sa_column=Column(Text))
    acronym: str | None = None
    overall_status: str | None = Field(default=None, index=True)
    last_known_status: str | None = None
    why_stopped: str | None = Field(default=None, sa_column=Column(Text))
    study_type: str | None = None
    phases: str | None = None
    conditions: str | None = Field(default=None, sa_column=Column(Text))
    interventions: str | None = Field(default=None, sa_column=Column(Text))
    lead_sponsor: str | None = Field(default=None, sa_column=Column(Text))
    sponsor_class: str | None = None  # the lead sponsor's AgencyClass: INDUSTRY, NIH, OTHER...
    enrollment: int | None = None
    enrollment_type: str | None = None
    start_date: str | None = None
    start_date_type: str | None = None  # ACTUAL or ESTIMATED; often absent on older records
    primary_completion_date: str | None = None
    completion_date: str | None = None
    first_posted: str | None = None
    first_submitted: str | None = None  # studyFirstSubmitDate
    status_verified: str | None = None  # statusVerifiedDate, yyyy-MM
    last_update_posted: str | None = Field(default=None, index=True)
    results_first_posted: str | None = None
    has_results: bool = False
    minimum_age: str | None = None
    maximum_age: str | None = None
    sex: str | None = None
    countries: str | None = Field(default=None, sa_column=Column(Text))
    site_count: int = 0

    # Tags and patient facts (tracker.tags); lists are "|"-joined, evidence is JSON.
    subtypes: str | None = Field(default=None, sa_column=Column(Text))
    therapies: str | None = Field(default=None, sa_column=Column(Text))
    tag_evidence: str | None = Field(default=None, sa_column=Column(Text))
    recruiting: bool = Field(default=False, index=True)
    children: bool = False
    min_age_years: float | None = None
    max_age_years: float | None = None
    recruiting_countries: str | None = Field(default=None, sa_column=Column(Text))
    recruiting_sites: str | None = Field(default=None, sa_column=Column(Text))
    site_points: str | None = Field(default=None, sa_column=Column(Text))
    vocabulary: str | None = Field(default=None, max_length=16)

    content_hash: str = Field(max_length=64)
    # record.received_hash of the JSON this content hash was computed from: the same JSON
    # again (its versionHolder aside) is the same content, known without reading it. None
    # when unknown (rows from before it was kept) or not trusted for this JSON.
    received_hash: str | None = Field(default=None, max_length=64)
    version_id: int | None = None
    first_seen_at: datetime
    last_changed_at: datetime
    removed_at: datetime | None = Field(default=None, index=True)


class StudyVersion(SQLModel, table=True):
    __tablename__ = "study_version"
    __table_args__ = (Index("ix_study_version_nct", "nct_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    nct_id: str = Field(max_length=11)
    content_hash: str = Field(max_length=64)
    last_update_posted: str | None = None
    sync_run_id: int
    fetched_at: datetime
    record: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ChangeEvent(SQLModel, table=True):
    """One change. `last_update_posted` is the registry's date for it (the record version's
    lastUpdatePostDate; for a removal, the date of the registry data that no longer had the
    study); `detected_at` is when the tracker saw it. Readers speak in the registry's date
    (`posted_on`); operator views add the detection time."""

    __tablename__ = "change_event"
    __table_args__ = (Index("ix_change_event_nct", "nct_id", "id"),
                      Index("ix_change_event_posted", "last_update_posted"))

    id: int | None = Field(default=None, primary_key=True)
    sync_run_id: int = Field(index=True)
    nct_id: str = Field(max_length=11)
    kind: str = Field(index=True, max_length=20)  # a ChangeKind
    field: str
    old_value: str | None = Field(default=None, sa_column=Column(Text))
    new_value: str | None = Field(default=None, sa_column=Column(Text))
    summary: str = Field(sa_column=Column(Text, nullable=False))
    plain: str | None = Field(default=None, sa_column=Column(Text))
    detected_at: datetime = Field(index=True)
    last_update_posted: str | None = None
    version_id: int | None = None

    @property
    def posted_on(self) -> date:
        """The registry's date for this change; the detection date when it has none (or none
        that reads as a date), so every change has a date to be listed under."""
        try:
            return date.fromisoformat((self.last_update_posted or "")[:10])
        except ValueError:
            seen = self.detected_at
            return (seen.astimezone(UTC) if seen.tzinfo else seen).date()  # naive is UTC


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime
    finished_at: datetime | None = None
    status: str = Field(default=RunStatus.RUNNING, index=True)  # a RunStatus
    mode: str = SyncMode.FULL  # a SyncMode
    query: str = Field(sa_column=Column(Text, nullable=False))
    data_timestamp: str | None = None
    since: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    requests: int = 0
    fetched: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    reformatted: int = 0
    events: int = 0
    # Removals held back because too many trials vanished at once (see sync.MASS_REMOVAL).
    held: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # Records that could not be read, as JSON [[nct_id, problem], ...]; None when there were none.
    unreadable: str | None = Field(default=None, sa_column=Column(Text))


class Subscriber(SQLModel, table=True):
    """One e-mail address and what it wants; the digest window is the last event id sent."""

    __tablename__ = "subscriber"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    subtypes: str | None = None
    therapies: str | None = None
    countries: str | None = Field(default=None, sa_column=Column(Text))
    near_lat: float | None = None
    near_lon: float | None = None
    radius_km: float | None = None
    children: bool = False
    recruiting_only: bool = False
    changes: str = ChangeSet.PATIENT  # a ChangeSet
    cadence: str = Cadence.WEEKLY  # a Cadence
    created_at: datetime
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    last_event_id: int = 0
    last_digest_at: datetime | None = None
    # Weekly digests go out on this day (0 = Monday); None means the site's TRACKER_WEEKLY_DAY.
    weekday: int | None = None
    # The last time a digest run found this subscriber due and dealt with them: queued a
    # digest, or found nothing for them. The due rule counts from here (see subscribers.is_due).
    served_at: datetime | None = None
    # No digest is due before this time ("Pause for a month" on the manage page).
    paused_until: datetime | None = None
    # The town or city the subscriber named for `near_lat`/`near_lon`, as the site wrote it.
    near_label: str | None = Field(default=None, sa_column=Column(Text))


class SignupAttempt(SQLModel, table=True):
    """One sign-up from the site, counted against the rate limits: `key` is a keyed hash of
    the e-mail address (kind "address") or of the client's IP address (kind "client"), so
    the table holds neither. Rows older than a day are deleted as new ones arrive."""

    __tablename__ = "signup_attempt"
    __table_args__ = (Index("ix_signup_attempt_key", "kind", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=10)
    key: str = Field(max_length=64)
    at: datetime


class OutboxMessage(SQLModel, table=True):
    """A rendered e-mail waiting to be delivered, queued in the transaction that made it.

    `status` is a MessageStatus: an unknown outcome is not sent again without an operator's
    say-so.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_key", "key", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # a MessageKind
    subscriber_id: int | None = Field(default=None, index=True)
    recipient: str = Field(sa_column=Column(Text, nullable=False))
    subject: str = Field(sa_column=Column(Text, nullable=False))
    # What the message is about ("digest.7.120.164": subscriber 7, events 121-164), so the
    # same digest or alert is never queued twice; the Message-ID itself is random.
    key: str | None = Field(default=None, sa_column=Column(Text))
    message_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    # The e-mail as handed to the server, compressed (`packed`): the one stored form. The text and
    # HTML bodies are read back out of it (`text_body`, `html_body`), not stored again.
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=MessageStatus.QUEUED, index=True)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    events: int = 0
    window_end: int = 0  # the last change event this message covers
    created_at: datetime
    sent_at: datetime | None = None
    # The sender that has taken this message (`lock.Sender`), until it is sent or given back.
    claimant: int | None = None


    @property
    def message(self) -> bytes:
        """The e-mail's bytes, exactly as queued."""
        return unpack(self.content)

    @property
    def text_body(self) -> str:
        return _body(self.message, "plain")

    @property
    def html_body(self) -> str:
        return _body(self.message, "html")


def _body(message: bytes, subtype: str) -> str:
    """One body of a queued e-mail, as it was rendered ("" if it has none): what the `email`
    parser reads, found without parsing the whole message (`mime.bodies`)."""
    text, html = bodies(message)
    return text if subtype == "plain" else html


class UsedToken(SQLModel, table=True):
    """Single-use tokens already spent (their signature's digest)."""

    __tablename__ = "used_token"

    digest: str = Field(primary_key=True, max_length=64)
    used_at: datetime


class JobRun(SQLModel, table=True):
    """Every run of a scheduled job (`tracker run`): when, how it ended, in one line."""

    __tablename__ = "job_run"

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(index=True, max_length=20)  # a Job
    started_at: datetime
    finished_at: datetime | None = None
    status: str = RunStatus.RUNNING  # a RunStatus
    summary: str | None = Field(default=None, sa_column=Column(Text))


class ReportWeek(SQLModel, table=True):
    """When a week's report was written. A week's report is first written when its week ends;
    changes seen after that are "seen late": they are listed in the next report, and the
    week's page is rewritten. `last_event_id` is the newest change event when the week's
    report was last written, so the changes seen since are those with a higher id."""

    __tablename__ = "report_week"

    week: str = Field(sa_column=Column(Text, primary_key=True))  # an ISO week: 2026-W47
    first_written_at: datetime
    last_written_at: datetime
    last_event_id: int = Field(default=0, sa_column=Column(Integer, nullable=False,
                                                           server_default="0"))
