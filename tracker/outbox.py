"""Subscribers and the outbox in the database.

The invariant that makes delivery crash-safe: a digest is inserted into the outbox in the same
transaction that advances its subscriber's window, so a digest is either queued and its
changes marked as covered, or neither. A sender then moves each message queued -> sending ->
sent, committing each step; a message found still 'sending' when a sender starts was in the
hands of a process that died, so its outcome is unknown and it is not sent again unasked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tracker.errors import NotFound, TrackerError
from tracker.models import ChangeEvent, OutboxMessage, Subscriber, UsedToken
from tracker.store import EVENT, Store, utcnow
from tracker.subscribers import Preferences
from tracker.tokens import BadToken, Token

SUBSCRIBER = Subscriber.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
USED = UsedToken.__table__  # type: ignore[attr-defined]


class WindowMoved(TrackerError):
    """Another digest run advanced this subscriber's window first; nothing was queued."""


def subscribe(store: Store, email: str, preferences: Preferences, *, confirmed: bool,
              now: datetime) -> tuple[Subscriber, str]:
    """Add or update a subscription. Returns it and what happened: created, updated,
    resubscribed. A new (or returning) subscriber starts at the newest change: no backlog."""
    with store.engine.begin() as conn:
        row = conn.execute(select(SUBSCRIBER).where(
            func.lower(SUBSCRIBER.c.email) == email.lower())).mappings().first()
        newest = conn.execute(select(func.coalesce(func.max(EVENT.c.id), 0))).scalar_one()
        values: dict[str, Any] = dict(preferences.columns())
        if row is None:
            values.update(email=email, created_at=now, last_event_id=newest,
                          confirmed_at=now if confirmed else None)
            conn.execute(insert(SUBSCRIBER).values(**values))
            outcome = "created"
        elif row["unsubscribed_at"] is not None:
            values.update(unsubscribed_at=None, last_event_id=newest, last_digest_at=None,
                          served_at=None, confirmed_at=now if confirmed else None)
            conn.execute(update(SUBSCRIBER).where(SUBSCRIBER.c.id == row["id"]).values(**values))
            outcome = "resubscribed"
        else:
            if confirmed and row["confirmed_at"] is None:
                values["confirmed_at"] = now
            conn.execute(update(SUBSCRIBER).where(SUBSCRIBER.c.id == row["id"]).values(**values))
            outcome = "updated"
        fresh = conn.execute(select(SUBSCRIBER).where(
            func.lower(SUBSCRIBER.c.email) == email.lower())).mappings().one()
    return Subscriber(**fresh), outcome


def find(store: Store, email: str) -> Subscriber:
    with store.engine.connect() as conn:
        row = conn.execute(select(SUBSCRIBER).where(
            func.lower(SUBSCRIBER.c.email) == email.strip().lower())).mappings().first()
    if row is None:
        raise NotFound(f"{email} is not subscribed ('tracker subscribers' lists everyone).")
    return Subscriber(**row)


def get(store: Store, subscriber_id: int) -> Subscriber | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(SUBSCRIBER).where(SUBSCRIBER.c.id == subscriber_id)
                           ).mappings().first()
    return Subscriber(**row) if row else None


def unsubscribe(store: Store, subscriber_id: int, now: datetime) -> bool:
    """True if this ended an active subscription; False if it had already ended."""
    with store.engine.begin() as conn:
        result = conn.execute(update(SUBSCRIBER).where(
            SUBSCRIBER.c.id == subscriber_id, SUBSCRIBER.c.unsubscribed_at.is_(None))
            .values(unsubscribed_at=now))
    return bool(result.rowcount)


def confirm(store: Store, token: Token, now: datetime) -> Subscriber:
    """Confirm with a single-use token; BadToken if spent, or if it names another address."""
    with store.engine.begin() as conn:
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


def subscribers(store: Store, include_ended: bool = False) -> list[Subscriber]:
    query = select(SUBSCRIBER).order_by(SUBSCRIBER.c.email)
    if not include_ended:
        query = query.where(SUBSCRIBER.c.unsubscribed_at.is_(None))
    with store.engine.connect() as conn:
        return [Subscriber(**row) for row in conn.execute(query).mappings()]


def events_after(store: Store, after_id: int) -> list[ChangeEvent]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(EVENT).where(EVENT.c.id > after_id).order_by(EVENT.c.id))
        return [ChangeEvent(**row) for row in rows.mappings()]


def newest_event_id(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(EVENT.c.id), 0))).scalar_one())


def operator_window(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(OUTBOX.c.window_end), 0))
                                .where(OUTBOX.c.kind == "operator")).scalar_one())


def queue(store: Store, message: dict[str, Any], *, subscriber: Subscriber | None = None,
          window_end: int | None = None, now: datetime | None = None) -> int | None:
    """Queue one message; for a digest, advance the subscriber's window and record them as
    served at `now` in the same transaction. Returns the outbox id, or None if this exact
    message was queued before. WindowMoved if another run advanced the window first."""
    now = now or utcnow()
    with store.engine.begin() as conn:
        if subscriber is not None and window_end is not None:
            moved = conn.execute(update(SUBSCRIBER).where(
                SUBSCRIBER.c.id == subscriber.id,
                SUBSCRIBER.c.last_event_id == subscriber.last_event_id)
                .values(last_event_id=window_end, last_digest_at=now, served_at=now))
            if not moved.rowcount:
                raise WindowMoved(f"{subscriber.email}'s digest was queued by another run.")
        exists = conn.execute(select(OUTBOX.c.id).where(
            OUTBOX.c.message_id == message["message_id"])).first()
        if exists:
            return None
        result = conn.execute(insert(OUTBOX).values(created_at=now, status="queued",
                                                    **message))
        key = result.inserted_primary_key
        return int(key[0]) if key else None


def skip_window(store: Store, subscriber: Subscriber, window_end: int, now: datetime) -> None:
    """Nothing to send: record the subscriber as served at `now` and move the window to
    `window_end` (past the changes that matched nothing; where it was if there were none).

    Guarded like `queue`: if another run moved the window first, nothing is written (that run
    served them).
    """
    with store.engine.begin() as conn:
        conn.execute(update(SUBSCRIBER).where(
            SUBSCRIBER.c.id == subscriber.id,
            SUBSCRIBER.c.last_event_id == subscriber.last_event_id)
            .values(last_event_id=window_end, served_at=now))


def recover_interrupted(store: Store) -> int:
    """Messages a dead sender left 'sending' become 'unknown'; call only under the send lock."""
    with store.engine.begin() as conn:
        result = conn.execute(update(OUTBOX).where(OUTBOX.c.status == "sending").values(
            status="unknown", error="The sender stopped while this message was being "
                                    "handed to the mail server; it may or may not have been "
                                    "delivered. 'tracker outbox --retry ID' sends it again."))
    return int(result.rowcount or 0)


def queued(store: Store, ids: Sequence[int] | None = None) -> list[OutboxMessage]:
    query = select(OUTBOX).where(OUTBOX.c.status == "queued").order_by(OUTBOX.c.id)
    if ids is not None:
        query = query.where(OUTBOX.c.id.in_(list(ids)))
    with store.engine.connect() as conn:
        return [OutboxMessage(**row) for row in conn.execute(query).mappings()]


def messages(store: Store, statuses: Sequence[str] = ()) -> list[OutboxMessage]:
    query = select(OUTBOX).order_by(OUTBOX.c.id)
    if statuses:
        query = query.where(OUTBOX.c.status.in_(list(statuses)))
    with store.engine.connect() as conn:
        return [OutboxMessage(**row) for row in conn.execute(query).mappings()]


def mark(store: Store, message_id: int, status: str, *, error: str | None = None,
         attempt: bool = False, now: datetime | None = None) -> None:
    values: dict[str, Any] = {"status": status, "error": error}
    if attempt:
        values["attempts"] = OUTBOX.c.attempts + 1
    if status == "sent":
        values["sent_at"] = now or utcnow()
    with store.engine.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == message_id).values(**values))


def retry(store: Store, message_id: int) -> OutboxMessage:
    """Put a failed or unknown message back in the queue, at an operator's request."""
    with store.engine.begin() as conn:
        row = conn.execute(select(OUTBOX).where(OUTBOX.c.id == message_id)).mappings().first()
        if row is None:
            raise NotFound(f"There is no outbox message {message_id}.")
        if row["status"] not in ("failed", "unknown"):
            raise TrackerError(f"Outbox message {message_id} is {row['status']}; only failed "
                               "or unknown messages can be retried.")
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == message_id)
                     .values(status="queued", error=None))
        row = conn.execute(select(OUTBOX).where(OUTBOX.c.id == message_id)).mappings().one()
    return OutboxMessage(**row)
