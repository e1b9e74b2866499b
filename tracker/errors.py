"""Every error the tracker raises on purpose, so callers can catch by category.

    TrackerError                 base; the CLI prints its message as one line
    ├── ConfigError              a setting is missing or invalid (exit 2)
    ├── LockBusy                 another sync holds the lock (exit 3)
    ├── NotFound                 a study or record the user named does not exist (exit 4)
    └── FetchError               talking to ClinicalTrials.gov failed (exit 1)
        ├── ApiError             the API refused the request (a 4xx other than 429)
        ├── RetriesExhausted     network faults, 429 or 5xx outlasted every retry
        ├── MalformedResponse    the body is not the JSON shape the API documents
        └── IncompleteSync       pages do not add up (count mismatch, repeated token)

A FetchError during a sync leaves the snapshot exactly as it was.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class; ``str(error)`` is a complete, user-facing sentence."""

    exit_code = 1


class ConfigError(TrackerError):
    exit_code = 2


class LockBusy(TrackerError):
    exit_code = 3


class NotFound(TrackerError):
    exit_code = 4


class FetchError(TrackerError):
    exit_code = 1


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


class Stopped(TrackerError):
    """The process was asked to stop (SIGTERM, Ctrl-C) and the job gave up cleanly."""

    exit_code = 1
