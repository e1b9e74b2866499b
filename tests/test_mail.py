"""Delivery, specified against a real SMTP server on loopback (aiosmtpd, see tests/smtp.py).

Every test queues real messages in a real database (SQLite, and PostgreSQL when configured),
drains the outbox through `tracker.mail` or the `tracker` command, and checks both what the
server received and what the outbox recorded. Backoff sleeps are recorded, never waited.
The `mailbox` server runs each test twice: offering PIPELINING and not, since every outcome
must be the same either way (tests/test_mail_pipelining.py shows the commands grouped).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import event, update

from tests.conftest import Sleeps, free_port, updated
from tests.fakeapi import Registry
from tests.smtp import DATA_COMMAND, DROP, END_OF_DATA, RCPT, Mailbox, smtp_server, wait_for
from tracker import notify, outbox, subscribers
from tracker.cli import cli
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.database import Database
from tracker.digest import POLICY
from tracker.errors import LockBusy, TrackerError
from tracker.mail import CLAIM, FileTransport, SmtpTransport, drain
from tracker.mime import bodies
from tracker.models import MessageKind, OutboxMessage
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.sync import sync
from tracker.times import utcnow
from tracker.tokens import UNSUBSCRIBE_MAX_AGE, read

SECRET = "x" * 32
SENDER = "tracker@localhost"
NEXT_DAY = "2026-11-21T09:00:05"
CHANGED = {"NCT07725679": "RECRUITING", "NCT04078230": "ACTIVE_NOT_RECRUITING"}
# A Message-ID is random, at the sender's domain: nothing in it comes from row numbers.
MESSAGE_ID = re.compile(r"<[0-9a-f]{32}@localhost>")
# The backoff before the 1st, 2nd and 3rd retry: half to all of 2, 4 and 8 seconds.
BACKOFF = [(1.0, 2.0), (2.0, 4.0), (4.0, 8.0)]


# --- fixtures and helpers -------------------------------------------------------------------

@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def mailbox(request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    with smtp_server(mailbox=Mailbox(pipelining=request.param)) as box:
        yield box


def smtp_settings(settings: Settings, port: int) -> Settings:
    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=port,
                               smtp_security="none", secret_key=SECRET, smtp_timeout=5)


@pytest.fixture
def mail_settings(settings: Settings, mailbox: Mailbox) -> Settings:
    return smtp_settings(settings, mailbox.port)


@pytest.fixture
def backoff() -> Sleeps:
    return Sleeps()


def queue_confirmations(settings: Settings, store: Store, *addresses: str) -> list[int]:
    """One real confirmation e-mail queued per address, in order."""
    ids = []
    for address in addresses:
        subscriber, _ = subscribers.subscribe(store.db, address, Preferences(),
                                              confirmed=False, now=utcnow())
        message_id = notify.queue_confirmation(settings, store, subscriber, utcnow())
        assert message_id is not None
        ids.append(message_id)
    return ids


def make_digests_due(settings: Settings, store: Store, client: CtGovClient, registry: Registry,
                     people: dict[str, Preferences]) -> None:
    """Baseline sync, confirmed subscribers, then a sync that records changes to two trials."""
    sync(settings, store, client)
    for address, preferences in people.items():
        subscribers.subscribe(store.db, address, preferences, confirmed=True, now=utcnow())
    for nct_id, status in CHANGED.items():
        study = updated(registry.studies[nct_id])
        study["protocolSection"]["statusModule"]["overallStatus"] = status
        registry.put(study)
    registry.data_timestamp = NEXT_DAY
    result = sync(settings, store, client)
    assert result.changed == len(CHANGED) and result.events >= len(CHANGED)


def everyone(*addresses: str) -> dict[str, Preferences]:
    return {a: Preferences(changes="all", cadence="daily") for a in addresses}


def message(store: Store, outbox_id: int) -> OutboxMessage:
    [found] = [m for m in outbox.messages(store.db) if m.id == outbox_id]
    return found


def status_by_recipient(store: Store) -> dict[str, str]:
    return {m.recipient: m.status for m in outbox.messages(store.db)}


def assert_backoff(sleeps: list[float], retries: int) -> None:
    assert len(sleeps) == retries
    for slept, (low, high) in zip(sleeps, BACKOFF, strict=False):
        assert low <= slept <= high, sleeps


def tracker_env(settings: Settings, port: int, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CTGOV_"))}
    return {**clean,
            "TRACKER_DATABASE_URL": settings.database_url, "CTGOV_BASE_URL": settings.base_url,
            "TRACKER_SMTP_HOST": "127.0.0.1", "TRACKER_SMTP_PORT": str(port),
            "TRACKER_SMTP_SECURITY": "none", "TRACKER_SMTP_TIMEOUT": "10",
            "TRACKER_SECRET_KEY": SECRET, "TRACKER_DIGEST_DIR": str(tmp_path / "digests")}


def run_tracker(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=90)


def start_tracker(env: dict[str, str], *args: str, cwd: Path) -> subprocess.Popen[bytes]:
    log = (cwd / "killed.log").open("wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "tracker", *args], env=env, cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=15)


def still_running(process: subprocess.Popen[bytes], cwd: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError("tracker exited before it could be killed:\n"
                             + (cwd / "killed.log").read_text())
    return True


# --- a message delivered ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_queued_digest_is_delivered_once_as_a_real_multipart_email_and_marked_sent(
        mail_settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        mailbox: Mailbox, backoff: Sleeps) -> None:
    make_digests_due(mail_settings, store, client, registry, everyone("ana@example.org"))
    prepared = notify.prepare_digests(mail_settings, store, utcnow(), operator=None)
    [planned] = prepared.planned
    assert planned.outbox_id is not None

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (result.sent, result.failed, result.unknown, result.left) == (1, 0, 0, 0)
    [got] = mailbox.accepted
    assert mailbox.handed_over == [got] and backoff == []
    assert got.mail_from == SENDER and got.rcpt_tos == ("ana@example.org",)
    queued = message(store, planned.outbox_id)
    assert (queued.status, queued.attempts, queued.error) == ("sent", 1, None)
    assert queued.sent_at is not None

    mail = got.message
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    text, html = (p.get_content() for p in mail.iter_parts())
    assert all(nct in text and nct in html for nct in CHANGED)
    assert "<a " in html and "<a " not in text
    assert mail["From"].addresses[0].addr_spec == SENDER
    assert mail["From"].addresses[0].display_name == "Myositis trials tracker"
    assert [a.addr_spec for a in mail["To"].addresses] == ["ana@example.org"]
    assert mail["Subject"] == queued.subject
    assert mail["Subject"].startswith("Myositis trials: 2 updates on 2 trials: ")
    assert mail["Message-ID"] == queued.message_id
    assert MESSAGE_ID.fullmatch(mail["Message-ID"])
    assert mail["Date"] is not None
    unsubscribe = re.fullmatch(r"<(https?://[^>\s]+)>, <mailto:([^>\s]+)>",
                               str(mail["List-Unsubscribe"]))
    assert unsubscribe, mail["List-Unsubscribe"]
    url, mailto = unsubscribe.groups()
    assert url.startswith("http://localhost:8000/unsubscribe?token=")
    assert mailto == f"{SENDER}?subject=unsubscribe"
    token = read(SECRET, "unsubscribe", url.split("token=", 1)[1], UNSUBSCRIBE_MAX_AGE)
    assert token.email == "ana@example.org"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.slow
def test_one_connection_carries_a_whole_batch(mail_settings: Settings, store: Store,
                                              mailbox: Mailbox, backoff: Sleeps) -> None:
    addresses = [f"reader{n}@example.org" for n in range(4)]
    queue_confirmations(mail_settings, store, *addresses)

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert result.sent == 4
    assert [r.rcpt_tos for r in mailbox.accepted] == [(a,) for a in addresses]
    assert mailbox.connections == 1
    assert {r.session for r in mailbox.accepted} == {1}
    received = mailbox.accepted_ids()
    assert received == [m.message_id for m in outbox.messages(store.db)]
    assert len(set(received)) == 4 and all(MESSAGE_ID.fullmatch(i) for i in received)


def digest_with(text: str, recipient: str) -> bytes:
    """An e-mail built as digests are (tracker.digest.POLICY): a body outside ASCII is 8bit."""
    mail = EmailMessage(policy=POLICY)
    mail["From"], mail["To"], mail["Subject"] = SENDER, recipient, "Myositis trials: 1 update"
    mail["Message-ID"] = f"<{recipient.split('@')[0]}@localhost>"
    mail.set_content(text)
    mail.add_alternative(f"<p>{text}</p>\n", subtype="html")
    return mail.as_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("eight_bit", [True, False], ids=["8bitmime", "7bit-only"])
def test_registry_text_outside_ascii_reaches_servers_with_and_without_8bitmime(
        mail_settings: Settings, store: Store, mailbox: Mailbox, backoff: Sleeps,
        eight_bit: bool) -> None:
    """RFC 6152: 8-bit data goes only to a server that announces 8BITMIME, declared with
    BODY=8BITMIME; a server that does not gets the same e-mail in 7 bits (this one refuses
    8-bit data outright, as some do)."""
    mailbox.eight_bit = eight_bit
    text = "A new site in Zürich; São Paulo's site recruits (Sjögren's excluded).\n"
    messages = {"ana@example.org": digest_with(text, "ana@example.org"),
                "ben@example.org": digest_with("A new site in Lyon.\n", "ben@example.org")}
    assert b"Content-Transfer-Encoding: 8bit" in messages["ana@example.org"]
    for recipient, message in messages.items():
        outbox.queue(store.db, outbox.Draft(
            kind=MessageKind.DIGEST, key=f"digest.{recipient}", recipient=recipient,
            subject="Myositis trials: 1 update", message_id=f"<{recipient}>", message=message),
            now=utcnow())

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (result.sent, result.failed) == (2, 0)
    got = {r.rcpt_tos[0]: r for r in mailbox.accepted}
    ana, ben = got["ana@example.org"], got["ben@example.org"]
    assert bodies(ana.data) == (text, f"<p>{text}</p>\n")  # what the reader sees
    assert ben.mail_options == () and ben.data == messages["ben@example.org"]
    if eight_bit:
        assert ana.mail_options == ("BODY=8BITMIME",)
        assert ana.data == messages["ana@example.org"]
    else:
        assert ana.mail_options == () and ana.data.isascii()
        assert ana.message["Subject"] == "Myositis trials: 1 update"
    assert len(mailbox.handed_over) == 2  # nothing refused, nothing sent twice


# --- temporary refusals and dropped connections ----------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("stage", [RCPT, DATA_COMMAND, END_OF_DATA])
@pytest.mark.parametrize("reply", ["421 4.3.2 Service shutting down, closing channel",
                                   "451 4.3.0 Temporary local problem, try again"])
def test_a_temporary_refusal_is_retried_with_backoff_and_then_delivered(
        mail_settings: Settings, store: Store, mailbox: Mailbox, backoff: Sleeps, stage: str,
        reply: str) -> None:
    first, second = queue_confirmations(mail_settings, store, "ana@example.org",
                                        "ben@example.org")
    mailbox.fail(stage, reply, times=1)

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (result.sent, result.failed, result.unknown, result.left) == (2, 0, 0, 0)
    assert_backoff(backoff, retries=1)
    assert [r.rcpt_tos for r in mailbox.accepted] == [("ana@example.org",),
                                                      ("ben@example.org",)]
    assert (message(store, first).status, message(store, first).attempts) == ("sent", 2)
    assert message(store, first).error is None
    assert (message(store, second).status, message(store, second).attempts) == ("sent", 1)
    # 421 closes the channel, so the retry needs a new connection; after 451 the same one
    # goes on after RSET.
    assert mailbox.connections == (2 if reply.startswith("421") else 1)


@pytest.mark.slow
def test_a_recipient_refused_for_now_stays_queued_without_holding_up_the_others(
        mail_settings: Settings, store: Store, mailbox: Mailbox, backoff: Sleeps) -> None:
    ids = queue_confirmations(mail_settings, store, "ana@example.org", "ben@example.org",
                              "cy@example.org")
    mailbox.fail(RCPT, "451 4.7.1 Greylisted, please try again later", times=None,
                 recipient="ben@example.org")

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (result.sent, result.failed, result.unknown, result.left) == (2, 0, 0, 1)
    assert "451 4.7.1 Greylisted" in result.errors[-1]
    assert_backoff(backoff, retries=3)
    assert [r.rcpt_tos for r in mailbox.accepted] == [("ana@example.org",),
                                                      ("cy@example.org",)]
    assert status_by_recipient(store) == {"ana@example.org": "sent",
                                          "ben@example.org": "queued",
                                          "cy@example.org": "sent"}
    refused = message(store, ids[1])
    assert refused.attempts == 4
    assert refused.error == "The mail server said 451 4.7.1 Greylisted, please try again later"

    mailbox.faults.clear()
    again = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (again.sent, again.left) == (1, 0)
    assert Counter(mailbox.accepted_ids()) == Counter(
        m.message_id for m in outbox.messages(store.db))  # each exactly once


@pytest.mark.slow
@pytest.mark.parametrize("stage", [RCPT, DATA_COMMAND])
def test_a_connection_dropped_before_the_message_was_handed_over_is_retried(
        mail_settings: Settings, store: Store, mailbox: Mailbox, backoff: Sleeps,
        stage: str) -> None:
    [only] = queue_confirmations(mail_settings, store, "ana@example.org")
    mailbox.fail(stage, DROP, times=1)

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (result.sent, result.unknown, result.left) == (1, 0, 0)
    assert_backoff(backoff, retries=1)
    assert len(mailbox.handed_over) == 1 and len(mailbox.accepted) == 1
    assert mailbox.connections == 2
    assert (message(store, only).status, message(store, only).attempts) == ("sent", 2)


# --- permanent refusals -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("stage", "reply"), [
    (RCPT, "550 5.1.1 <ben@example.org>: Recipient address rejected: User unknown"),
    (DATA_COMMAND, "554 5.5.1 Error: no valid recipients"),
    (END_OF_DATA, "550 5.7.1 Message rejected as spam"),
])
def test_a_permanent_refusal_fails_that_message_with_the_servers_text_and_the_batch_goes_on(
        mail_settings: Settings, store: Store, mailbox: Mailbox, backoff: Sleeps, stage: str,
        reply: str) -> None:
    ids = queue_confirmations(mail_settings, store, "ana@example.org", "ben@example.org",
                              "cy@example.org")
    mailbox.fail(stage, reply, times=None, recipient="ben@example.org")

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (result.sent, result.failed, result.unknown, result.left) == (2, 1, 0, 0)
    assert backoff == []  # a permanent refusal is not retried
    assert [r.rcpt_tos for r in mailbox.accepted] == [("ana@example.org",), ("cy@example.org",)]
    refused = message(store, ids[1])
    assert (refused.status, refused.attempts) == ("failed", 1)
    assert refused.error == f"The mail server refused it: {reply}"
    assert mailbox.connections == 1  # RSET, and the same connection carries on

    again = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (again.sent, again.failed) == (0, 0)  # a failed message is not retried unasked
    assert len(mailbox.handed_over) == (3 if stage == END_OF_DATA else 2)


# --- unknown outcome ----------------------------------------------------------------------

@pytest.mark.slow
def test_a_connection_dropped_after_the_whole_message_was_sent_leaves_it_unknown_not_resent(
        mail_settings: Settings, store: Store, mailbox: Mailbox, backoff: Sleeps) -> None:
    ids = queue_confirmations(mail_settings, store, "ana@example.org", "ben@example.org")
    mailbox.fail(END_OF_DATA, DROP, times=1, recipient="ana@example.org")

    result = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (result.sent, result.failed, result.unknown, result.left) == (1, 0, 1, 0)
    assert backoff == []
    assert [r.rcpt_tos for r in mailbox.handed_over] == [("ana@example.org",),
                                                         ("ben@example.org",)]
    doubtful = message(store, ids[0])
    assert doubtful.status == "unknown"
    assert (doubtful.error or "").startswith("The connection dropped after the message was "
                                             "handed over")
    assert message(store, ids[1]).status == "sent"
    assert mailbox.connections == 2  # the batch went on over a new connection

    again = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert (again.sent, again.unknown) == (0, 0)
    assert len(mailbox.handed_over) == 2  # not sent a second time on its own

    retried = outbox.retry(store.db, ids[0])
    assert (retried.status, retried.error) == ("queued", None)
    after_retry = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    assert after_retry.sent == 1
    assert message(store, ids[0]).status == "sent"
    assert mailbox.handed_over_ids().count(doubtful.message_id) == 2  # resent when asked


@pytest.mark.slow
def test_only_failed_or_unknown_messages_can_be_retried(mail_settings: Settings, store: Store,
                                                       mailbox: Mailbox,
                                                       backoff: Sleeps) -> None:
    [sent] = queue_confirmations(mail_settings, store, "ana@example.org")
    drain(store.db, SmtpTransport(mail_settings), sleep=backoff)

    with pytest.raises(TrackerError, match=f"Outbox message {sent} is sent; only failed"):
        outbox.retry(store.db, sent)
    assert len(mailbox.accepted) == 1


# --- the mail server is down -------------------------------------------------------------------

@pytest.mark.slow
def test_with_no_server_listening_every_message_stays_queued_with_the_attempt_and_the_error(
        settings: Settings, store: Store, backoff: Sleeps, tmp_path: Path) -> None:
    port = free_port()
    down = smtp_settings(settings, port)
    ids = queue_confirmations(down, store, "ana@example.org", "ben@example.org")

    result = drain(store.db, SmtpTransport(down), sleep=backoff)

    assert (result.sent, result.failed, result.unknown, result.left) == (0, 0, 0, 2)
    [error] = result.errors
    assert error.startswith(f"Cannot reach the mail server 127.0.0.1:{port}: ")
    assert "refused" in error.lower()
    assert backoff == []  # no server at all: nothing to retry message by message
    assert [(m.status, m.attempts, m.error) for m in outbox.messages(store.db)] == [
        ("queued", 1, error)] * 2
    env = {k: v for k, v in tracker_env(settings, port, tmp_path).items()
           if k.startswith(("TRACKER_", "CTGOV_"))}
    command = CliRunner().invoke(cli, ["digest", "--send"], env=env)
    assert command.exit_code == 1
    [line] = command.stderr.splitlines()
    assert line.startswith("tracker: error: ")
    assert error in line and "2 message(s) stay queued for the next run." in line
    assert [(m.status, m.attempts, m.error) for m in outbox.messages(store.db)] == [
        ("queued", 2, error)] * 2
    listed = CliRunner().invoke(cli, ["outbox", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [(m["status"], m["attempts"], m["error"]) for m in json.loads(listed.stdout)] == [
        ("queued", 2, error)] * 2

    with smtp_server(port) as mailbox:
        result = drain(store.db, SmtpTransport(down), sleep=backoff)

        assert (result.sent, result.left) == (2, 0)
        assert sorted(mailbox.accepted_ids()) == sorted(message(store, i).message_id
                                                        for i in ids)
        assert [(m.status, m.attempts, m.error) for m in outbox.messages(store.db)] == [
            ("sent", 3, None)] * 2
        again = drain(store.db, SmtpTransport(down), sleep=backoff)
        assert again.sent == 0 and len(mailbox.handed_over) == 2


# --- crash safety ------------------------------------------------------------------------------

@pytest.mark.slow
def test_killing_digest_send_mid_batch_loses_and_duplicates_nothing(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        tmp_path: Path) -> None:
    addresses = [f"reader{n}@example.org" for n in range(5)]
    make_digests_due(settings, store, client, registry, everyone(*addresses))
    with smtp_server() as mailbox:
        env = tracker_env(settings, mailbox.port, tmp_path)
        mailbox.slow, mailbox.slow_from = 60.0, 2  # holds the third digest after receiving it
        victim = start_tracker(env, "digest", "--send", cwd=tmp_path)
        try:
            wait_for(lambda: still_running(victim, tmp_path) and len(mailbox.handed_over) == 3,
                     timeout=60, what="the third digest to reach the server")
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=15)
        finally:
            kill(victim)
        assert [m.status for m in outbox.messages(store.db)] == ["sent", "sent", "sending",
                                                              "queued", "queued"]
        mailbox.slow = 0.0

        rerun = run_tracker(env, "digest", "--send", cwd=tmp_path)

        assert rerun.returncode == 0, rerun.stderr
        assert "0 digest(s) queued" in rerun.stdout
        assert "2 sent, 0 failed, 0 unknown, 0 still queued" in rerun.stdout
        assert "1 message(s) were interrupted mid-send" in rerun.stderr
        listed = run_tracker(env, "outbox", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr

        # A subscriber's window moves on only with its digest, so the next week's run, with
        # every subscriber due again, finds nothing new for anyone and queues nothing.
        week_ago = utcnow() - timedelta(days=8)
        with store.engine.begin() as conn:
            conn.execute(update(subscribers.SUBSCRIBER).values(last_digest_at=week_ago,
                                                          served_at=week_ago))
        next_day = run_tracker(env, "digest", "--send", cwd=tmp_path)

        assert next_day.returncode == 0, next_day.stderr
        assert "0 digest(s) queued; 5 subscriber(s) had nothing new" in next_day.stdout
        assert "0 sent" in next_day.stdout

    queued = outbox.messages(store.db)
    assert len(queued) == 5 and all(m.kind == "digest" for m in queued)
    assert sorted(m.recipient for m in queued) == addresses
    every_digest = {m.message_id for m in queued}
    received = mailbox.handed_over_ids()
    assert Counter(received) == Counter(every_digest)  # each reached the server exactly once
    unknown = {m.message_id for m in queued if m.status == "unknown"}
    [doubtful] = [m for m in queued if m.status == "unknown"]
    assert unknown == {received[2]}
    assert set(mailbox.accepted_ids()) | unknown == every_digest  # none lost
    assert [(m["id"], m["status"]) for m in json.loads(listed.stdout)] == [
        (doubtful.id, "unknown")]
    assert "may or may not have been delivered" in json.loads(listed.stdout)[0]["error"]


@pytest.mark.slow
def test_a_digest_queued_before_a_kill_is_sent_by_the_next_run_and_its_window_moves_once(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        tmp_path: Path) -> None:
    addresses = ["ana@example.org", "ben@example.org", "cy@example.org"]
    make_digests_due(settings, store, client, registry, everyone(*addresses))
    # A server that accepts the connection and never says a word: the sender is stuck after
    # queueing every digest and before handing any over.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.settimeout(60)
        env = tracker_env(settings, silent.getsockname()[1], tmp_path)
        victim = start_tracker(env, "digest", "--send", cwd=tmp_path)
        stuck: socket.socket | None = None
        try:
            stuck, _ = silent.accept()
            assert still_running(victim, tmp_path)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=15)
        finally:
            kill(victim)
            if stuck is not None:
                stuck.close()
    queued = outbox.messages(store.db)
    assert [(m.recipient, m.status, m.attempts) for m in queued] == [
        (a, "queued", 0) for a in addresses]
    windows = {s.email: (s.last_event_id, s.last_digest_at)
               for s in subscribers.listing(store.db)}
    for m in queued:
        assert windows[m.recipient][0] == m.window_end > 0
        assert windows[m.recipient][1] is not None

    with smtp_server() as mailbox:
        rerun = run_tracker({**env, "TRACKER_SMTP_PORT": str(mailbox.port)}, "digest", "--send",
                            cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert "0 digest(s) queued" in rerun.stdout
    assert "3 sent, 0 failed, 0 unknown, 0 still queued" in rerun.stdout
    assert "interrupted" not in rerun.stderr  # nothing was mid-send when it died
    assert Counter(mailbox.accepted_ids()) == Counter(m.message_id for m in queued)
    assert [m.status for m in outbox.messages(store.db)] == ["sent"] * 3
    assert {s.email: (s.last_event_id, s.last_digest_at)
            for s in subscribers.listing(store.db)} == windows


# --- file mode ---------------------------------------------------------------------------------

def test_file_transport_writes_an_eml_a_txt_and_an_html_file_per_message(
        settings: Settings, store: Store, tmp_path: Path, backoff: Sleeps) -> None:
    keyed = dataclasses.replace(settings, secret_key=SECRET)  # no mail server needed
    ids = queue_confirmations(keyed, store, "ana@example.org", "o'brien+x@example.org")
    folder = tmp_path / "out" / "mail"

    result = drain(store.db, FileTransport(folder), sleep=backoff)

    assert (result.sent, result.failed) == (2, 0)
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 6 and not any(name.endswith(".part") for name in files)
    for outbox_id in ids:
        sent = message(store, outbox_id)
        assert sent.status == "sent"
        stem = f"{sent.created_at:%Y-%m-%d}-confirm-{outbox_id:06d}-"
        mine = sorted(p for p in folder.iterdir() if p.name.startswith(stem))
        assert [p.suffix for p in mine] == [".eml", ".html", ".txt"]
        assert all(re.fullmatch(r"[A-Za-z0-9@._-]+", p.name) for p in mine)
        eml = email.message_from_bytes(mine[0].read_bytes(), policy=email.policy.default)
        assert eml["Message-ID"] == sent.message_id
        assert [a.addr_spec for a in eml["To"].addresses] == [sent.recipient]
        assert [p.get_content_type() for p in eml.iter_parts()] == ["text/plain", "text/html"]
        assert mine[0].read_bytes() == sent.message
        assert mine[1].read_text() == sent.html_body
        assert mine[2].read_text() == sent.text_body
        for subtype, written in (("html", mine[1]), ("plain", mine[2])):  # as `email` reads it
            body = eml.get_body((subtype,))
            assert body is not None
            assert written.read_text() == body.get_content().replace("\r\n", "\n")


def test_digest_write_also_writes_one_operator_digest_of_every_change(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        tmp_path: Path) -> None:
    make_digests_due(settings, store, client, registry, {
        "all@example.org": Preferences(changes="all"),
        "imnm@example.org": Preferences(subtypes=("imnm",), changes="all")})
    folder = tmp_path / "written"
    env = {"TRACKER_DATABASE_URL": settings.database_url, "TRACKER_SECRET_KEY": SECRET,
           "TRACKER_SMTP_HOST": None, "TRACKER_DIGEST_DIR": str(tmp_path / "unused")}

    result = CliRunner().invoke(cli, ["digest", "--write", str(folder)], env=env,
                                catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "Operator digest queued for operator: 2 change(s) on 2 trial(s)" in result.output
    assert "3 digest(s) queued" in result.output and "3 written" in result.output
    emls = sorted(folder.glob("*.eml"))
    assert len(emls) == 3 and len(list(folder.iterdir())) == 9
    by_kind: dict[str, list[Path]] = {}
    for path in emls:
        kind = path.name.split("-")[3]
        by_kind.setdefault(kind, []).append(path)
    assert {k: len(v) for k, v in by_kind.items()} == {"digest": 2, "operator": 1}
    operator = email.message_from_bytes(by_kind["operator"][0].read_bytes(),
                                        policy=email.policy.default)
    assert [a.addr_spec for a in operator["To"].addresses] == [SENDER]
    assert operator["List-Unsubscribe"] is None
    operator_text = by_kind["operator"][0].with_suffix(".txt").read_text()
    assert all(nct in operator_text for nct in CHANGED)
    imnm_text = next(p for p in folder.glob("*imnm@example.org.txt")).read_text()
    assert "NCT07725679" in imnm_text and "NCT04078230" not in imnm_text
    assert not (tmp_path / "unused").exists()

    again = CliRunner().invoke(cli, ["digest", "--write", str(folder)], env=env,
                               catch_exceptions=False)

    assert "0 digest(s) queued" in again.output and "0 written" in again.output
    assert len(list(folder.iterdir())) == 9


def queue_plain(db: Database, count: int) -> list[OutboxMessage]:
    """`count` small digests queued straight into the outbox, oldest first."""
    for n in range(count):
        message = (f"From: {SENDER}\r\nTo: reader{n}@example.org\r\n"
                   f"Message-ID: <plain-{n}@localhost>\r\nSubject: Digest {n}\r\n\r\n"
                   f"Digest {n}\r\n").encode()
        assert outbox.queue(db, outbox.Draft(
            kind=MessageKind.DIGEST, key=f"digest.{n}", recipient=f"reader{n}@example.org",
            subject=f"Digest {n}", message_id=f"<plain-{n}@localhost>",
            message=message), now=utcnow()) is not None
    return outbox.messages(db)


def file_names(message: OutboxMessage) -> list[str]:
    stem = f"{message.created_at:%Y-%m-%d}-{message.kind}-{message.id:06d}-{message.recipient}"
    return [stem + suffix for suffix in (".txt", ".html", ".eml")]


def test_written_files_are_marked_sent_a_claimed_batch_at_a_time_not_one_commit_each(
        store: Store, tmp_path: Path, backoff: Sleeps) -> None:
    """A file written twice is the same file, so no `sending` mark precedes it: the cost in
    commits is per claimed batch (its claim and its sent mark), not per message."""
    queued = queue_plain(store.db, 2 * CLAIM + 5)
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(store.db.engine, "commit", count)
    try:
        result = drain(store.db, FileTransport(tmp_path / "out"), sleep=backoff)
    finally:
        event.remove(store.db.engine, "commit", count)

    assert (result.sent, result.failed, result.left) == (len(queued), 0, 0)
    batches = 3  # each costs a claim and a sent mark; the run itself adds a few (the last,
    # empty claim, recovery, giving back, the sender's registration): not one per message
    assert len(commits) <= 2 * batches + 6 < len(queued), len(commits)
    assert [(m.status, m.attempts, m.claimant, m.error) for m in outbox.messages(store.db)] == [
        ("sent", 1, None, None)] * len(queued)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        name for m in queued for name in file_names(m))


@pytest.mark.slow
def test_killing_digest_write_mid_batch_leaves_nothing_unknown_and_the_rerun_writes_it_all(
        settings: Settings, store: Store, tmp_path: Path) -> None:
    queued = queue_plain(store.db, 5)
    folder = tmp_path / "out"
    folder.mkdir()
    # The third message's first file is a named pipe: writing it waits for a reader that
    # never comes, so the writer is stuck there, two messages written, when it is killed.
    stuck = folder / (file_names(queued[2])[0] + ".part")
    os.mkfifo(stuck)
    env = {**tracker_env(settings, free_port(), tmp_path), "TRACKER_SMTP_HOST": ""}
    victim = start_tracker(env, "digest", "--write", str(folder), cwd=tmp_path)
    written = [folder / name for message in queued[:2] for name in file_names(message)]
    try:
        wait_for(lambda: still_running(victim, tmp_path) and all(p.exists() for p in written),
                 timeout=60, what="the first two messages' files")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=15)
    finally:
        kill(victim)
    first_bytes = {path.name: path.read_bytes() for path in written}
    first_files = {path.name: path.stat().st_ino for path in written}
    # Written, not yet marked: still queued, held by the dead writer; none 'sending'.
    assert [(m.status, m.attempts) for m in outbox.messages(store.db)] == [("queued", 0)] * 5
    stuck.unlink()

    rerun = run_tracker(env, "digest", "--write", str(folder), cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert "5 written, 0 failed, 0 unknown, 0 still queued" in rerun.stdout
    assert "interrupted" not in rerun.stderr
    assert [(m.status, m.attempts) for m in outbox.messages(store.db)] == [("sent", 1)] * 5
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        name for m in queued for name in file_names(m))  # no half-written file left
    assert {p.name: p.read_bytes() for p in written} == first_bytes  # the same bytes,
    assert all(p.stat().st_ino != first_files[p.name] for p in written)  # written again
    for message in queued:
        assert (folder / file_names(message)[2]).read_bytes() == message.message


# --- one sender at a time -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_sender_never_takes_a_live_senders_message(
        mail_settings: Settings, store: Store, mailbox: Mailbox, backoff: Sleeps) -> None:
    """On SQLite the send lock refuses a second sender; on PostgreSQL it runs beside the
    first and finds nothing to send, and the first's message is not taken for a dead one's."""
    [only] = queue_confirmations(mail_settings, store, "ana@example.org")
    mailbox.slow = 30.0
    outcome: list[object] = []

    def first_sender() -> None:
        try:
            outcome.append(drain(store.db, SmtpTransport(mail_settings), sleep=backoff))
        except Exception as error:  # reported below
            outcome.append(error)

    sender = threading.Thread(target=first_sender, daemon=True)
    sender.start()
    try:
        wait_for(lambda: mailbox.handed_over, timeout=15, what="the first sender's message")

        if store.db.is_sqlite:
            with pytest.raises(LockBusy, match="Another send is already running"):
                drain(store.db, SmtpTransport(mail_settings), sleep=backoff)
        else:
            second = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)
            assert (second.sent, second.left, second.recovered) == (0, 0, 0)

        assert message(store, only).status == "sending"  # not taken for a dead sender's
    finally:
        mailbox.release.set()
        sender.join(timeout=15)
    assert not sender.is_alive()
    [first] = outcome
    assert not isinstance(first, Exception), first
    assert first.sent == 1  # type: ignore[attr-defined]
    assert message(store, only).status == "sent"
    assert len(mailbox.handed_over) == 1 and mailbox.connections == 1


@pytest.mark.slow
def test_a_file_mode_operator_digest_is_never_an_smtp_message(
        mail_settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        mailbox: Mailbox, backoff: Sleeps, tmp_path: Path) -> None:
    make_digests_due(mail_settings, store, client, registry, {})
    result = notify.prepare_digests(mail_settings, store, utcnow(),
                                    operator=notify.operator_recipient(mail_settings,
                                                                       to_files=True))
    [operator] = [p for p in result.planned if p.kind == "operator"]

    by_smtp = drain(store.db, SmtpTransport(mail_settings), sleep=backoff)
    as_files = drain(store.db, FileTransport(tmp_path / "out"), sleep=backoff)

    assert by_smtp.sent == 0 and mailbox.accepted == []
    assert as_files.sent == 1
    assert message(store, operator.outbox_id).status == "sent"
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".eml", ".html", ".txt"]


@pytest.mark.slow
def test_when_mailing_the_operator_digest_goes_to_the_admin_address(
        mail_settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        mailbox: Mailbox, backoff: Sleeps) -> None:
    admin = dataclasses.replace(mail_settings, admin_email="ops@example.org")
    make_digests_due(admin, store, client, registry, {})
    assert notify.operator_recipient(mail_settings, to_files=False) is None  # no address: none

    result = notify.prepare_digests(admin, store, utcnow(),
                                    operator=notify.operator_recipient(admin, to_files=False))
    delivered = drain(store.db, SmtpTransport(admin), sleep=backoff)

    [operator] = [p for p in result.planned if p.kind == "operator"]
    assert operator.recipient == "ops@example.org" and operator.changes >= len(CHANGED)
    assert delivered.sent == 1
    [received] = mailbox.accepted
    assert received.rcpt_tos == ("ops@example.org",)
    assert received.message["To"] == "ops@example.org"
    assert received.message["Subject"].startswith("Myositis trials: ")
    assert received.message["List-Unsubscribe"] is None
