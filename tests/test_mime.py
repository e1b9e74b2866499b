"""A stored e-mail's bodies read back: exactly what the `email` parser reads, whatever the
transfer encoding, charset or line ends, and without parsing the whole message when it has the
shape the tracker writes."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from tracker import digest, mime
from tracker.config import Settings

TEXT = ("Hôpital Édouard Herriot, Lyon — now recruiting.\n"
        "=A line with an equals sign, and one with a dot below\n.\n"
        + "A long line, over seventy-eight characters, that must be folded when encoded. " * 3
        + "\n") * 20
HTML = "<p>Hôpital &amp; <a href=\"https://example.org/?a=1&amp;b=2\">the trial</a></p>\n" * 20
ASCII_TEXT = TEXT.encode("ascii", "replace").decode()
ASCII_HTML = HTML.encode("ascii", "replace").decode()


def parsed(message: bytes) -> tuple[str, str]:
    """The bodies as the `email` parser reads them: the first text/plain and text/html parts
    `walk` visits, decoded by the part's charset, CRLF as LF."""
    found = []
    for subtype in ("plain", "html"):
        for part in email.message_from_bytes(message).walk():
            if part.get_content_type() == f"text/{subtype}":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                text = payload.decode(part.get_content_charset() or "ascii")
                found.append(text.replace("\r\n", "\n"))
                break
        else:
            found.append("")
    return found[0], found[1]


def alternative(text: str, html: str, cte: str | None, policy: email.policy.Policy,
                charset: str = "utf-8") -> bytes:
    msg = EmailMessage(policy=policy)
    msg["To"] = "pat@example.org"
    msg["Subject"] = "Myositis trials: 2 updates"
    options = {} if cte is None else {"cte": cte}
    msg.set_content(text, charset=charset, **options)
    msg.add_alternative(html, subtype="html", charset=charset, **options)
    return msg.as_bytes()


POLICIES = {"crlf": digest.POLICY, "lf": email.policy.default}


@pytest.mark.parametrize("cte", [None, "7bit", "8bit", "quoted-printable", "base64"])
@pytest.mark.parametrize("line_ends", sorted(POLICIES))
def test_both_bodies_are_what_the_email_parser_reads_for_every_transfer_encoding(
        cte: str | None, line_ends: str) -> None:
    text, html = (ASCII_TEXT, ASCII_HTML) if cte == "7bit" else (TEXT, HTML)
    message = alternative(text, html, cte, POLICIES[line_ends])
    if cte is not None:
        assert f"Content-Transfer-Encoding: {cte}".encode() in message

    assert mime.bodies(message) == parsed(message)
    assert mime.bodies(message) == (text, html)
    assert mime._flat_parts(message) is not None  # read without the full parser


def test_a_latin1_message_and_a_real_digest_read_the_same() -> None:
    western = TEXT.replace("—", "-")
    latin = alternative(western, HTML, "quoted-printable", digest.POLICY, charset="latin-1")
    rendered = digest.message(Settings.from_env({}), recipient="pat@example.org",
                              subject_line="Myositis trials: 1 update", text=TEXT, html=HTML,
                              message_id="<1@localhost>", now=datetime(2026, 12, 1, tzinfo=UTC),
                              unsubscribe_url="https://example.org/unsubscribe?token=x")
    for message, text in ((latin, western), (rendered.as_bytes(), TEXT)):
        assert mime.bodies(message) == parsed(message) == (text, HTML)
        assert mime._flat_parts(message) is not None


FLAT = (b"Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n"
        b"A preamble\r\n--b\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nH\xc3\xb4pital\r\n\r\n--b  \r\n"
        b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\nAn epilogue\r\n--b\r\n")


@pytest.mark.parametrize("message", [
    FLAT,
    FLAT.replace(b"\r\n", b"\n"),
    b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nJust text\r\n",
    b"Subject: x\r\n\r\nNo content type: plain ASCII\r\n",
    b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+eDwvcD4=\r\n",
    FLAT.replace(b"text/html", b"text/enriched"),  # no HTML body
    FLAT.replace(b"--b--", b"--b-"),  # no closing boundary
    FLAT.replace(b"--b  \r\n", b"--b\r\n--b\r\n"),  # two boundary lines in a row
    FLAT.replace(b"Content-Transfer-Encoding: 8bit\r\n\r\n", b"No header line\r\n"),
    FLAT.replace(b"H\xc3\xb4pital", b"H\xc3\xb4p\rital"),
    FLAT.replace(b"<p>x</p>", b"<p>bare\rCR</p>"),
    FLAT.replace(b"multipart/alternative", b"multipart/digest"),
    FLAT.replace(b"; boundary=\"b\"", b""),
    b"Content-Type: multipart/mixed; boundary=\"out\"\r\n\r\n--out\r\n" + FLAT + b"\r\n"
    b"--out\r\nContent-Type: text/plain\r\n\r\nSecond\r\n--out--\r\n",  # nested
    b"Content-Type: message/rfc822\r\n\r\nContent-Type: text/plain\r\n\r\nInner\r\n",
], ids=["flat", "lf", "text-only", "no-type", "html-only", "no-html", "unclosed", "doubled",
        "no-separator", "cr-in-text", "cr-in-html", "digest", "no-boundary", "nested",
        "attached"])
def test_any_other_shape_reads_as_the_parser_reads_it(message: bytes) -> None:
    assert mime.bodies(message) == parsed(message)


def test_seven_bit_reencodes_8bit_bodies_and_keeps_the_rest() -> None:
    mail = EmailMessage(policy=digest.POLICY)
    mail["From"], mail["To"], mail["Subject"] = "t@example.org", "a@example.org", "Zürich site"
    mail["List-Unsubscribe"] = "<https://trials.example.org/unsubscribe?token=" + "x" * 300 + ">"
    mail.set_content("Un site à Zürich.\n")
    mail.add_alternative("<p>Un site à Zürich.</p>\n", subtype="html")
    eight = mail.as_bytes()

    seven = mime.seven_bit(eight)

    assert not eight.isascii() and seven.isascii()
    assert mime.bodies(seven) == mime.bodies(eight) == (
        "Un site à Zürich.\n", "<p>Un site à Zürich.</p>\n")
    header_lines = [line for line in eight.split(b"\r\n\r\n", 1)[0].split(b"\r\n")]
    assert all(line in seven for line in header_lines)  # headers as written, none refolded
