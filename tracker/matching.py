"""Who wants which change, and when: the pure rules of digests.

`wants(subscriber, study, event)` decides whether one change belongs in one subscriber's
digest (never one of a study without a myositis subtype: a look-alike such as viral myositis,
which only the operator's digest of every change lists), and `is_due(subscriber, now,
timezone, weekly_day)` whether a digest run at `now` serves them; both read only stored
values, so they are tested without a database.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache

from tracker.config import WEEKDAYS
from tracker.models import Cadence, ChangeEvent, ChangeKind, ChangeSet, Study, Subscriber
from tracker.text import split_list
from tracker.times import as_utc

STOPPED = ("TERMINATED", "SUSPENDED", "WITHDRAWN")
EARTH_RADIUS_KM = 6371.0
DEFAULT_RADIUS_KM = 100.0


def is_patient_change(event: ChangeEvent) -> bool:
    """What matters to someone looking to join a trial: a new trial, recruitment opening or
    closing, a new or newly recruiting site, results, a trial stopped early."""
    if event.kind in (ChangeKind.NEW, ChangeKind.SITE_ADDED, ChangeKind.RESULTS_POSTED):
        return True
    if event.kind != ChangeKind.STATUS:
        return False
    old, new = _loads(event.old_value), _loads(event.new_value)
    if event.field == "locations.status":
        return isinstance(new, dict) and new.get("status") == "RECRUITING"
    if event.field == "overallStatus":
        return "RECRUITING" in (old, new) or new in STOPPED
    return False


def wants(subscriber: Subscriber, study: Study | None, event: ChangeEvent) -> bool:
    found = Facts.of(study, event)
    return found is not None and Wish.of(subscriber).accepts(found)


@dataclass(frozen=True, slots=True)
class Facts:
    """What `wants` reads of one change and its study, read once: a digest run asks about
    the same changes for every subscriber."""

    patient: bool  # `is_patient_change`
    subtypes: frozenset[str]
    therapies: frozenset[str]
    children: bool
    recruiting: bool
    closes_recruitment: bool
    countries: frozenset[str]  # casefolded
    recruiting_countries: frozenset[str]  # casefolded
    site_points: str | None

    @classmethod
    def of(cls, study: Study | None, event: ChangeEvent) -> Facts | None:
        """None for a study with no kind of myositis (a look-alike): it is never announced."""
        if study is None or not study.subtypes:
            return None
        return cls(is_patient_change(event), _tags(study.subtypes), _tags(study.therapies),
                   bool(study.children), bool(study.recruiting), _closed_recruitment(event),
                   _folded(study.countries), _folded(study.recruiting_countries),
                   study.site_points)


@dataclass(frozen=True, slots=True)
class Wish:
    """What a subscriber asked for, as `accepts` compares it. Two subscribers with equal
    wishes want the same changes, so a digest run decides once for both."""

    patient_only: bool
    subtypes: frozenset[str]
    therapies: frozenset[str]
    children: bool
    recruiting_only: bool
    countries: frozenset[str]  # casefolded
    near: tuple[float, float, float] | None  # latitude, longitude, radius in km

    @classmethod
    def of(cls, subscriber: Subscriber) -> Wish:
        s = subscriber
        near = (s.near_lat, s.near_lon, s.radius_km or DEFAULT_RADIUS_KM) \
            if s.near_lat is not None and s.near_lon is not None else None
        return cls(s.changes == ChangeSet.PATIENT, _tags(s.subtypes), _tags(s.therapies),
                   bool(s.children), bool(s.recruiting_only), _folded(s.countries), near)

    def accepts(self, facts: Facts) -> bool:
        if self.patient_only and not facts.patient:
            return False
        if self.subtypes and self.subtypes.isdisjoint(facts.subtypes):
            return False
        if self.therapies and self.therapies.isdisjoint(facts.therapies):
            return False
        if self.children and not facts.children:
            return False
        if self.recruiting_only and not (facts.recruiting or facts.closes_recruitment):
            return False
        if self.countries:
            # Recruiting-only looks at recruiting sites, except for news of recruitment
            # closing: by then no site recruits, and the trial's countries say whether it is
            # news here.
            where = facts.recruiting_countries if self.recruiting_only and facts.recruiting \
                else facts.countries
            if self.countries.isdisjoint(where):
                return False
        return self.near is None or _near(*self.near, facts.site_points)


def is_due(subscriber: Subscriber, now: datetime, timezone: tzinfo, weekly_day: int) -> bool:
    """Whether a digest run at `now` should serve this subscriber.

    Days are local days in `timezone` (TRACKER_TIMEZONE), compared as dates, so a change of
    clocks never moves a digest to another day. A daily subscriber is due once per local day;
    a weekly one once the start of their weekday (their own, else `weekly_day`) has passed
    since they were last served. A run that missed that day serves them at the next run, and
    the one after waits for the following week. Served means `served_at`, or for rows from
    before it existed `last_digest_at`; never served means due now. An unconfirmed or ended
    subscription is never due, nor one paused until a time after `now`.
    """
    if subscriber.confirmed_at is None or subscriber.unsubscribed_at is not None:
        return False
    if subscriber.paused_until is not None and as_utc(subscriber.paused_until) > as_utc(now):
        return False
    served = subscriber.served_at or subscriber.last_digest_at
    if served is None:
        return True
    return local_date(served, timezone) < due_date(subscriber, now, timezone, weekly_day)


def due_date(subscriber: Subscriber, now: datetime, timezone: tzinfo, weekly_day: int) -> date:
    """The local date of the latest day, at or before `now`, on which this subscriber's
    digest falls: today for a daily digest, the latest of their weekday for a weekly one."""
    today = local_date(now, timezone)
    day = digest_weekday(subscriber, weekly_day)
    if day is None:
        return today
    return today - timedelta(days=(today.weekday() - day) % 7)


def digest_weekday(subscriber: Subscriber, weekly_day: int | None) -> int | None:
    """The day (0 = Monday) a weekly subscriber's digest goes out; None for a daily one, or
    when the subscriber keeps the site's day and `weekly_day` is not given."""
    if subscriber.cadence == Cadence.DAILY:
        return None
    return weekly_day if subscriber.weekday is None else subscriber.weekday


def local_date(moment: datetime, timezone: tzinfo) -> date:
    return as_utc(moment).astimezone(timezone).date()


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def describe(subscriber: Subscriber, weekly_day: int | None = None,
             labels: Callable[[str], str] | None = None) -> str:
    """The subscription's filters and cadence in a few words, for lists and the digest footer.

    A weekly subscription names its day, e.g. "weekly (Monday)": its own day, else
    `weekly_day` (the site's) when given. With `labels` (the vocabulary's), tags read as
    words ("Inclusion body myositis"), as patients must see them; without, as codes.
    """
    name = labels or (lambda tag: tag)
    parts = []
    if subscriber.subtypes:
        parts.append(", ".join(name(t) for t in split_list(subscriber.subtypes)))
    if subscriber.therapies:
        parts.append("treatments: " + ", ".join(name(t) for t in split_list(subscriber.therapies)))
    if subscriber.countries:
        parts.append("in " + ", ".join(split_list(subscriber.countries)))
    if subscriber.near_lat is not None:
        place = subscriber.near_label or f"{subscriber.near_lat:g},{subscriber.near_lon:g}"
        parts.append(f"within {subscriber.radius_km:g} km of {place}")
    if subscriber.children:
        parts.append("open to children")
    if subscriber.recruiting_only:
        parts.append("recruiting only")
    scope = "; ".join(parts) or "all myositis trials"
    changes = "changes that matter to patients" if subscriber.changes == ChangeSet.PATIENT \
        else "every change"
    return f"{scope}; {changes}; {cadence_label(subscriber, weekly_day)}"


def cadence_label(subscriber: Subscriber, weekly_day: int | None = None) -> str:
    """"daily", "weekly", or "weekly (Friday)" when the day is known (see `describe`)."""
    day = digest_day_name(subscriber, weekly_day)
    return subscriber.cadence if day is None else f"{subscriber.cadence} ({day})"


def digest_day_name(subscriber: Subscriber, weekly_day: int | None) -> str | None:
    """"Monday" ... "Sunday" for a weekly digest's day (see `digest_weekday`), else None."""
    day = digest_weekday(subscriber, weekly_day)
    return None if day is None else WEEKDAYS[day].capitalize()


def _closed_recruitment(event: ChangeEvent) -> bool:
    return event.kind == ChangeKind.STATUS and event.field == "overallStatus" and \
        _loads(event.old_value) == "RECRUITING"


# Cached: a digest run asks about the same few changes and studies for every subscriber.
# Callers only read what these return.
@lru_cache(maxsize=4096)
def _loads(value: str | None) -> object:
    return json.loads(value) if value else None


@lru_cache(maxsize=4096)
def _tags(joined: str | None) -> frozenset[str]:
    return frozenset(split_list(joined))


@lru_cache(maxsize=4096)
def _folded(joined: str | None) -> frozenset[str]:
    """Countries compared without case."""
    return frozenset(split_list((joined or "").casefold()))


@lru_cache(maxsize=65536)
def _near(lat: float, lon: float, radius: float, site_points: str | None) -> bool:
    """Whether any of a study's sites lies within `radius` km of the point."""
    return any(distance_km(lat, lon, site_lat, site_lon) <= radius
               for site_lat, site_lon in _points(site_points))


@lru_cache(maxsize=4096)
def _points(site_points: str | None) -> tuple[tuple[float, float], ...]:
    """A study's site coordinates, as stored (a JSON list of [lat, lon])."""
    return tuple((lat, lon) for lat, lon in json.loads(site_points)) if site_points else ()
