"""The text and HTML bodies of a stored e-mail, read back without parsing all of it; and a
stored e-mail made 7-bit for a mail server that takes nothing else.

Writing a digest's .txt and .html files needs both bodies, and the `email` package's feed
parser looks at every line of the message to find them (a third of a millisecond for a 15 kB
digest, twice). `bodies` finds the parts of a flat multipart message by their boundary lines
instead, parses only the small header blocks with the `email` package, and decodes each
part's payload with that package's own `get_payload(decode=True)`, so the result is what the
parser would give, in about a quarter of the time. Anything outside the shape it knows
(nested multiparts, bare CR line ends, a missing boundary, a part without a blank line after
its headers) is handed to the full parser instead.
"""

from __future__ import annotations

import email
import io
import re
from collections.abc import Iterator
from email.generator import BytesGenerator
from email.message import Message
from email.parser import HeaderParser
from email.policy import SMTP

# The feed parser's test for a header line (email.feedparser.headerRE).
HEADER_LINE = re.compile(r"(From |[\041-\071\073-\176]*:|[\t ])")
# What may follow "--" and the boundary on a boundary line (email.feedparser's `boundaryre`).
BOUNDARY_REST = re.compile(r"(--)?[ \t]*(?:\r\n|\n|\Z)")
_HEADERS = HeaderParser()
# As digests are written (lines up to 998 bytes, so none is folded again), but 7-bit.
_SEVEN_BIT = SMTP.clone(max_line_length=998, cte_type="7bit")


def bodies(message: bytes) -> tuple[str, str]:
    """The plain-text and HTML bodies of an e-mail ("" for one it lacks), line ends as "\\n",
    exactly as the `email` parser reads them (the first text/plain and the first text/html
    part, in the order `Message.walk` visits them)."""
    parts = _flat_parts(message)
    if parts is None:
        parts = list(email.message_from_bytes(message).walk())
    found: dict[str, str] = {}
    for part in parts:
        subtype = {"text/plain": "plain", "text/html": "html"}.get(part.get_content_type())
        if subtype is not None and subtype not in found:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            text = payload.decode(part.get_content_charset() or "ascii")
            found[subtype] = text.replace("\r\n", "\n")
    return found.get("plain", ""), found.get("html", "")


def _flat_parts(message: bytes) -> list[Message] | None:
    """The message and its parts, as `walk` gives them, with each payload set as the parser
    would set it; None when the message is not one this can read exactly."""
    text = message.decode("ascii", "surrogateescape")  # as email.parser.BytesParser does
    if text.count("\r") != text.count("\r\n"):
        return None  # a bare CR ends a line for the parser; not handled here
    split = _headers_and_body(text)
    if split is None:
        return None
    root, body = split
    maintype = root.get_content_maintype()
    if maintype == "message":
        return None
    if maintype != "multipart":
        root.set_payload(body)
        return [root]
    boundary = root.get_boundary()
    if boundary is None or root.get_content_subtype() == "digest":
        return None  # a digest's parts default to message/rfc822
    parts: list[Message] = [root]
    start: int | None = None
    for begin, end, closing in _boundary_lines(body, "--" + boundary):
        if start is not None:
            if begin == start:
                return None  # two boundary lines in a row
            split = _headers_and_body(body[start:begin])
            if split is None or split[0].get_content_maintype() in ("multipart", "message"):
                return None
            part, payload = split
            # The line end before a boundary line belongs to the boundary (RFC 2046).
            part.set_payload(payload[:-2] if payload.endswith("\r\n")
                             else payload[:-1] if payload.endswith("\n") else payload)
            parts.append(part)
        if closing:  # what follows is the epilogue
            return parts if start is not None else None
        start = end
    return None  # no closing boundary


def _boundary_lines(body: str, separator: str) -> Iterator[tuple[int, int, bool]]:
    """Where each line that the parser takes for a boundary starts and ends, and whether it
    closes the multipart: the separator at a line start, then "--" or not, blanks, line end
    (email.feedparser's `boundaryre`). A plain search: a regular expression anchored at every
    line start costs more than the rest of the reading."""
    position = body.find(separator)
    while position >= 0:
        if position == 0 or body[position - 1] == "\n":
            line = BOUNDARY_REST.match(body, position + len(separator))
            if line is not None:
                yield position, line.end(), bool(line.group(1))
        position = body.find(separator, position + 1)


def _headers_and_body(text: str) -> tuple[Message, str] | None:
    """A header block parsed by the `email` package, and the text after the blank line that
    ends it; None when a line that is not a header comes before any blank line."""
    position = 0
    while True:
        end = text.find("\n", position) + 1
        if end == 0:
            return None
        line = text[position:end]
        if line in ("\r\n", "\n"):
            return _HEADERS.parsestr(text[:position]), text[end:]
        if not HEADER_LINE.match(line):
            return None
        position = end


def seven_bit(message: bytes) -> bytes:
    """The same e-mail with each 8-bit body re-encoded in base64 (as the `email` package
    writes UTF-8), for a server that does not announce 8BITMIME (RFC 6152): 8-bit data sent
    to it may be refused or mangled. Headers are already 7-bit and stay as they are."""
    out = io.BytesIO()
    BytesGenerator(out, policy=_SEVEN_BIT).flatten(
        email.message_from_bytes(message, policy=_SEVEN_BIT))
    return out.getvalue()
