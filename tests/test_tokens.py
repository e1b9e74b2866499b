"""Signed links: a token carries its purpose, subscriber and address, and is refused when
altered, cut short, signed with another secret, used for another purpose, or too old."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from tracker import tokens
from tracker.errors import BadToken

SECRET = "subscriber-tests-secret-0123456789"


def test_a_token_round_trips_what_it_signs() -> None:
    token = tokens.make(SECRET, "confirm", 7, "pat@example.org")

    read = tokens.read(SECRET, "confirm", f" {token}\n", max_age=3600)

    assert read == tokens.Token("confirm", 7, "pat@example.org",
                                hashlib.sha256(token.encode()).hexdigest())
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)  # safe in a URL as it is


def test_a_tampered_token_is_refused() -> None:
    token = tokens.make(SECRET, "confirm", 7, "pat@example.org")
    payload, stamp, signature = token.split(".")
    other = tokens.make(SECRET, "confirm", 8, "eve@example.org").split(".")[0]

    # (The signature's first character: its last may only carry unused padding bits.)
    altered = ("B" if signature[0] == "A" else "A") + signature[1:]
    for bad in (f"{payload}.{stamp}.{altered}",  # signature altered
                f"{other}.{stamp}.{signature}",  # someone else's subscription
                token[: len(token) // 2],  # cut short by a mail client
                ""):
        with pytest.raises(BadToken, match="This link is not valid"):
            tokens.read(SECRET, "confirm", bad, max_age=3600)
    with pytest.raises(BadToken, match="not valid"):
        tokens.read("some-other-secret-0123456789", "confirm", token, max_age=3600)


def test_a_token_for_one_purpose_does_not_serve_another() -> None:
    unsubscribe = tokens.make(SECRET, "unsubscribe", 7, "pat@example.org")

    with pytest.raises(BadToken, match="not valid"):
        tokens.read(SECRET, "confirm", unsubscribe, max_age=3600)
    assert tokens.read(SECRET, "unsubscribe", unsubscribe, max_age=3600).subscriber_id == 7


def test_an_old_token_has_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    eight_days_ago = time.time() - 8 * 86400
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: eight_days_ago)
        token = tokens.make(SECRET, "confirm", 7, "pat@example.org")

    with pytest.raises(BadToken, match="This link has expired; subscribe again"):
        tokens.read(SECRET, "confirm", token, max_age=7 * 86400)
    assert tokens.read(SECRET, "confirm", token, max_age=9 * 86400).subscriber_id == 7


