"""Several connections, and several senders, draining one outbox.

Against a real SMTP server on loopback (tests/smtp.py): one sender spreads a batch over its
connections (TRACKER_SMTP_CONNECTIONS); on PostgreSQL two `tracker digest --send` processes
drain the same outbox side by side; and whatever runs, the server receives every message
exactly once, counted by Message-ID. A sender's claims are its own: another sender neither
takes them nor recovers them as a dead sender's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.smtp import Mailbox, smtp_server
from tracker import outbox
from tracker.config import Settings
from tracker.database import Database
from tracker.errors import ConfigError, LockBusy
from tracker.lock import sender
from tracker.mail import SmtpTransport, drain, transports_for
from tracker.models import MessageKind, MessageStatus
from tracker.store import Store

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
SECRET = "x" * 32


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def mailbox(request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    """A server that offers PIPELINING or not: connections and senders share out the work
    the same way."""
    with smtp_server(mailbox=Mailbox(pipelining=request.param)) as box:
        yield box


def draft(n: int) -> outbox.Draft:
    message_id = f"<digest-{n}@example.org>"
    recipient = f"reader{n}@example.org"
    message = (f"From: tracker@localhost\r\nTo: {recipient}\r\nMessage-ID: {message_id}\r\n"
               f"Subject: Myositis trials: {n}\r\n\r\nDigest {n}\r\n").encode()
    return outbox.Draft(kind=MessageKind.DIGEST, key=f"digest.{n}", recipient=recipient,
                        subject=f"Myositis trials: {n}", message_id=message_id,
                        message=message)


def queue(db: Database, count: int) -> set[str]:
    for n in range(count):
        assert outbox.queue(db, draft(n), now=NOW) is not None
    return {draft(n).message_id for n in range(count)}


def smtp(settings: Settings, port: int, connections: int = 4) -> Settings:
    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=port,
                               smtp_security="none", secret_key=SECRET, smtp_timeout=10,
                               smtp_connections=connections)


def sessions_used(mailbox: Mailbox) -> Counter[int]:
    return Counter(r.session for r in mailbox.accepted)


def test_one_sender_spreads_a_batch_over_its_connections_and_sends_each_message_once(
        settings: Settings, store: Store, mailbox: Mailbox) -> None:
    every = queue(store.db, 200)

    result = drain(store.db, transports_for(smtp(settings, mailbox.port, connections=4)))

    assert (result.sent, result.failed, result.unknown, result.left) == (200, 0, 0, 0)
    assert Counter(mailbox.handed_over_ids()) == Counter(every)  # each exactly once
    assert mailbox.connections == 4
    assert len(sessions_used(mailbox)) == 4 and min(sessions_used(mailbox).values()) > 0
    assert outbox.counts(store.db)[MessageStatus.SENT] == 200
    assert all(m.claimant is None and m.attempts == 1 for m in outbox.messages(store.db))


def test_a_small_batch_opens_no_more_connections_than_it_needs(
        settings: Settings, store: Store, mailbox: Mailbox) -> None:
    queue(store.db, 3)

    result = drain(store.db, transports_for(smtp(settings, mailbox.port, connections=8)))

    assert result.sent == 3 and mailbox.connections == 1


def test_a_claim_takes_only_unclaimed_messages_and_skips_rows_being_claimed(
        store: Store) -> None:
    db = store.db
    queue(db, 6)
    scope = outbox.Scope()

    first = outbox.claim(db, 11, scope, 2)

    assert [m.recipient for m in first] == ["reader0@example.org", "reader1@example.org"]
    if db.is_sqlite:  # one sender at a time: nothing else can hold rows
        second = outbox.claim(db, 12, scope, 2)
    else:  # another sender's claim in progress holds the next rows: skipped, not waited for
        with db.engine.begin() as conn:
            conn.execute(select(outbox.OUTBOX.c.id).where(outbox.OUTBOX.c.claimant.is_(None))
                         .order_by(outbox.OUTBOX.c.id).limit(2).with_for_update())
            second = outbox.claim(db, 12, scope, 2)
    taken = {m.id for m in first} | {m.id for m in second}
    assert len(taken) == 4 and len(second) == 2
    assert {m.claimant for m in outbox.messages(db) if m.id in taken} == {11, 12}
    assert outbox.unclaimed(db, scope) == 2
    assert outbox.give_back(db, 11) == 2 and outbox.unclaimed(db, scope) == 4


def test_one_commit_marks_the_next_message_sending_and_the_last_one_sent(
        store: Store) -> None:
    db = store.db
    queue(db, 3)
    first, second, third = outbox.claim(db, 31, outbox.Scope(), 3)
    assert first.id is not None and second.id is not None
    outbox.begin_sending(db, first.id)

    outbox.begin_sending(db, second.id, sent=[first.id], now=NOW)

    found = {m.id: (m.status, m.attempts, m.sent_at, m.claimant, m.error)
             for m in outbox.messages(db)}
    assert found == {first.id: (MessageStatus.SENT, 1, NOW, None, None),
                     second.id: (MessageStatus.SENDING, 1, None, 31, None),
                     third.id: (MessageStatus.QUEUED, 0, None, 31, None)}


def test_recovery_touches_only_the_messages_of_a_sender_that_is_gone(store: Store) -> None:
    db = store.db
    queue(db, 4)
    live = outbox.claim(db, 21, outbox.Scope(), 2)
    dead = outbox.claim(db, 22, outbox.Scope(), 2)
    for claimed in (live, dead):
        assert claimed[0].id is not None
        outbox.begin_sending(db, claimed[0].id)

    assert outbox.recover_interrupted(db, alive=lambda n: n in (21, 22)) == 0
    assert outbox.recover_interrupted(db, alive=lambda n: n == 21) == 1

    found = {m.id: (m.status, m.claimant) for m in outbox.messages(db)}
    assert found[live[0].id] == (MessageStatus.SENDING, 21)  # a live sender's: untouched
    assert found[live[1].id] == (MessageStatus.QUEUED, 21)
    assert found[dead[0].id] == (MessageStatus.UNKNOWN, None)  # maybe handed over: unknown
    assert found[dead[1].id] == (MessageStatus.QUEUED, None)  # never begun: free again


def test_a_sender_is_alive_while_registered_and_sqlite_allows_only_one(store: Store) -> None:
    db = store.db
    with sender(db, lambda _: False) as first:
        assert first.alive(first.number)
        if db.is_sqlite:
            with pytest.raises(LockBusy), sender(db, lambda _: False):
                pass
            return
        with sender(db, lambda _: False) as second:
            assert second.number != first.number
            assert first.alive(second.number) and second.alive(first.number)
        assert not first.alive(second.number)  # it has stopped: its leftovers may be recovered


@pytest.mark.slow
def test_two_senders_on_postgres_drain_one_outbox_and_deliver_every_message_exactly_once(
        settings: Settings, store: Store, mailbox: Mailbox, tmp_path: Path) -> None:
    if store.db.is_sqlite:
        pytest.skip("several senders share an outbox on PostgreSQL only")
    every = queue(store.db, 400)
    mailbox.slow = 0.002  # each message takes a moment, so the two senders overlap
    env = tracker_env(smtp(settings, mailbox.port), tmp_path)
    command = [sys.executable, "-m", "tracker", "digest", "--send"]
    senders = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in senders]

    for process, (stdout, stderr) in zip(senders, outputs, strict=True):
        assert process.returncode == 0, stderr
    sent = [int(re.search(r"(\d+) sent", stdout).group(1))  # type: ignore[union-attr]
            for stdout, _ in outputs]
    assert sum(sent) == 400 and min(sent) > 0, sent  # both senders took part
    assert Counter(mailbox.handed_over_ids()) == Counter(every)  # none twice, none lost
    assert Counter(mailbox.accepted_ids()) == Counter(every)
    assert mailbox.connections == 8 and len(sessions_used(mailbox)) == 8
    assert outbox.counts(store.db)[MessageStatus.SENT] == 400
    assert all(m.claimant is None and m.attempts == 1 for m in outbox.messages(store.db))


def tracker_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CTGOV_"))}
    return {**clean, "TRACKER_DATABASE_URL": settings.database_url,
            "CTGOV_BASE_URL": settings.base_url, "TRACKER_SMTP_HOST": "127.0.0.1",
            "TRACKER_SMTP_PORT": str(settings.smtp_port), "TRACKER_SMTP_SECURITY": "none",
            "TRACKER_SMTP_TIMEOUT": "10", "TRACKER_SMTP_CONNECTIONS": "4",
            "TRACKER_SECRET_KEY": SECRET, "TRACKER_DIGEST_DIR": str(tmp_path / "digests")}


def test_the_connections_setting_is_bounded(settings: Settings) -> None:
    assert len(transports_for(smtp(settings, 25, connections=3))) == 3
    assert all(isinstance(t, SmtpTransport) for t in transports_for(smtp(settings, 25)))
    assert Settings.from_env({}).smtp_connections == 4
    for wrong in ("0", "33", "many"):
        with pytest.raises(ConfigError, match="TRACKER_SMTP_CONNECTIONS"):
            Settings.from_env({"TRACKER_SMTP_CONNECTIONS": wrong})
