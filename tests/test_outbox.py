"""The outbox: a message is queued once for what it is about, a digest moves its subscriber's
window in the same transaction, states are counted by the database, and whatever a delivery
attempt meets is recorded on every message it concerns."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from tracker import outbox, subscribers
from tracker.database import Database
from tracker.errors import BadInput, PermanentSendError, Unreachable, WindowMoved
from tracker.mail import drain
from tracker.models import MessageKind, MessageStatus, OutboxMessage
from tracker.subscribers import Preferences

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url, create=True)
    yield database
    database.close()


def draft(key: str, recipient: str = "pat@example.org", **extra: object) -> outbox.Draft:
    return outbox.Draft(kind=MessageKind.DIGEST, key=key, recipient=recipient,
                        subject="Myositis trials: 1 update", message_id=f"<{key}@example.org>",
                        message=b"Subject: x\r\n\r\nx\r\n",
                        **extra)  # type: ignore[arg-type]


def test_a_message_is_queued_once_for_what_it_is_about(db: Database) -> None:
    first = outbox.queue(db, draft("digest.1.0.5"), now=NOW)
    same_news = dataclasses.replace(draft("digest.1.0.5"), message_id="<other@example.org>")
    again = outbox.queue(db, same_news, now=NOW)

    assert first is not None and again is None
    assert outbox.has(db, "digest.1.0.5") and not outbox.has(db, "digest.1.5.9")
    assert [m.message_id for m in outbox.messages(db)] == ["<digest.1.0.5@example.org>"]


def test_a_digest_moves_its_subscribers_window_or_is_not_queued(db: Database) -> None:
    pat, _ = subscribers.subscribe(db, "pat@example.org", Preferences(), confirmed=True,
                                   now=NOW)

    outbox.queue(db, draft("digest.1.0.5", window_end=5), now=NOW,
                 window=outbox.Window(pat, 5))
    with pytest.raises(WindowMoved):  # a second run read the window before the first moved it
        outbox.queue(db, draft("digest.1.0.6", window_end=6), now=NOW,
                     window=outbox.Window(pat, 6))

    moved = subscribers.get(db, pat.id or 0)
    assert moved is not None and moved.last_event_id == 5
    assert moved.last_digest_at is not None
    assert [m.key for m in outbox.messages(db)] == ["digest.1.0.5"]


def test_states_are_counted_by_the_database(db: Database) -> None:
    ids = [outbox.queue(db, draft(f"digest.{n}.0.1"), now=NOW) for n in range(4)]
    outbox.mark(db, ids[0] or 0, MessageStatus.SENT, now=NOW)
    outbox.mark(db, ids[1] or 0, MessageStatus.FAILED, error="550 no such user")

    counts = outbox.counts(db)

    assert counts[MessageStatus.QUEUED] == 2 and counts[MessageStatus.SENT] == 1
    assert counts[MessageStatus.FAILED] == 1 and counts[MessageStatus.UNKNOWN] == 0


def test_only_a_failed_or_unknown_message_can_be_retried(db: Database) -> None:
    queued = outbox.queue(db, draft("digest.1.0.1"), now=NOW) or 0
    failed = outbox.queue(db, draft("digest.2.0.1"), now=NOW) or 0
    outbox.mark(db, failed, MessageStatus.FAILED, error="550 no such user")

    with pytest.raises(BadInput, match="is queued; only failed or unknown"):
        outbox.retry(db, queued)
    again = outbox.retry(db, failed)

    assert again.status == MessageStatus.QUEUED and again.error is None


@dataclass
class FlakyServer:
    """A transport whose server accepts `up_for` messages, then cannot be reached."""

    up_for: int = 0
    refuse_login: bool = False
    delivered: list[str] = field(default_factory=list)
    kinds: tuple[MessageKind, ...] | None = None

    def open(self) -> None:
        self.ensure_open()

    def ensure_open(self) -> None:
        if self.refuse_login:
            raise PermanentSendError("The mail server refused the login for TRACKER_SMTP_USER "
                                     "(535).")
        if len(self.delivered) >= self.up_for:
            raise Unreachable("Cannot reach the mail server mail.example.org:587: refused")

    def deliver(self, message: OutboxMessage) -> None:
        self.delivered.append(message.recipient)

    def close(self) -> None:
        pass


def queue_three(db: Database) -> None:
    for n, who in enumerate(("a@example.org", "b@example.org", "c@example.org")):
        outbox.queue(db, draft(f"digest.{n}.0.1", who), now=NOW)


def test_a_server_gone_mid_batch_leaves_the_rest_queued_with_the_attempt_and_why(
        db: Database) -> None:
    queue_three(db)
    server = FlakyServer(up_for=1)

    result = drain(db, server, sleep=lambda _: None)

    assert server.delivered == ["a@example.org"]
    assert (result.sent, result.left) == (1, 2)
    rest = [m for m in outbox.messages(db) if m.status == MessageStatus.QUEUED]
    assert [m.recipient for m in rest] == ["b@example.org", "c@example.org"]
    for message in rest:
        assert message.attempts >= 1
        assert message.error == "Cannot reach the mail server mail.example.org:587: refused"


def test_a_refused_login_keeps_every_message_queued_not_failed(db: Database) -> None:
    queue_three(db)

    result = drain(db, FlakyServer(up_for=9, refuse_login=True), sleep=lambda _: None)

    assert (result.sent, result.failed, result.left) == (0, 0, 3)
    for message in outbox.messages(db):
        assert message.status == MessageStatus.QUEUED and message.attempts == 1
        assert "refused the login" in (message.error or "")


def test_a_batch_of_servings_queues_each_digest_with_its_window_and_skips_a_moved_one(
        db: Database) -> None:
    pat, _ = subscribers.subscribe(db, "pat@example.org", Preferences(), confirmed=True, now=NOW)
    ana, _ = subscribers.subscribe(db, "ana@example.org", Preferences(), confirmed=True, now=NOW)
    lou, _ = subscribers.subscribe(db, "lou@example.org", Preferences(), confirmed=True, now=NOW)
    outbox.queue(db, draft("digest.2.0.4", "ana@example.org", window_end=4), now=NOW,
                 window=outbox.Window(ana, 4))  # another run served ana first

    results = outbox.queue_digests(db, [
        outbox.Serving(outbox.Window(pat, 5), draft("digest.1.0.5", window_end=5)),
        outbox.Serving(outbox.Window(ana, 5), draft("digest.2.0.5", "ana@example.org")),
        outbox.Serving(outbox.Window(lou, 5))], now=NOW)

    assert isinstance(results[0], int) and results[2] is None
    assert isinstance(results[1], WindowMoved)
    assert [m.key for m in outbox.messages(db)] == ["digest.2.0.4", "digest.1.0.5"]
    windows = {s.email: (s.last_event_id, s.last_digest_at is not None)
               for s in subscribers.listing(db)}
    assert windows == {"pat@example.org": (5, True), "ana@example.org": (4, True),
                       "lou@example.org": (5, False)}


def test_the_message_is_stored_once_compressed_and_its_bodies_read_back_from_it(
        db: Database) -> None:
    message = (b"Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n"
               b"Content-Type: text/plain; charset=\"utf-8\"\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n\r\nH\xc3\xb4pital\r\n--b\r\n"
               b"Content-Type: text/html; charset=\"utf-8\"\r\n\r\n<p>x</p>\r\n--b--\r\n")
    outbox.queue(db, dataclasses.replace(draft("digest.1.0.5"), message=message), now=NOW)

    [row] = outbox.messages(db)
    assert row.message == message and len(row.content) < len(message)
    assert row.content.startswith(b"\x28\xb5\x2f\xfd")  # zstd
    assert (row.text_body, row.html_body) == ("Hôpital", "<p>x</p>")


def test_each_serving_gets_the_id_of_its_own_message(db: Database) -> None:
    people = [subscribers.subscribe(db, f"reader{n}@example.org", Preferences(), confirmed=True,
                                    now=NOW)[0] for n in range(6)]
    servings = [outbox.Serving(outbox.Window(person, 5),
                               None if n % 3 == 1 else draft(f"digest.{n}.0.5", person.email))
                for n, person in enumerate(people)]

    results = outbox.queue_digests(db, servings, now=NOW)

    keys = {m.id: m.key for m in outbox.messages(db)}
    assert [keys.get(r) if isinstance(r, int) else r for r in results] == [
        "digest.0.0.5", None, "digest.2.0.5", "digest.3.0.5", None, "digest.5.0.5"]


def test_a_message_stored_by_zlib_before_is_still_read(db: Database) -> None:
    message = b"Subject: x\r\n\r\nqueued by tracker 0.1\r\n"
    outbox.queue(db, draft("digest.1.0.5"), now=NOW)
    with db.engine.begin() as conn:
        conn.execute(outbox.OUTBOX.update().values(content=zlib.compress(message)))

    [row] = outbox.messages(db)
    assert row.content[:1] == b"\x78" and row.message == message
