"""Signed, expiring tokens for confirmation, unsubscribe and manage links, and for forms.

itsdangerous does the signing (HMAC with TRACKER_SECRET_KEY) and the expiry. Confirmation
tokens are single-use: the subscribers table remembers the ones spent. Unsubscribe tokens are
not (an old digest's link must keep working, and unsubscribing twice is harmless); nor are
manage tokens, which live as long. A form's token (`form_token`) is bound to a random value
the browser holds in a cookie, so another site cannot post the form for it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from tracker.errors import BadToken

UNSUBSCRIBE_MAX_AGE = 400 * 24 * 3600  # a year's old digests still unsubscribe
FORM_MAX_AGE = 24 * 3600  # a form left open longer is shown again, fresh


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    MANAGE = "manage"  # the page where a subscriber changes, pauses or ends a subscription


@dataclass(frozen=True)
class Token:
    purpose: Purpose
    subscriber_id: int
    email: str
    digest: str  # identifies this token, for single use


def make(secret: str, purpose: Purpose, subscriber_id: int, email: str) -> str:
    return _serializer(secret, purpose).dumps({"s": subscriber_id, "e": email})


def read(secret: str, purpose: Purpose, token: str, max_age: int) -> Token:
    """The token's content, or BadToken saying plainly what is wrong with it."""
    try:
        data = _serializer(secret, purpose).loads(token.strip(), max_age=max_age)
    except SignatureExpired:
        raise BadToken("This link has expired; subscribe again to get a new one.") from None
    except BadSignature:
        raise BadToken("This link is not valid (it may be incomplete or altered).") from None
    if not isinstance(data, dict) or not isinstance(data.get("s"), int):
        raise BadToken("This link is not valid.")
    return Token(Purpose(purpose), data["s"], str(data.get("e", "")),
                 hashlib.sha256(token.strip().encode()).hexdigest())


def _serializer(secret: str, purpose: Purpose) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"tracker-{purpose}")


def form_token(secret: str, nonce: str) -> str:
    """A form's hidden token, bound to `nonce` (the random value in the browser's cookie)."""
    return URLSafeTimedSerializer(secret, salt="tracker-csrf").dumps(nonce)


def form_token_matches(secret: str, token: str, nonce: str,
                       max_age: int = FORM_MAX_AGE) -> bool:
    """Whether `token` was made by `form_token` for this `nonce`, less than `max_age` ago."""
    if not token or not nonce:
        return False
    try:
        signed = URLSafeTimedSerializer(secret, salt="tracker-csrf").loads(token, max_age=max_age)
    except BadSignature:  # SignatureExpired included
        return False
    return isinstance(signed, str) and hmac.compare_digest(signed, nonce)
