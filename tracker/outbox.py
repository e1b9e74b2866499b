"""The outbox: every e-mail the tracker means to send, from queued to sent.

The invariant that makes delivery crash-safe: a digest is inserted here in the same
transaction that advances its subscriber's window (`queue` with a `Window`), so a digest is
either queued and its changes marked as covered, or neither. A sender then moves each message
queued -> sending -> sent, committing each step; a message found still sending when a sender
starts was in the hands of a process that died, so its outcome is unknown and it is not sent
again unasked. (Messages written as files skip `sending`: writing them again is harmless, so
they go from queued to sent a claimed batch at a time.) A message's `key` says what it is
about, so the same digest or alert is never queued twice.

Several senders can share the outbox (on PostgreSQL): a sender first `claim`s a batch of
queued messages, writing its number on them in one short transaction that skips rows another
sender is claiming (FOR UPDATE SKIP LOCKED), and only it moves them on. What a dead sender
left behind is recovered by number (`recover_interrupted`), never what a live one holds.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    select,
    update,
)

from tracker import subscribers
from tracker.database import Database
from tracker.errors import BadInput, NotFound, WindowMoved
from tracker.models import MessageKind, MessageStatus, OutboxMessage, Subscriber
from tracker.packed import pack
from tracker.times import utcnow

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
BATCH = 500  # keys looked up per query
_SQLITE_CLAIMS = threading.Lock()
PENDING = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.FAILED,
           MessageStatus.UNKNOWN)


@dataclass(frozen=True)
class Draft:
    """A rendered message ready to queue."""

    kind: MessageKind
    key: str
    recipient: str
    subject: str
    message_id: str
    message: bytes
    subscriber_id: int | None = None
    events: int = 0
    window_end: int = 0  # the last change event this message covers

    def columns(self) -> dict[str, Any]:
        """The row: the e-mail is stored once, compressed; its bodies are read back from it."""
        return {"kind": MessageKind(self.kind), "key": self.key, "recipient": self.recipient,
                "subject": self.subject, "message_id": self.message_id,
                "content": pack(self.message), "subscriber_id": self.subscriber_id,
                "events": self.events, "window_end": self.window_end}


@dataclass(frozen=True)
class Window:
    """The subscriber whose window a digest moves, as read, and where it moves to."""

    subscriber: Subscriber
    end: int


def queue(db: Database, draft: Draft, *, now: datetime | None = None,
          window: Window | None = None) -> int | None:
    """Queue one message; for a digest, advance the subscriber's window in the same
    transaction. Returns the outbox id, or None if a message with this key was queued
    before. WindowMoved if another run advanced the window first."""
    now = now or utcnow()
    with db.engine.begin() as conn:
        if window is not None and not subscribers.advance_window(
                conn, window.subscriber, window.end, now, digest=True):
            raise WindowMoved(f"{window.subscriber.email}'s digest was queued by another run.")
        if conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.key == draft.key)).first():
            return None
        result = conn.execute(insert(OUTBOX).values(created_at=now,
                                                    status=MessageStatus.QUEUED,
                                                    **draft.columns()))
        key = result.inserted_primary_key
        return int(key[0]) if key else None


@dataclass(frozen=True)
class Serving:
    """One due subscriber's outcome to record: their window moves to `window.end` and, when
    `draft` is given, that digest is queued with it."""

    window: Window
    draft: Draft | None = None


def queue_digests(db: Database, servings: Sequence[Serving], *,
                  now: datetime) -> list[int | WindowMoved | None]:
    """Record many subscribers' servings in one transaction: each moves its window and queues
    its digest (if any) together, as `queue` does, so a digest is queued exactly when its
    window moves. Per serving: the outbox id, None (nothing queued: no digest, or its key was
    queued before), or WindowMoved if another run moved that window first (then nothing of
    it is written; the others are). Any other error rolls the whole batch back."""
    out: list[int | WindowMoved | None] = []
    rows: list[dict[str, Any]] = []
    places: list[int] = []  # where each row's id goes in `out`
    with db.engine.begin() as conn:
        keys = [s.draft.key for s in servings if s.draft is not None]
        seen = {row[0] for start in range(0, len(keys), BATCH) for row in conn.execute(
            select(OUTBOX.c.key).where(OUTBOX.c.key.in_(keys[start:start + BATCH])))}
        for serving in servings:
            window, draft = serving.window, serving.draft
            if not subscribers.advance_window(conn, window.subscriber, window.end, now,
                                              digest=draft is not None):
                out.append(WindowMoved(f"{window.subscriber.email}'s digest was queued by "
                                       "another run."))
                continue
            if draft is not None and draft.key not in seen:
                seen.add(draft.key)
                places.append(len(out))
                rows.append({"created_at": now, "status": MessageStatus.QUEUED,
                             **draft.columns()})
            out.append(None)
        if rows:  # one statement for the batch, the ids in the rows' order
            ids = conn.execute(insert(OUTBOX).returning(OUTBOX.c.id, sort_by_parameter_order=True),
                               rows).scalars().all()
            for place, new_id in zip(places, ids, strict=True):
                out[place] = int(new_id)
    return out


def prune(db: Database, before: datetime) -> int:
    """Delete messages sent before `before`; returns how many. The newest operator digest is
    kept whatever its age: it marks where the next one starts (`operator_window`)."""
    newest_operator = select(func.max(OUTBOX.c.id)).where(
        OUTBOX.c.kind == MessageKind.OPERATOR).scalar_subquery()
    with db.engine.begin() as conn:
        result = conn.execute(OUTBOX.delete().where(
            OUTBOX.c.status == MessageStatus.SENT, OUTBOX.c.sent_at < before,
            OUTBOX.c.id != func.coalesce(newest_operator, 0)))
    return int(result.rowcount or 0)


def has(db: Database, key: str) -> bool:
    """Whether a message with this key was ever queued."""
    with db.engine.connect() as conn:
        return conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.key == key)).first() is not None


def operator_window(db: Database) -> int:
    """The last change event an operator digest has covered."""
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(OUTBOX.c.window_end), 0))
                                .where(OUTBOX.c.kind == MessageKind.OPERATOR)).scalar_one())


INTERRUPTED = ("The sender stopped while this message was being handed to the mail server; it "
               "may or may not have been delivered. 'tracker outbox --retry ID' sends it again.")


@dataclass(frozen=True)
class Scope:
    """Which queued messages a sender delivers: only `ids` when given; only `kinds`, and only
    to an e-mail address, when given (a mail server), else every kind (files)."""

    ids: Sequence[int] | None = None
    kinds: Sequence[MessageKind] | None = None

    def where(self) -> ColumnElement[bool]:
        clause: ColumnElement[bool] = OUTBOX.c.status == MessageStatus.QUEUED
        if self.ids is not None:
            clause = clause & OUTBOX.c.id.in_(list(self.ids))
        if self.kinds is not None:
            clause = (clause & OUTBOX.c.kind.in_([str(k) for k in self.kinds])
                      & OUTBOX.c.recipient.contains("@"))
        return clause


def recover_interrupted(db: Database, alive: Callable[[int], bool]) -> int:
    """Messages that a sender no longer `alive` left sending become unknown (it may have
    handed them over), and those it had claimed but not begun are given back to the queue.
    A live sender's messages are left alone. Returns how many became unknown."""
    with db.engine.connect() as conn:
        numbers = conn.execute(select(OUTBOX.c.claimant).distinct().where(
            OUTBOX.c.status.in_([MessageStatus.SENDING, MessageStatus.QUEUED]),
            OUTBOX.c.claimant.is_not(None))).scalars().all()
    dead = [n for n in numbers if not alive(n)]
    whose = OUTBOX.c.claimant.is_(None) | OUTBOX.c.claimant.in_(dead)
    with db.engine.begin() as conn:
        result = conn.execute(update(OUTBOX).where(
            OUTBOX.c.status == MessageStatus.SENDING, whose).values(
            status=MessageStatus.UNKNOWN, error=INTERRUPTED, claimant=None))
        if dead:
            conn.execute(update(OUTBOX).where(OUTBOX.c.status == MessageStatus.QUEUED,
                                              OUTBOX.c.claimant.in_(dead)).values(claimant=None))
    return int(result.rowcount or 0)


def carries(db: Database, claimant: int) -> bool:
    """Whether any message still carries sender number `claimant`."""
    with db.engine.connect() as conn:
        return conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.claimant == claimant)
                            .limit(1)).first() is not None


def unclaimed(db: Database, scope: Scope) -> int:
    """How many queued messages in `scope` no sender has taken."""
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(
            scope.where(), OUTBOX.c.claimant.is_(None))).scalar_one())


def claim(db: Database, claimant: int, scope: Scope, limit: int) -> list[OutboxMessage]:
    """Take up to `limit` queued messages in `scope`, oldest first, for sender `claimant`, in
    one short transaction. Rows another sender is claiming at the same moment are skipped
    (PostgreSQL's FOR UPDATE SKIP LOCKED; on SQLite there is one sender), so no message is
    ever taken by two senders."""
    # SQLite has no row locks (FOR UPDATE is left out): its one sender's threads take turns.
    with _SQLITE_CLAIMS if db.is_sqlite else contextlib.nullcontext(), db.engine.begin() as conn:
        ids = conn.execute(select(OUTBOX.c.id).where(scope.where(), OUTBOX.c.claimant.is_(None))
                           .order_by(OUTBOX.c.id).limit(limit)
                           .with_for_update(skip_locked=True)).scalars().all()
        if not ids:
            return []
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids), OUTBOX.c.claimant.is_(None))
                     .values(claimant=claimant))
        rows = conn.execute(select(OUTBOX).where(OUTBOX.c.id.in_(ids),
                                                 OUTBOX.c.claimant == claimant)
                            .order_by(OUTBOX.c.id)).mappings()
        return [OutboxMessage(**row) for row in rows]


def give_back(db: Database, claimant: int) -> int:
    """Return sender `claimant`'s claimed messages that are still queued (not begun, or
    refused for now) to every sender; returns how many."""
    with db.engine.begin() as conn:
        result = conn.execute(update(OUTBOX).where(
            OUTBOX.c.claimant == claimant, OUTBOX.c.status == MessageStatus.QUEUED)
            .values(claimant=None))
    return int(result.rowcount or 0)


def begin_sending(db: Database, message_id: int, *, sent: Sequence[int] = (),
                  now: datetime | None = None) -> None:
    """Mark one message sending (counting the attempt) and, in the same commit, the messages
    `sent` since the last commit as sent. The sending mark is committed before the message
    is handed over; a sent mark may wait for the next commit, since a message left sending
    by a crash becomes unknown and is never resent."""
    with db.engine.begin() as conn:
        if sent:
            conn.execute(_SENDING_AND_SENT, {"sending": message_id, "ids": [message_id, *sent],
                                             "now": now or utcnow()})
        else:
            conn.execute(_SENDING, {"sending": message_id})


# Built once: a message costs one of these per commit, so building it each time shows.
_SENDING = update(OUTBOX).where(OUTBOX.c.id == bindparam("sending")).values(
    status=MessageStatus.SENDING, error=None, attempts=OUTBOX.c.attempts + 1)
# The next message's sending mark and the last ones' sent marks in one statement: a round
# trip less per message, which counts on PostgreSQL over TCP.
_IS_SENDING = OUTBOX.c.id == bindparam("sending")
_SENDING_AND_SENT = update(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True))).values(
    status=case((_IS_SENDING, literal(MessageStatus.SENDING, OUTBOX.c.status.type)),
                else_=literal(MessageStatus.SENT, OUTBOX.c.status.type)),
    error=None,
    attempts=case((_IS_SENDING, OUTBOX.c.attempts + 1), else_=OUTBOX.c.attempts),
    sent_at=case((_IS_SENDING, OUTBOX.c.sent_at),
                 else_=bindparam("now", type_=OUTBOX.c.sent_at.type)),
    claimant=case((_IS_SENDING, OUTBOX.c.claimant), else_=null()))


def mark_sent(db: Database, ids: Sequence[int], now: datetime | None = None, *,
              attempted: bool = False) -> None:
    """Mark delivered messages sent, in one commit; `attempted` counts the attempt too, for
    messages that were delivered without a `sending` mark (files, rewritten harmlessly if
    this commit never happens)."""
    if ids:
        with db.engine.begin() as conn:
            _mark_sent(conn, ids, now or utcnow(), attempted=attempted)


def _mark_sent(conn: Connection, ids: Sequence[int], now: datetime, *,
               attempted: bool = False) -> None:
    values: dict[str, Any] = {"status": MessageStatus.SENT, "error": None, "sent_at": now,
                              "claimant": None}
    if attempted:
        values["attempts"] = OUTBOX.c.attempts + 1
    conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(list(ids))).values(**values))


def queued(db: Database, ids: Sequence[int] | None = None) -> list[OutboxMessage]:
    query = select(OUTBOX).where(OUTBOX.c.status == MessageStatus.QUEUED).order_by(OUTBOX.c.id)
    if ids is not None:
        query = query.where(OUTBOX.c.id.in_(list(ids)))
    with db.engine.connect() as conn:
        return [OutboxMessage(**row) for row in conn.execute(query).mappings()]


def messages(db: Database, statuses: Sequence[MessageStatus] = ()) -> list[OutboxMessage]:
    query = select(OUTBOX).order_by(OUTBOX.c.id)
    if statuses:
        query = query.where(OUTBOX.c.status.in_(list(statuses)))
    with db.engine.connect() as conn:
        return [OutboxMessage(**row) for row in conn.execute(query).mappings()]


def counts(db: Database) -> dict[MessageStatus, int]:
    """How many messages are in each state, counted by the database."""
    query = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
    with db.engine.connect() as conn:
        found = {MessageStatus(status): int(n) for status, n in conn.execute(query)}
    return {status: found.get(status, 0) for status in MessageStatus}


def mark(db: Database, message_id: int, status: MessageStatus, *, error: str | None = None,
         attempt: bool = False, now: datetime | None = None) -> None:
    values: dict[str, Any] = {"status": status, "error": error}
    if status in (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.UNKNOWN):
        values["claimant"] = None  # settled: no sender holds it any more
    if attempt:
        values["attempts"] = OUTBOX.c.attempts + 1
    if status == MessageStatus.SENT:
        values["sent_at"] = now or utcnow()
    with db.engine.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == message_id).values(**values))


def failed_attempt(db: Database, ids: Sequence[int], error: str) -> None:
    """Record an attempt that never reached the mail server (it could not be reached)."""
    if not ids:
        return
    with db.engine.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(list(ids)))
                     .values(attempts=OUTBOX.c.attempts + 1, error=error))


def unreached(db: Database, scope: Scope, error: str) -> int:
    """Record an attempt that never reached the mail server on every queued message in
    `scope` that no sender has taken; returns how many."""
    with db.engine.begin() as conn:
        result = conn.execute(update(OUTBOX).where(scope.where(), OUTBOX.c.claimant.is_(None))
                              .values(attempts=OUTBOX.c.attempts + 1, error=error))
    return int(result.rowcount or 0)


def retry(db: Database, message_id: int) -> OutboxMessage:
    """Put a failed or unknown message back in the queue, at an operator's request."""
    with db.engine.begin() as conn:
        row = conn.execute(select(OUTBOX).where(OUTBOX.c.id == message_id)).mappings().first()
        if row is None:
            raise NotFound(f"There is no outbox message {message_id}.")
        if row["status"] not in (MessageStatus.FAILED, MessageStatus.UNKNOWN):
            raise BadInput(f"Outbox message {message_id} is {row['status']}; only failed "
                           "or unknown messages can be retried.")
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == message_id)
                     .values(status=MessageStatus.QUEUED, error=None, claimant=None))
        row = conn.execute(select(OUTBOX).where(OUTBOX.c.id == message_id)).mappings().one()
    return OutboxMessage(**row)
