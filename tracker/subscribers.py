"""Subscribers: who they are, what they asked for, and their digest window, in the database.

A subscriber's window is the last change event their digests have covered. It only moves
forward, and only from where the mover read it (`advance_window`), so two digest runs never
serve the same changes twice. Subscribing is double opt-in: a new address is unconfirmed until
its single-use confirmation token is spent (`confirm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tracker.database import Database
from tracker.errors import BadAddress, BadToken, NotFound
from tracker.matching import DEFAULT_RADIUS_KM
from tracker.models import Cadence, ChangeSet, SignupAttempt, Subscriber, UsedToken
from tracker.store import EVENT
from tracker.text import join_list, split_list
from tracker.tokens import Token

SUBSCRIBER = Subscriber.__table__  # type: ignore[attr-defined]
USED = UsedToken.__table__  # type: ignore[attr-defined]
ATTEMPT = SignupAttempt.__table__  # type: ignore[attr-defined]
ATTEMPTS_KEPT = timedelta(days=1)  # the longest rate-limit window


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    RESUBSCRIBED = "resubscribed"


@dataclass(frozen=True)
class Preferences:
    """What a subscriber asked for; values within one field are alternatives."""

    subtypes: tuple[str, ...] = ()
    therapies: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    near: tuple[float, float] | None = None
    radius_km: float | None = None
    children: bool = False
    recruiting_only: bool = False
    changes: ChangeSet = ChangeSet.PATIENT
    cadence: Cadence = Cadence.WEEKLY
    weekday: int | None = None  # weekly only; None: the site's TRACKER_WEEKLY_DAY
    near_label: str | None = None  # the place `near` was found from, as people read it

    def columns(self) -> dict[str, Any]:
        return {
            "subtypes": join_list(self.subtypes),
            "therapies": join_list(self.therapies),
            "countries": join_list(self.countries),
            "near_lat": self.near[0] if self.near else None,
            "near_lon": self.near[1] if self.near else None,
            "radius_km": (self.radius_km or DEFAULT_RADIUS_KM) if self.near else None,
            "near_label": self.near_label if self.near else None,
            "children": self.children,
            "recruiting_only": self.recruiting_only,
            "changes": ChangeSet(self.changes),
            "cadence": Cadence(self.cadence),
            "weekday": self.weekday if self.cadence == Cadence.WEEKLY else None,
        }


def preferences_of(subscriber: Subscriber) -> Preferences:
    """What `subscriber` asked for, as `subscribe` would be given it again."""
    near = None
    if subscriber.near_lat is not None and subscriber.near_lon is not None:
        near = (subscriber.near_lat, subscriber.near_lon)
    return Preferences(
        subtypes=tuple(split_list(subscriber.subtypes)),
        therapies=tuple(split_list(subscriber.therapies)),
        countries=tuple(split_list(subscriber.countries)),
        near=near, radius_km=subscriber.radius_km if near else None,
        near_label=subscriber.near_label if near else None,
        children=subscriber.children, recruiting_only=subscriber.recruiting_only,
        changes=ChangeSet(subscriber.changes), cadence=Cadence(subscriber.cadence),
        weekday=subscriber.weekday)


@dataclass(frozen=True)
class Counts:
    confirmed: int
    unconfirmed: int


def normalise_address(address: str) -> str:
    """A syntactically valid address in normal form, or BadAddress saying why not.

    Deliverability is not checked (no DNS here); the confirmation e-mail proves it. The form
    returned is ASCII (an internationalised domain in its xn-- form), as the To header and the
    SMTP envelope need it; a non-ASCII local part would need SMTPUTF8, so it is refused.
    """
    address = address.strip()
    if any(ord(c) < 32 for c in address):
        raise BadAddress(f"{address!r} is not a valid e-mail address: it contains control "
                         "characters.")
    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise BadAddress(f"{address!r} is not a valid e-mail address: {error}") from None
    return str(result.ascii_email or result.normalized)


def parse_point(text: str) -> tuple[float, float]:
    """"45.75,4.85" -> (45.75, 4.85); ValueError with the reason otherwise."""
    try:
        lat_text, lon_text = text.split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise ValueError("give latitude and longitude as LAT,LON, e.g. 45.75,4.85") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError("latitude must be within -90..90 and longitude within -180..180")
    return lat, lon


def subscribe(db: Database, email: str, preferences: Preferences, *, confirmed: bool,
              now: datetime) -> tuple[Subscriber, Outcome]:
    """Add or update a subscription. A new (or returning) subscriber starts at the newest
    change: no backlog."""
    with db.engine.begin() as conn:
        row = _by_email(conn, email)
        newest = conn.execute(select(func.coalesce(func.max(EVENT.c.id), 0))).scalar_one()
        values: dict[str, Any] = dict(preferences.columns())
        if row is None:
            values.update(email=email, created_at=now, last_event_id=newest,
                          confirmed_at=now if confirmed else None)
            conn.execute(insert(SUBSCRIBER).values(**values))
            outcome = Outcome.CREATED
        elif row["unsubscribed_at"] is not None:
            values.update(unsubscribed_at=None, last_event_id=newest, last_digest_at=None,
                          served_at=None, confirmed_at=now if confirmed else None)
            conn.execute(update(SUBSCRIBER).where(SUBSCRIBER.c.id == row["id"]).values(**values))
            outcome = Outcome.RESUBSCRIBED
        else:
            if confirmed and row["confirmed_at"] is None:
                values["confirmed_at"] = now
            conn.execute(update(SUBSCRIBER).where(SUBSCRIBER.c.id == row["id"]).values(**values))
            outcome = Outcome.UPDATED
        fresh = _by_email(conn, email)
        assert fresh is not None
    return Subscriber(**fresh), outcome


def find(db: Database, email: str) -> Subscriber:
    with db.engine.connect() as conn:
        row = _by_email(conn, email.strip())
    if row is None:
        raise NotFound(f"{email} is not subscribed ('tracker subscribers' lists everyone).")
    return Subscriber(**row)


def get(db: Database, subscriber_id: int) -> Subscriber | None:
    with db.engine.connect() as conn:
        row = conn.execute(select(SUBSCRIBER).where(SUBSCRIBER.c.id == subscriber_id)
                           ).mappings().first()
    return Subscriber(**row) if row else None


def unsubscribe(db: Database, subscriber_id: int, now: datetime) -> bool:
    """True if this ended an active subscription; False if it had already ended."""
    with db.engine.begin() as conn:
        result = conn.execute(update(SUBSCRIBER).where(
            SUBSCRIBER.c.id == subscriber_id, SUBSCRIBER.c.unsubscribed_at.is_(None))
            .values(unsubscribed_at=now))
    return bool(result.rowcount)


def change(db: Database, subscriber_id: int, preferences: Preferences) -> bool:
    """Replace an active subscription's choices; its window and confirmation stay as they
    are. False if the subscription has ended (then nothing is written)."""
    with db.engine.begin() as conn:
        result = conn.execute(update(SUBSCRIBER).where(
            SUBSCRIBER.c.id == subscriber_id, SUBSCRIBER.c.unsubscribed_at.is_(None))
            .values(**preferences.columns()))
    return bool(result.rowcount)


def pause(db: Database, subscriber_id: int, until: datetime | None) -> bool:
    """No digest before `until` (None: resume now). False if the subscription has ended.
    The window does not move: the first digest after a pause covers the paused weeks."""
    with db.engine.begin() as conn:
        result = conn.execute(update(SUBSCRIBER).where(
            SUBSCRIBER.c.id == subscriber_id, SUBSCRIBER.c.unsubscribed_at.is_(None))
            .values(paused_until=until))
    return bool(result.rowcount)


def count_attempts(db: Database, kind: str, key: str, since: datetime) -> int:
    """Sign-up attempts of `kind` ("address" or "client") under `key` since `since`."""
    query = select(func.count()).select_from(ATTEMPT).where(
        ATTEMPT.c.kind == kind, ATTEMPT.c.key == key, ATTEMPT.c.at >= since)
    with db.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def record_attempt(db: Database, kind: str, key: str, now: datetime) -> None:
    """Count one attempt, and forget those older than any limit looks back."""
    with db.engine.begin() as conn:
        conn.execute(ATTEMPT.delete().where(ATTEMPT.c.at < now - ATTEMPTS_KEPT))
        conn.execute(insert(ATTEMPT).values(kind=kind, key=key, at=now))


def confirm(db: Database, token: Token, now: datetime) -> Subscriber:
    """Confirm with a single-use token; BadToken if spent, or if it names another address."""
    with db.engine.begin() as conn:
        row = conn.execute(select(SUBSCRIBER).where(SUBSCRIBER.c.id == token.subscriber_id)
                           ).mappings().first()
        if row is None or row["email"].lower() != token.email.lower() \
                or row["unsubscribed_at"] is not None:
            raise BadToken("This confirmation link is for a subscription that no longer "
                           "exists; subscribe again.")
        try:
            conn.execute(insert(USED).values(digest=token.digest, used_at=now))
        except IntegrityError:
            raise BadToken("This confirmation link has already been used.") from None
        if row["confirmed_at"] is None:
            conn.execute(update(SUBSCRIBER).where(SUBSCRIBER.c.id == row["id"])
                         .values(confirmed_at=now))
        fresh = conn.execute(select(SUBSCRIBER).where(SUBSCRIBER.c.id == row["id"])
                             ).mappings().one()
    return Subscriber(**fresh)


def listing(db: Database, include_ended: bool = False) -> list[Subscriber]:
    """Subscribers by address; ended subscriptions only with `include_ended`."""
    query = select(SUBSCRIBER).order_by(SUBSCRIBER.c.email)
    if not include_ended:
        query = query.where(SUBSCRIBER.c.unsubscribed_at.is_(None))
    with db.engine.connect() as conn:
        return [Subscriber(**row) for row in conn.execute(query).mappings()]


def counts(db: Database) -> Counts:
    active = SUBSCRIBER.c.unsubscribed_at.is_(None)
    query = select(func.count().filter(SUBSCRIBER.c.confirmed_at.is_not(None)),
                   func.count().filter(SUBSCRIBER.c.confirmed_at.is_(None))).where(active)
    with db.engine.connect() as conn:
        confirmed, unconfirmed = conn.execute(query).one()
    return Counts(int(confirmed), int(unconfirmed))


def advance_window(conn: Connection, subscriber: Subscriber, window_end: int, now: datetime,
                   *, digest: bool) -> bool:
    """Move the window to `window_end` and record the subscriber as served at `now` (and, if
    a digest was queued, as sent one), inside the caller's transaction. False if another run
    moved the window first: then nothing is written."""
    moved = conn.execute(_ADVANCE_WITH_DIGEST if digest else _ADVANCE, {
        "row": subscriber.id, "read": subscriber.last_event_id, "end": window_end, "now": now})
    return bool(moved.rowcount)


# Built once: a digest run moves thousands of windows, one statement each.
_ADVANCE = update(SUBSCRIBER).where(
    SUBSCRIBER.c.id == bindparam("row"), SUBSCRIBER.c.last_event_id == bindparam("read")
).values(last_event_id=bindparam("end"), served_at=bindparam("now"))
_ADVANCE_WITH_DIGEST = _ADVANCE.values(last_digest_at=bindparam("now"))


def served_without_digest(db: Database, subscriber: Subscriber, window_end: int,
                          now: datetime) -> None:
    """Nothing to send: served at `now`, window moved past the changes that matched nothing
    (guarded like `advance_window`: if another run moved it first, that run served them)."""
    with db.engine.begin() as conn:
        advance_window(conn, subscriber, window_end, now, digest=False)


def _by_email(conn: Connection, email: str) -> Any:
    return conn.execute(select(SUBSCRIBER).where(
        func.lower(SUBSCRIBER.c.email) == email.lower())).mappings().first()
