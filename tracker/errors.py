"""Every error the tracker raises on purpose, so callers can catch by category.

    TrackerError                 base; the CLI prints its message as one line (exit 1)
    ├── ConfigError              a setting is missing or invalid (exit 2)
    │   └── NoSnapshot           a read-only command found no database
    ├── BadInput                 a value given by a person cannot be used (exit 2)
    │   ├── BadAddress           not an e-mail address
    │   ├── BadToken             a link's token is expired, altered or spent
    │   ├── BadWeek              not an ISO week
    │   ├── UnknownCountry       not a country name, with suggestions
    │   └── UnknownPlace         not a place in the gazetteer, with suggestions
    ├── LockBusy                 another process holds the lock (exit 3)
    ├── DatabaseBusy             another process kept the database busy too long (exit 3)
    ├── NotFound                 a study, subscriber or message that does not exist (exit 4)
    ├── Stopped                  asked to stop (SIGTERM, Ctrl-C); the job gave up cleanly
    ├── WindowMoved              another digest run served this subscriber first
    ├── WriteError               a file could not be written (disk full, folder gone)
    ├── FetchError               talking to ClinicalTrials.gov failed
    │   ├── ApiError             the API refused the request (a 4xx other than 429)
    │   ├── RetriesExhausted     network faults, 429 or 5xx outlasted every retry
    │   ├── MalformedResponse    the body is not the JSON shape the API documents
    │   └── IncompleteSync       pages do not add up (count mismatch, repeated token)
    └── SendError                delivering an e-mail failed
        ├── TransientSendError   refused for now (4xx) or the connection dropped
        │   └── Unreachable      the mail server cannot be reached at all
        ├── PermanentSendError   refused for good (5xx), or the folder cannot be written
        └── UnknownOutcome       the connection dropped while the server held the message

A FetchError during a sync leaves the snapshot exactly as it was; a SendError leaves the
message in the outbox with its outcome recorded.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class; ``str(error)`` is a complete, user-facing sentence."""

    exit_code = 1


class ConfigError(TrackerError):
    exit_code = 2


class NoSnapshot(ConfigError):
    """A command that only reads found no database where the settings point."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(f"No snapshot at {where}; run 'tracker sync' first or set "
                         "TRACKER_DATABASE_URL.")


class BadInput(TrackerError):
    exit_code = 2


class BadAddress(BadInput):
    pass


class BadToken(BadInput):
    pass


class BadWeek(BadInput):
    pass


class UnknownCountry(BadInput):
    """A country name that is no registry spelling, ISO name, code or alias; a typo that
    would otherwise filter silently down to nothing. `suggestions` are registry spellings."""

    def __init__(self, given: str, suggestions: tuple[str, ...] = ()) -> None:
        self.given = given
        self.suggestions = suggestions
        if suggestions:
            choices = suggestions[-1]
            if len(suggestions) > 1:
                choices = f"{', '.join(suggestions[:-1])} or {choices}"
            hint = f"did you mean {choices}?"
        else:
            hint = "use an English name such as France or United Kingdom."
        super().__init__(f"'{given}' is not a country name we know; {hint}")


class UnknownPlace(BadInput):
    """Words that name no place in the gazetteer, so a search never runs around the wrong
    city. `suggestions` are place labels ("Lyon, France"), each holding a comma, so they are
    joined with "or" alone. An empty `given` means nothing was typed."""

    def __init__(self, given: str, suggestions: tuple[str, ...] = ()) -> None:
        self.given = given
        self.suggestions = suggestions
        example = "type a city name such as Lyon or Leeds."
        if not given:
            message = f"No place given; {example}"
        elif suggestions:
            message = f"'{given}' is not a place we know; did you mean {' or '.join(suggestions)}?"
        else:
            message = f"'{given}' is not a place we know; {example}"
        super().__init__(message)


class LockBusy(TrackerError):
    """`name` is held by another process; `holder` says who, where that is known."""

    exit_code = 3

    def __init__(self, name: str, message: str, holder: str | None = None) -> None:
        self.name = name
        self.holder = holder
        super().__init__(message)


class DatabaseBusy(TrackerError):
    """A write waited BUSY_SECONDS for another process's write and gave up."""

    exit_code = 3


class NotFound(TrackerError):
    exit_code = 4


class Stopped(TrackerError):
    """The process was asked to stop (SIGTERM, Ctrl-C) and the job gave up cleanly."""


class WindowMoved(TrackerError):
    """Another digest run advanced this subscriber's window first; nothing was queued."""


class WriteError(TrackerError):
    """A report, export or digest file could not be written; the message names it."""


class FetchError(TrackerError):
    pass


class ApiError(FetchError):
    """The API answered 4xx; its plain-text message is kept for the user."""

    def __init__(self, status: int, message: str, url: str) -> None:
        self.status = status
        self.api_message = message
        self.url = url
        super().__init__(f"ClinicalTrials.gov refused the request (HTTP {status}): {message}")


class RetriesExhausted(FetchError):
    pass


class MalformedResponse(FetchError):
    pass


class IncompleteSync(FetchError):
    pass


class SendError(TrackerError):
    """Base of delivery errors; the message says what the server answered."""


class TransientSendError(SendError):
    pass


class Unreachable(TransientSendError):
    """The mail server cannot be reached at all: no point trying the next message now."""


class PermanentSendError(SendError):
    pass


class UnknownOutcome(SendError):
    pass
