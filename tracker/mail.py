"""Deliver queued messages: over SMTP, or as files when no mail server is configured.

Each SMTP connection serves a whole batch, and a few connections (TRACKER_SMTP_CONNECTIONS)
run side by side, each in its own thread with its own claimed messages. When the server offers
PIPELINING (RFC 2920), MAIL FROM, RCPT TO and DATA go out in one write and their replies are
read after, so a message costs two round trips instead of four; otherwise each reply is
awaited, as smtplib does. Either way a reply is judged the same.

A temporary refusal (4xx) or a connection lost before the server accepted the message is
retried with backoff on a fresh connection; a permanent refusal (5xx) marks that message
failed and the batch goes on; a connection lost after the whole message was handed over,
while waiting for the server's verdict, leaves the outcome unknown: the message is marked so
and never resent on its own.

A message goes to a mail server only after its `sending` mark is committed, so a crash can
never send it twice. Files are different: writing a message's files again replaces them with
the same bytes, so a file transport (`idempotent`) skips that mark and its messages are marked
sent a claimed batch at a time; after a crash, the unmarked ones are simply written again.
"""

from __future__ import annotations

import contextlib
import errno
import random
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Protocol

from tracker import outbox
from tracker.config import Settings, folder_problem
from tracker.database import Database
from tracker.errors import (
    PermanentSendError,
    SendError,
    TransientSendError,
    UnknownOutcome,
    Unreachable,
)
from tracker.lock import sender
from tracker.mime import bodies, seven_bit
from tracker.models import MessageKind, MessageStatus, OutboxMessage

SEND_ATTEMPTS = 4
BACKOFF_BASE = 2.0


class Transport(Protocol):
    kinds: tuple[MessageKind, ...] | None  # the message kinds it delivers (None: all)
    # Delivering a message again does no harm (see the module's docstring). A transport
    # without this attribute is taken for a mail server.
    idempotent: bool

    def open(self) -> None: ...
    def ensure_open(self) -> None: ...
    def deliver(self, message: OutboxMessage) -> None: ...
    def close(self) -> None: ...


class _Tracked:
    """smtplib's MAIL, RCPT and DATA steps for one message, pipelined when the server offers
    it, noting when the whole message has left (`awaiting_verdict`): a connection lost after
    that leaves the outcome unknown, one lost before is a failure to retry."""

    awaiting_verdict = False

    def transaction(self, sender: str, recipient: str, msg: bytes) -> tuple[int, bytes]:
        """Hand `msg` over for `recipient`. Returns the reply that decides: the first refusal
        (of MAIL, RCPT or DATA), else the server's verdict on the message. Raises
        SMTPServerDisconnected (an OSError) if the connection is lost before that reply.
        8-bit data is declared (BODY=8BITMIME) to a server that announces it, and re-encoded
        as 7-bit for one that does not."""
        smtp: Any = self
        self.awaiting_verdict = False
        smtp.ehlo_or_helo_if_needed()
        options: tuple[str, ...] = ()
        if not msg.isascii():  # registry text outside ASCII, in an 8bit body
            if smtp.has_extn("8bitmime"):
                options = ("BODY=8BITMIME",)
            else:
                msg = seven_bit(msg)
        if smtp.has_extn("pipelining"):
            return self._pipelined(sender, recipient, msg, options)
        code, reply = smtp.mail(sender, options)
        if code != 250:
            return code, reply
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            return code, reply
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            return code, reply
        return self._content(msg)

    def _pipelined(self, sender: str, recipient: str, msg: bytes,
                   options: tuple[str, ...]) -> tuple[int, bytes]:
        """MAIL, RCPT and DATA in one write (DATA last, as RFC 2920 requires), then their
        replies in order. The message itself goes only after a 354 that follows two
        acceptances; once a command is refused, the replies still owed are read (or the
        connection is found closed) so the next message starts in step."""
        smtp: Any = self
        group = [" ".join([f"MAIL FROM:{smtplib.quoteaddr(sender)}", *options]),
                 f"RCPT TO:{smtplib.quoteaddr(recipient)}", "DATA"]
        if any("\r" in command or "\n" in command for command in group):
            raise ValueError(f"a line break in an SMTP command: {group!r}")  # as smtplib's
        smtp.send("".join(f"{command}\r\n" for command in group))
        refusal: tuple[int, bytes] | None = None
        for accepted in ((250,), (250, 251), (354,)):
            try:
                code, reply = smtp.getreply()
            except smtplib.SMTPException:
                if refusal is None:
                    raise
                return refusal  # the server closed after refusing (a 421): the refusal stands
            if refusal is None and code not in accepted:
                refusal = code, reply
        if refusal is None:
            return self._content(msg)
        if code == 354:
            # DATA accepted though MAIL or RCPT was refused: RFC 2920 (3.1) has the client
            # end it with an empty message, which the server must not deliver.
            with contextlib.suppress(smtplib.SMTPException):
                smtp.send(b".\r\n")
                smtp.getreply()
        return refusal

    def _content(self, msg: bytes) -> tuple[int, bytes]:
        """After a 354: the message, dot-stuffed, then the server's verdict (stdlib's logic)."""
        smtp: Any = self
        payload = smtplib._quote_periods(msg)  # type: ignore[attr-defined]
        if payload[-2:] != b"\r\n":
            payload += b"\r\n"
        smtp.send(payload + b".\r\n")
        self.awaiting_verdict = True
        code, reply = smtp.getreply()
        self.awaiting_verdict = False
        return code, reply


class _SMTP(_Tracked, smtplib.SMTP):
    pass


class _SMTPS(_Tracked, smtplib.SMTP_SSL):
    pass


@dataclass
class SmtpTransport:
    settings: Settings
    connection: Any = None
    tls_context: ssl.SSLContext | None = None  # default: the system's trusted certificates
    kinds: tuple[MessageKind, ...] | None = tuple(MessageKind)
    idempotent: bool = False  # a message handed over twice is received twice

    def ensure_open(self) -> None:
        if self.connection is None:
            self.open()

    def open(self) -> None:
        s = self.settings
        context = self.tls_context or ssl.create_default_context()
        port = s.smtp_port or {"tls": 465, "starttls": 587}.get(s.smtp_security, 25)
        try:
            if s.smtp_security == "tls":
                conn: Any = _SMTPS(s.smtp_host or "", port, timeout=s.smtp_timeout,
                                   context=context)
            else:
                conn = _SMTP(s.smtp_host or "", port, timeout=s.smtp_timeout)
                if s.smtp_security == "starttls":
                    conn.starttls(context=context)
            if s.smtp_user:
                conn.login(s.smtp_user, s.smtp_password or "")
        except smtplib.SMTPAuthenticationError as error:
            raise PermanentSendError(f"The mail server refused the login for "
                                     f"TRACKER_SMTP_USER ({error.smtp_code}).") from error
        except (OSError, smtplib.SMTPException) as error:
            raise Unreachable(f"Cannot reach the mail server {s.smtp_host}:{port}: "
                              f"{_reason(error)}") from error
        self.connection = conn

    def deliver(self, message: OutboxMessage) -> None:
        if self.connection is None:
            self.open()
        conn = self.connection
        sender = parseaddr(self.settings.mail_from)[1]
        try:
            code, reply = conn.transaction(sender, message.recipient, message.message)
        except (OSError, smtplib.SMTPServerDisconnected) as error:
            verdict_pending = getattr(conn, "awaiting_verdict", False)
            with contextlib.suppress(OSError):
                conn.close()
            self.connection = None
            if verdict_pending:
                raise UnknownOutcome(f"The connection dropped after the message was handed "
                                     f"over: {_reason(error)}") from error
            raise TransientSendError(f"The connection dropped: {_reason(error)}") from error
        if code == 250:
            return
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):  # gone, as after a 421: the next one reconnects
            with contextlib.suppress(OSError):
                conn.close()
            self.connection = None
        if 400 <= code < 500:
            raise TransientSendError(f"The mail server said {code} {text}")
        raise PermanentSendError(f"The mail server refused it: {code} {text}")

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.connection.quit()
            self.connection = None


# A write refused for one of these reasons would be refused for every message: the batch
# stops, as for an unreachable server, instead of retrying each message in turn.
FOLDER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                           errno.ENOENT, errno.ENOTDIR, errno.EIO})


@dataclass
class FileTransport:
    """Writes each message as .eml, .txt and .html into a folder (no mail server needed)."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    kinds: tuple[MessageKind, ...] | None = None
    idempotent: bool = True  # writing a message again replaces its files with the same bytes

    def ensure_open(self) -> None:
        pass

    def open(self) -> None:
        """Create the folder. One that cannot be written raises here, before any message is
        handed over, so `drain` leaves them all queued with the reason recorded."""
        problem = folder_problem(self.folder)
        if problem is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                problem = f"{error.strerror or error}."
        if problem:
            raise PermanentSendError(f"Cannot write messages into {self.folder}: {problem}")

    def deliver(self, message: OutboxMessage) -> None:
        """Write the message's files; a write the disk refuses leaves the message queued
        (TransientSendError, or Unreachable when the next message would fail the same way)."""
        stem = f"{message.created_at:%Y-%m-%d}-{message.kind}-{message.id:06d}"
        safe = "".join(c if c.isalnum() or c in "@._-" else "_" for c in message.recipient)
        eml = message.message
        text, html = bodies(eml)
        for suffix, data in ((".txt", text.encode()), (".html", html.encode()), (".eml", eml)):
            target = self.folder / f"{stem}-{safe}{suffix}"
            part = target.with_name(target.name + ".part")
            try:
                part.write_bytes(data)
                part.replace(target)  # atomic: a reader never sees half a file
            except OSError as error:
                with contextlib.suppress(OSError):
                    part.unlink()
                failed = Unreachable if error.errno in FOLDER_ERRNOS else TransientSendError
                raise failed(f"Cannot write {target}: {error.strerror or error}.") from error
            self.written.append(target)

    def close(self) -> None:
        pass


@dataclass
class DrainResult:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    left: int = 0  # still queued: refused for now, or the server could not be reached
    recovered: int = 0  # found mid-send from an earlier, dead sender: now unknown
    errors: list[str] = field(default_factory=list)


CLAIM = 20  # messages a connection takes at a time; small, so connections share the work


@dataclass
class _Run:
    """One drain's shared state: its workers (one connection each) count into `result` and
    stop together when the server is gone (`gone`), `stop` is set or a worker broke."""

    db: Database
    number: int  # this sender's number, on every message it claims
    scope: outbox.Scope
    sleep: Callable[[float], None]
    stop: threading.Event
    on_progress: Callable[[int, int], None] | None
    total: int
    result: DrainResult
    gone: str | None = None
    broken: list[BaseException] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def over(self) -> bool:
        return self.stop.is_set() or self.gone is not None or bool(self.broken)

    def record(self, outcome: str, message: OutboxMessage) -> None:
        with self.lock:
            if outcome == "unreachable":
                self.gone = self.gone or message.error or ""
                return
            if outcome in ("failed", "left"):
                self.result.errors.append(message.error or "")
            if outcome == "left":  # counted when given back, at the end
                return
            setattr(self.result, outcome, getattr(self.result, outcome) + 1)
            self.done += 1
            if self.on_progress:
                self.on_progress(self.done, self.total)


def drain(db: Database, transport: Transport | Sequence[Transport], *,
          ids: list[int] | None = None, sleep: Callable[[float], None] = time.sleep,
          on_progress: Callable[[int, int], None] | None = None,
          stop: threading.Event | None = None) -> DrainResult:
    """Deliver queued messages, oldest first, over each of the transports at once (one
    connection each, `transports_for`).

    On SQLite one sender runs at a time (others get LockBusy); on PostgreSQL several can
    drain the same outbox, each taking batches of messages no other sender has taken, so no
    message is delivered twice. Never raises for a delivery problem: what happened to each
    message is recorded on it and counted in the result. When `stop` is set, each connection
    ends after the message in hand; the rest stay queued.
    """
    transports = list(transport) if isinstance(transport, Sequence) else [transport]
    scope = outbox.Scope(ids, transports[0].kinds)
    result = DrainResult()
    with sender(db, lambda number: outbox.carries(db, number)) as me:
        result.recovered = outbox.recover_interrupted(db, me.alive)
        total = outbox.unclaimed(db, scope)
        if not total:
            return result
        run = _Run(db, me.number, scope, sleep, stop or threading.Event(), on_progress, total,
                   result)
        try:
            refused = _work_together(run, transports[:-(-total // CLAIM)])
            if refused:  # no connection could be made: nothing was handed over
                run.gone = refused
            if run.gone is not None:
                # The server is gone: say so on every message nobody has taken.
                result.left += outbox.unreached(db, scope, run.gone)
                result.errors.append(run.gone)
            elif run.stop.is_set():
                result.left += outbox.unclaimed(db, scope)
        finally:  # what this sender took and did not settle is free for the next one
            result.left += outbox.give_back(db, me.number)
        if run.broken:
            raise run.broken[0]
    return result


def _work_together(run: _Run, transports: Sequence[Transport]) -> str | None:
    """Run one worker per transport (the first in this thread) until the outbox is empty;
    returns the reason when none of them could connect."""
    refusals: list[str] = []

    def work(transport: Transport) -> None:
        try:
            refused = _work(run, transport)
        except BaseException as error:  # re-raised by drain, after the others stopped
            with run.lock:
                run.broken.append(error)
            return
        if refused is not None:
            with run.lock:
                refusals.append(refused)

    threads = [threading.Thread(target=work, args=(t,), name=f"sender-{n}", daemon=True)
               for n, t in enumerate(transports[1:], 2)]
    for thread in threads:
        thread.start()
    work(transports[0])
    for thread in threads:
        thread.join()
    return refusals[0] if len(refusals) == len(transports) else None


@dataclass
class _Delivered:
    """Messages delivered and not yet marked sent. Over SMTP the mark rides on the next
    message's `sending` commit; for an idempotent transport, which makes no `sending` mark,
    the mark also counts the attempt and is made once per claimed batch."""

    idempotent: bool
    ids: list[int] = field(default_factory=list)

    def mark_sent(self, db: Database) -> None:
        outbox.mark_sent(db, self.ids, attempted=self.idempotent)
        self.ids.clear()


def _work(run: _Run, transport: Transport) -> str | None:
    """Deliver claimed batches over one connection until nothing is left to claim or the run
    is over. Returns why the connection could not be opened (then nothing was claimed)."""
    try:
        transport.open()
    except SendError as error:
        return str(error)
    delivered = _Delivered(getattr(transport, "idempotent", False))
    try:
        while not run.over():
            batch = outbox.claim(run.db, run.number, run.scope, CLAIM)
            if not batch:
                break
            for number, message in enumerate(batch):
                if run.over():
                    if run.gone is not None:  # not tried: the server is gone; say so on them
                        outbox.failed_attempt(run.db, [m.id for m in batch[number:]
                                                       if m.id is not None], run.gone)
                    break
                run.record(_deliver_one(run.db, transport, message, run.sleep, delivered),
                           message)
            if delivered.idempotent:
                delivered.mark_sent(run.db)
    finally:
        delivered.mark_sent(run.db)
        transport.close()
    return None


def _deliver_one(db: Database, transport: Transport, message: OutboxMessage,
                 sleep: Callable[[float], None], delivered: _Delivered) -> str:
    """One message, with retries: "sent", "failed", "unknown", "left" (refused for now) or
    "unreachable" (no connection could be made: the batch should stop). Every attempt is
    counted on the message, with the reason when it failed. A delivered message's id is
    added to `delivered`, to be marked sent with a later commit."""
    assert message.id is not None
    error = ""
    unreachable = False
    counted = delivered.idempotent  # no `sending` mark counts the attempt: count it here
    for attempt in range(SEND_ATTEMPTS):
        try:
            transport.ensure_open()  # before 'sending': a failed connect hands nothing over
        except SendError as failure:  # no server, or a refused login: the message stays queued
            message.error = str(failure)
            outbox.failed_attempt(db, [message.id], str(failure))
            if isinstance(failure, PermanentSendError) or attempt == SEND_ATTEMPTS - 1:
                return "unreachable"
            _backoff(attempt, db, delivered, sleep)
            continue
        try:
            if not delivered.idempotent:
                outbox.begin_sending(db, message.id, sent=delivered.ids)
                delivered.ids.clear()
            transport.deliver(message)
        except TransientSendError as failure:
            error = str(failure)
            unreachable = isinstance(failure, Unreachable)
            outbox.mark(db, message.id, MessageStatus.QUEUED, error=error, attempt=counted)
            if attempt < SEND_ATTEMPTS - 1:
                _backoff(attempt, db, delivered, sleep)
            continue
        except PermanentSendError as failure:
            message.error = str(failure)
            outbox.mark(db, message.id, MessageStatus.FAILED, error=str(failure),
                        attempt=counted)
            return "failed"
        except UnknownOutcome as failure:
            outbox.mark(db, message.id, MessageStatus.UNKNOWN, error=str(failure),
                        attempt=counted)
            return "unknown"
        delivered.ids.append(message.id)
        return "sent"
    message.error = error
    return "unreachable" if unreachable else "left"


def _backoff(attempt: int, db: Database, delivered: _Delivered,
             sleep: Callable[[float], None]) -> None:
    delivered.mark_sent(db)  # not left waiting on the sleep
    delay = BACKOFF_BASE * 2 ** attempt
    sleep(delay / 2 + random.random() * delay / 2)


def _reason(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        shown = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        return f"{error.smtp_code} {shown}"
    return str(error) or type(error).__name__


def transport_for(settings: Settings, folder: Path | None = None) -> Transport:
    """Files in `folder` when given; else SMTP when a mail server is configured, and files
    in TRACKER_DIGEST_DIR otherwise."""
    if folder is None and settings.smtp_configured:
        return SmtpTransport(settings)
    return FileTransport(folder or settings.digest_dir)


def transports_for(settings: Settings, folder: Path | None = None) -> list[Transport]:
    """As `transport_for`, with TRACKER_SMTP_CONNECTIONS connections to a mail server (files
    are written by one)."""
    if folder is None and settings.smtp_configured:
        return [SmtpTransport(settings) for _ in range(settings.smtp_connections)]
    return [transport_for(settings, folder)]
