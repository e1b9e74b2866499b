"""A real SMTP server on loopback (aiosmtpd) whose answers a test can script.

`smtp_server()` starts one on an ephemeral port (or a given one) in a background thread and
yields its `Mailbox`: what arrived, on which connection, and the faults still to inject. A
fault answers MAIL, RCPT, the DATA command (before 354) or the end of DATA with a reply, or
drops the connection without answering; a 421 reply also closes the connection, as RFC 5321
says. `slow` makes the server sit on each message after receiving all of it (from the
`slow_from`-th on) before it answers, until `release` is set or the client goes away.

aiosmtpd reads commands from a stream buffer and answers them in order, so it serves a
pipelining client as it is; it just does not say so. `pipelining=True` adds PIPELINING to
its EHLO answer (RFC 2920), and `grouped` shows, for each MAIL, the commands that had
already arrived behind it: what the client sent in the same write.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session

MAIL = "MAIL"  # a MAIL fault cannot name a recipient: RCPT has not been read yet
RCPT = "RCPT"
DATA_COMMAND = "DATA command"  # the answer to DATA itself, before the message is sent
END_OF_DATA = "end of DATA"  # the verdict on the whole message
DROP = None  # close the connection instead of answering


@dataclass
class Fault:
    stage: str
    reply: str | None  # DROP: close the connection without answering
    times: int | None = 1  # None: every time
    recipient: str | None = None  # only for this recipient


@dataclass(frozen=True)
class Received:
    session: int  # which connection (numbered from 1 in order of EHLO)
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()  # what followed MAIL FROM (BODY=8BITMIME)

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class Mailbox:
    """The handler: records everything and plays the scripted faults."""

    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)  # answered 250 at end of DATA
    handed_over: list[Received] = field(default_factory=list)  # every complete message
    sessions: list[Session] = field(default_factory=list)  # one per connection that spoke
    slow: float = 0.0
    slow_from: int = 0
    pipelining: bool = False  # offer PIPELINING in the EHLO answer
    eight_bit: bool = True  # offer 8BITMIME (aiosmtpd does); False: a 7-bit-only server
    grouped: list[bytes] = field(default_factory=list)  # per MAIL: the commands behind it
    # Answer 354 to DATA even when no recipient was accepted, as RFC 2920 lets a server do;
    # the client must then send an empty message (recorded in `empty_data`), never delivered.
    data_without_recipients: bool = False
    empty_data: list[bytes] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, stage: str, reply: str | None, times: int | None = 1,
             recipient: str | None = None) -> Fault:
        fault = Fault(stage, reply, times, recipient)
        with self.lock:
            self.faults.append(fault)
        return fault

    @property
    def connections(self) -> int:
        return len(self.sessions)

    def accepted_ids(self) -> list[str]:
        return [r.message_id for r in self.accepted]

    def handed_over_ids(self) -> list[str]:
        return [r.message_id for r in self.handed_over]

    # --- aiosmtpd hooks ---------------------------------------------------------------------

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Any,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        self._session_number(session)
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if not self.eight_bit:
            responses = [r for r in responses if r != "250-8BITMIME"]
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        reader: Any = server._reader  # what has arrived and is not read yet
        with self.lock:
            self.grouped.append(bytes(reader._buffer))
        fault = self._take(MAIL, None)
        if fault is not None:
            return await _play(server, fault)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        fault = self._take(RCPT, address)
        if fault is not None:
            return await _play(server, fault)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Any) -> str:
        got = Received(self._session_number(session), envelope.mail_from,
                       tuple(envelope.rcpt_tos), bytes(envelope.original_content),
                       tuple(envelope.mail_options))
        with self.lock:
            self.handed_over.append(got)
            number = len(self.handed_over)
        if not self.eight_bit and not got.data.isascii():
            return "554 5.6.0 8-bit data refused: this server takes 7-bit messages only"
        if self.slow and number > self.slow_from:
            deadline = time.monotonic() + self.slow
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # cancelled at once if the client goes away
        fault = self._take(END_OF_DATA, got.rcpt_tos[0] if got.rcpt_tos else None)
        if fault is not None:
            return await _play(server, fault)
        with self.lock:
            self.accepted.append(got)
        return "250 2.0.0 OK: queued"

    # --- helpers ---------------------------------------------------------------------------

    def _session_number(self, session: Session) -> int:
        with self.lock:
            for number, known in enumerate(self.sessions, 1):
                if known is session:
                    return number
            self.sessions.append(session)
            return len(self.sessions)

    def _take(self, stage: str, recipient: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.stage != stage or fault.times == 0:
                    continue
                if fault.recipient is not None and fault.recipient != recipient:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None


async def _play(server: SMTP, fault: Fault) -> str:
    if fault.reply is not DROP and not fault.reply.startswith("421"):
        return fault.reply
    if fault.reply is not DROP:
        await server.push(fault.reply)
    assert server.transport is not None
    server.transport.close()
    await asyncio.sleep(60)  # connection_lost cancels this at once; nothing more is said
    raise AssertionError("the connection should have been closed")


class _Server(SMTP):
    async def smtp_DATA(self, arg: str) -> None:
        handler = self.event_handler
        envelope = self.envelope
        if isinstance(handler, Mailbox) and envelope is not None and envelope.rcpt_tos:
            fault = handler._take(DATA_COMMAND, envelope.rcpt_tos[0])
            if fault is not None:
                reply = await _play(self, fault)
                self._set_rset_state()
                await self.push(reply)
                return
        if isinstance(handler, Mailbox) and handler.data_without_recipients and \
                envelope is not None and envelope.mail_from and not envelope.rcpt_tos:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            lines = []
            while (line := await self._reader.readuntil(b"\r\n")) != b".\r\n":
                lines.append(line)
            with handler.lock:
                handler.empty_data.append(b"".join(lines))
            self._set_post_data_state()
            await self.push("554 5.5.1 Error: no valid recipients")
            return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        server: Any = self.server
        if self.port == 0 and server is not None:  # learn the ephemeral port
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def smtp_server(port: int = 0, mailbox: Mailbox | None = None) -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1 for the duration of the block."""
    box = mailbox or Mailbox()
    controller = _Controller(box, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        box.release.set()
        controller.stop()


def wait_for(condition: Callable[[], object], timeout: float = 15.0,
             what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
