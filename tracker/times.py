"""Time helpers, each written once: now in UTC, stored times read back, times as people read.

Times are stored in UTC; some databases (SQLite) hand them back without their zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time with its zone: naive times are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc_day(moment: datetime) -> date:
    """The day a stored time falls on in UTC (naive times are UTC)."""
    return as_utc(moment).astimezone(UTC).date()


def long_date(day: date) -> str:
    """A date as people write it: 3 December 2026."""
    return f"{day.day} {day:%B %Y}"


def utc_time(moment: datetime | None, missing: str = "never") -> str:
    """2026-11-21 09:00 UTC; `missing` for None."""
    if moment is None:
        return missing
    return f"{as_utc(moment).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def stamp(value: str | None, missing: str = "never") -> str:
    """An ISO timestamp as readers write it: 2026-11-21 09:00 UTC (naive ones are UTC); text
    that is no timestamp (the registry's, untrusted) as it is."""
    if not value:
        return missing
    try:
        return utc_time(datetime.fromisoformat(value))
    except ValueError:
        return value


def local_time(moment: datetime | None, zone: tzinfo, missing: str = "never") -> str:
    """A time in the operator's zone (TRACKER_TIMEZONE): 2026-11-23 06:00 CET."""
    if moment is None:
        return missing
    return f"{as_utc(moment).astimezone(zone):%Y-%m-%d %H:%M %Z}"


def parse_iso(value: str | None) -> datetime | None:
    """An ISO time as stored in JSON output, with its zone (naive means UTC)."""
    return as_utc(datetime.fromisoformat(value)) if value else None
