"""PIPELINING (RFC 2920) against a real SMTP server on loopback (tests/smtp.py) that offers it
or not.

Offered, a message's MAIL FROM, RCPT TO and DATA leave in one write and their replies are read
after; not offered, each reply is awaited. A refusal anywhere in the group settles the message
as it would without pipelining: the same status, error and attempts, nothing handed over twice,
and a message whose DATA was refused is never marked sent. (tests/test_mail.py runs every
delivery spec against both kinds of server.)
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import Sleeps
from tests.smtp import DATA_COMMAND, DROP, END_OF_DATA, MAIL, RCPT, Mailbox, smtp_server
from tests.test_mail import SENDER, mailbox, smtp_settings
from tracker import outbox
from tracker.config import Settings
from tracker.database import Database
from tracker.mail import SmtpTransport, drain
from tracker.models import MessageKind
from tracker.store import Store
from tracker.times import utcnow

pytestmark = pytest.mark.slow  # a real SMTP server on loopback
__all__ = ["mailbox"]  # the fixture, shared with test_mail


def queue(db: Database, *names: str) -> dict[str, bytes]:
    """One message per name, to name@example.org, in order; their bytes by name. A line that
    starts with a dot checks that the message is dot-stuffed, pipelined or not."""
    messages = {}
    for name in names:
        message = (f"From: {SENDER}\r\nTo: {name}@example.org\r\n"
                   f"Message-ID: <{name}@localhost>\r\nSubject: For {name}\r\n\r\n"
                   f"Hello {name}.\r\n.A line that starts with a dot\r\n").encode()
        assert outbox.queue(db, outbox.Draft(
            kind=MessageKind.DIGEST, key=f"digest.{name}", recipient=f"{name}@example.org",
            subject=f"For {name}", message_id=f"<{name}@localhost>", message=message),
            now=utcnow()) is not None
        messages[name] = message
    return messages


def outcomes(db: Database) -> dict[str, tuple[str, int, str | None]]:
    """Each message's (status, attempts, error) by the recipient's name."""
    return {m.recipient.split("@")[0]: (m.status, m.attempts, m.error)
            for m in outbox.messages(db)}


def received(mailbox: Mailbox) -> list[str]:
    return [r.rcpt_tos[0].split("@")[0] for r in mailbox.handed_over]


def test_mail_rcpt_and_data_leave_in_one_write_when_the_server_offers_pipelining(
        settings: Settings, store: Store, mailbox: Mailbox) -> None:
    sent = queue(store.db, "ana", "ben", "cy")

    result = drain(store.db, SmtpTransport(smtp_settings(settings, mailbox.port)), sleep=Sleeps())

    assert (result.sent, result.failed, result.unknown, result.left) == (3, 0, 0, 0)
    if mailbox.pipelining:  # behind each MAIL, already there: its RCPT and DATA
        assert mailbox.grouped == [f"RCPT TO:<{name}@example.org>\r\nDATA\r\n".encode()
                                   for name in sent]
    else:  # each command waited for the reply to the one before
        assert mailbox.grouped == [b""] * 3
    assert [(r.mail_from, r.rcpt_tos, r.data) for r in mailbox.accepted] == [
        (SENDER, (f"{name}@example.org",), data) for name, data in sent.items()]
    assert mailbox.connections == 1
    assert outcomes(store.db) == {name: ("sent", 1, None) for name in sent}


@pytest.mark.parametrize(("reply", "outcome"), [
    ("451 4.3.0 Temporary local problem, try again", ("sent", 2, None)),
    ("421 4.3.2 Service shutting down, closing channel", ("sent", 2, None)),
    ("550 5.7.1 Sender rejected",
     ("failed", 1, "The mail server refused it: 550 5.7.1 Sender rejected")),
])
def test_a_refused_mail_from_settles_the_message_as_without_pipelining(
        settings: Settings, store: Store, mailbox: Mailbox, reply: str,
        outcome: tuple[str, int, str | None]) -> None:
    queue(store.db, "ana", "ben")
    mailbox.fail(MAIL, reply, times=1)  # the first MAIL FROM: ana's
    backoff = Sleeps()

    result = drain(store.db, SmtpTransport(smtp_settings(settings, mailbox.port)), sleep=backoff)

    assert outcomes(store.db) == {"ana": outcome, "ben": ("sent", 1, None)}
    assert (result.sent, result.failed) == ((2, 0) if outcome[0] == "sent" else (1, 1))
    assert len(backoff) == (1 if reply.startswith("4") else 0)  # a 4xx is retried, a 5xx not
    assert Counter(received(mailbox)) == Counter(
        ["ana", "ben"] if outcome[0] == "sent" else ["ben"])  # each at most once
    assert mailbox.connections == (2 if reply.startswith("421") else 1)


def test_refusals_at_every_stage_of_a_batch_settle_each_message_once(
        settings: Settings, store: Store, mailbox: Mailbox) -> None:
    queue(store.db, "ana", "ben", "cy", "dan", "eve", "fay", "gus")
    mailbox.fail(RCPT, "550 5.1.1 User unknown", times=None, recipient="ben@example.org")
    mailbox.fail(RCPT, "451 4.7.1 Greylisted", times=None, recipient="cy@example.org")
    mailbox.fail(DATA_COMMAND, "554 5.5.1 No valid recipients", recipient="dan@example.org")
    mailbox.fail(END_OF_DATA, "550 5.7.1 Rejected as spam", recipient="eve@example.org")
    mailbox.fail(RCPT, DROP, recipient="fay@example.org")  # lost before the message left
    backoff = Sleeps()

    result = drain(store.db, SmtpTransport(smtp_settings(settings, mailbox.port)), sleep=backoff)

    assert (result.sent, result.failed, result.unknown, result.left) == (3, 3, 0, 1)
    assert outcomes(store.db) == {
        "ana": ("sent", 1, None),
        "ben": ("failed", 1, "The mail server refused it: 550 5.1.1 User unknown"),
        "cy": ("queued", 4, "The mail server said 451 4.7.1 Greylisted"),
        "dan": ("failed", 1, "The mail server refused it: 554 5.5.1 No valid recipients"),
        "eve": ("failed", 1, "The mail server refused it: 550 5.7.1 Rejected as spam"),
        "fay": ("sent", 2, None),
        "gus": ("sent", 1, None),
    }
    assert received(mailbox) == ["ana", "eve", "fay", "gus"]  # dan's DATA was refused
    assert [r.rcpt_tos[0] for r in mailbox.accepted] == [
        "ana@example.org", "fay@example.org", "gus@example.org"]
    assert len(backoff) == 3 + 1  # cy three times, fay once
    assert mailbox.connections == 2  # a new one after fay's was lost


def test_data_accepted_after_a_refused_recipient_gets_an_empty_message_never_the_real_one(
        settings: Settings, store: Store) -> None:
    """RFC 2920 lets a server answer 354 to a pipelined DATA whose recipients it refused; the
    client then sends a lone dot, and the message is failed for the recipient's refusal."""
    box = Mailbox(pipelining=True, data_without_recipients=True)
    with smtp_server(mailbox=box) as mailbox:
        queue(store.db, "ana", "ben", "cy")
        mailbox.fail(RCPT, "550 5.1.1 User unknown", recipient="ben@example.org")

        result = drain(store.db, SmtpTransport(smtp_settings(settings, mailbox.port)),
                       sleep=Sleeps())

    assert (result.sent, result.failed) == (2, 1)
    assert mailbox.empty_data == [b""]
    assert received(mailbox) == ["ana", "cy"]
    assert outcomes(store.db)["ben"] == (
        "failed", 1, "The mail server refused it: 550 5.1.1 User unknown")
    assert mailbox.connections == 1  # in step after it: the batch went on
