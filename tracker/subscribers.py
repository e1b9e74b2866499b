"""Who wants which changes: address checks, preferences, and the pure matching rules.

`wants(subscriber, study, event)` decides whether one change belongs in one subscriber's
digest; it reads only stored values, so it can be tested without a database.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from tracker.errors import TrackerError
from tracker.models import ChangeEvent, Study, Subscriber

CADENCES = ("daily", "weekly")
CHANGE_SETS = ("patient", "all")
STOPPED = ("TERMINATED", "SUSPENDED", "WITHDRAWN")
EARTH_RADIUS_KM = 6371.0


class BadAddress(TrackerError):
    exit_code = 2


def normalise_address(address: str) -> str:
    """A syntactically valid address in normal form, or BadAddress saying why not.

    Deliverability is not checked (no DNS here); the confirmation e-mail proves it. The form
    returned is ASCII (an internationalised domain in its xn-- form), as the To header and the
    SMTP envelope need it; a non-ASCII local part would need SMTPUTF8, so it is refused.
    """
    address = address.strip()
    if any(ord(c) < 32 for c in address):
        raise BadAddress(f"{address!r} is not a valid e-mail address: it contains control "
                         "characters.")
    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise BadAddress(f"{address!r} is not a valid e-mail address: {error}") from None
    return str(result.ascii_email or result.normalized)


@dataclass(frozen=True)
class Preferences:
    subtypes: tuple[str, ...] = ()
    therapies: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    near: tuple[float, float] | None = None
    radius_km: float | None = None
    children: bool = False
    recruiting_only: bool = False
    changes: str = "patient"
    cadence: str = "weekly"

    def columns(self) -> dict[str, object]:
        return {
            "subtypes": "|".join(self.subtypes) or None,
            "therapies": "|".join(self.therapies) or None,
            "countries": "|".join(self.countries) or None,
            "near_lat": self.near[0] if self.near else None,
            "near_lon": self.near[1] if self.near else None,
            "radius_km": (self.radius_km or 100.0) if self.near else None,
            "children": self.children,
            "recruiting_only": self.recruiting_only,
            "changes": self.changes,
            "cadence": self.cadence,
        }


def parse_point(text: str) -> tuple[float, float]:
    """"45.75,4.85" -> (45.75, 4.85); ValueError with the reason otherwise."""
    try:
        lat_text, lon_text = text.split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise ValueError("give latitude and longitude as LAT,LON, e.g. 45.75,4.85") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError("latitude must be within -90..90 and longitude within -180..180")
    return lat, lon


def is_patient_change(event: ChangeEvent) -> bool:
    """What matters to someone looking to join a trial: a new trial, recruitment opening or
    closing, a new or newly recruiting site, results, a trial stopped early."""
    if event.kind in ("new", "site_added", "results_posted"):
        return True
    if event.kind != "status":
        return False
    old, new = _loads(event.old_value), _loads(event.new_value)
    if event.field == "locations.status":
        return isinstance(new, dict) and new.get("status") == "RECRUITING"
    if event.field == "overallStatus":
        return "RECRUITING" in (old, new) or new in STOPPED
    return False


def wants(subscriber: Subscriber, study: Study | None, event: ChangeEvent) -> bool:
    if subscriber.changes == "patient" and not is_patient_change(event):
        return False
    if study is None:
        return False
    if subscriber.subtypes and not _overlap(subscriber.subtypes, study.subtypes):
        return False
    if subscriber.therapies and not _overlap(subscriber.therapies, study.therapies):
        return False
    if subscriber.children and not study.children:
        return False
    if subscriber.recruiting_only and not (study.recruiting or _closed_recruitment(event)):
        return False
    if subscriber.countries:
        # Recruiting-only looks at recruiting sites, except for news of recruitment closing:
        # by then no site recruits, and the trial's countries say whether it is news here.
        where = study.recruiting_countries if subscriber.recruiting_only and study.recruiting \
            else study.countries
        if not _overlap(subscriber.countries.casefold(), (where or "").casefold()):
            return False
    if subscriber.near_lat is not None and subscriber.near_lon is not None:
        radius = subscriber.radius_km or 100.0
        points = json.loads(study.site_points) if study.site_points else []
        if not any(distance_km(subscriber.near_lat, subscriber.near_lon, lat, lon) <= radius
                   for lat, lon in points):
            return False
    return True


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def describe(subscriber: Subscriber) -> str:
    """The subscription's filters in a few words, for lists and the digest footer."""
    parts = []
    if subscriber.subtypes:
        parts.append("subtypes " + subscriber.subtypes.replace("|", ", "))
    if subscriber.therapies:
        parts.append("treatments " + subscriber.therapies.replace("|", ", "))
    if subscriber.countries:
        parts.append("in " + subscriber.countries.replace("|", ", "))
    if subscriber.near_lat is not None:
        parts.append(f"within {subscriber.radius_km:g} km of "
                     f"{subscriber.near_lat:g},{subscriber.near_lon:g}")
    if subscriber.children:
        parts.append("open to children")
    if subscriber.recruiting_only:
        parts.append("recruiting only")
    scope = "; ".join(parts) or "all myositis trials"
    changes = "changes that matter to patients" if subscriber.changes == "patient" \
        else "every change"
    return f"{scope}; {changes}; {subscriber.cadence}"


def _overlap(wanted: str, have: str | None) -> bool:
    return bool(set(wanted.split("|")) & set((have or "").split("|")) - {""})


def _closed_recruitment(event: ChangeEvent) -> bool:
    return event.kind == "status" and event.field == "overallStatus" and \
        _loads(event.old_value) == "RECRUITING"


def _loads(value: str | None) -> object:
    return json.loads(value) if value else None
