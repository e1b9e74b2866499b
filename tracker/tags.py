"""Tag a study with the myositis subtypes it concerns and the treatment classes it tests,
and extract the patient-relevant facts (recruiting, children, where) the tag filters combine
with.

Tagging is pure: a raw API record in, tags with the words that produced them out, so a wrong
tag can always be explained. The subtype rules are in `subtypes`, the treatment rules in
`treatments`, the words in `vocabulary`.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tracker.record import Record, compact_json, get
from tracker.subtypes import NotMyositis, SubtypeTagger
from tracker.text import join_list
from tracker.treatments import TreatmentTagger
from tracker.vocabulary import Evidence, Vocabulary


@dataclass
class Tags:
    subtypes: dict[str, list[Evidence]] = field(default_factory=dict)
    therapies: dict[str, list[Evidence]] = field(default_factory=dict)
    not_myositis: list[NotMyositis] = field(default_factory=list)  # look-alikes, and why
    not_tested: list[Evidence] = field(default_factory=list)  # (reason, intervention name)


class Tagger:
    """Tags studies with one vocabulary; build once, use for every study of a sync.

    Its patterns are compiled when the first study is tagged, or in the background from
    `prepare()`: compiling them takes about as long as a page of studies takes to arrive, and
    longer than a sync in which nothing changed spends on its own work."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self._lock = threading.Lock()
        self._built: tuple[SubtypeTagger, TreatmentTagger] | None = None

    def prepare(self) -> None:
        """Start compiling the patterns in a background thread, if not done yet, so that the
        first study to tag need not wait (a sync calls this before it waits for pages)."""
        if self._built is None:
            threading.Thread(target=self._prepare, name="tagger", daemon=True).start()

    def _prepare(self) -> None:
        time.sleep(0)  # let the caller carry on to its request first
        # A failure is not reported here: the first tag() builds again and raises it there.
        with contextlib.suppress(Exception):
            self._build()

    def _build(self) -> tuple[SubtypeTagger, TreatmentTagger]:
        with self._lock:  # a tag() during a background build waits for it
            if self._built is None:
                self._built = (SubtypeTagger(self.vocabulary), TreatmentTagger(self.vocabulary))
            return self._built

    @property
    def subtypes(self) -> SubtypeTagger:
        return self._built[0] if self._built is not None else self._build()[0]

    @property
    def treatments(self) -> TreatmentTagger:
        return self._built[1] if self._built is not None else self._build()[1]

    def tag(self, study: Record) -> Tags:
        reading = self.subtypes.read(study)
        treatments = self.treatments.assess(study)
        return Tags(reading.subtypes, treatments.classes, reading.not_myositis,
                    treatments.ignored)


# --- patient-relevant facts ----------------------------------------------------------------

def age_in_years(text: str | None) -> float | None:
    """"6 Months" -> 0.5; "18 Years" -> 18.0; None or "N/A" -> None."""
    if not text:
        return None
    found = re.match(r"\s*(\d+(?:\.\d+)?)\s*(year|month|week|day|hour|minute)", text, re.I)
    if not found:
        return None
    per_year = {"year": 1, "month": 12, "week": 52.1775, "day": 365.25, "hour": 8766,
                "minute": 525960}
    return round(float(found.group(1)) / per_year[found.group(2).lower()], 3)


def recruiting_sites(study: Record) -> list[dict[str, Any]]:
    """Sites open to patients now: those marked RECRUITING, or, in a recruiting study whose
    sites carry no status at all, every site."""
    locations = get(study, "protocolSection.contactsLocationsModule.locations", []) or []
    status = get(study, "protocolSection.statusModule.overallStatus")
    if status != "RECRUITING":
        return []  # a stale site status does not make a closed study recruit
    if any("status" in loc for loc in locations):
        chosen = [loc for loc in locations if loc.get("status") == "RECRUITING"]
    else:
        chosen = locations
    sites = []
    for loc in chosen:
        site = {k: loc[k] for k in ("facility", "city", "state", "country") if loc.get(k)}
        point = loc.get("geoPoint") or {}
        if "lat" in point and "lon" in point:
            site["lat"], site["lon"] = point["lat"], point["lon"]
        sites.append(site)
    return sites


def columns(tags: Tags, study: Record) -> dict[str, Any]:
    """The snapshot columns for tags and patient facts."""
    p = study.get("protocolSection", {})
    minimum = age_in_years(get(p, "eligibilityModule.minimumAge"))
    maximum = age_in_years(get(p, "eligibilityModule.maximumAge"))
    std_ages = get(p, "eligibilityModule.stdAges")
    children = ("CHILD" in std_ages) if std_ages else (minimum is None or minimum < 18)
    sites = recruiting_sites(study)
    points = sorted({(loc["geoPoint"]["lat"], loc["geoPoint"]["lon"])
                     for loc in get(p, "contactsLocationsModule.locations", []) or []
                     if isinstance(loc.get("geoPoint"), dict)
                     and {"lat", "lon"} <= set(loc["geoPoint"])})
    countries = sorted({" ".join(s["country"].split()) for s in sites if s.get("country")})
    evidence: dict[str, Any] = {
        "subtypes": {t: [[e.source, e.text] for e in ev] for t, ev in tags.subtypes.items()},
        "therapies": {t: [[e.source, e.text] for e in ev] for t, ev in tags.therapies.items()},
    }
    if tags.not_myositis:  # [source, words, reason] of each look-alike read
        evidence["not_myositis"] = [[n.source, n.text, n.reason] for n in tags.not_myositis]
    if tags.not_tested:  # [reason, intervention name] of each intervention set aside
        evidence["not_tested"] = [[e.source, e.text] for e in tags.not_tested]
    return {
        "subtypes": join_list(tags.subtypes),
        "therapies": join_list(tags.therapies),
        "tag_evidence": compact_json(evidence).decode(),
        "recruiting": get(p, "statusModule.overallStatus") == "RECRUITING",
        "children": bool(children),
        "min_age_years": minimum,
        "max_age_years": maximum,
        "recruiting_countries": join_list(countries),
        "recruiting_sites": compact_json(sites).decode() if sites else None,
        "site_points": compact_json(points).decode() if points else None,
    }


def results_overdue(status: str | None, has_results: bool, primary_completion: str | None,
                    completion: str | None, today: date,
                    study_type: str | None = "INTERVENTIONAL") -> bool:
    """An interventional study completed more than 12 months ago (by its primary completion,
    else completion date) with no results posted. A partial date counts from the end of the
    period it names. Observational studies are not expected to post results here."""
    deadline = results_deadline(status, has_results, primary_completion, completion,
                                study_type)
    return deadline is not None and today > deadline


def results_deadline(status: str | None, has_results: bool, primary_completion: str | None,
                     completion: str | None,
                     study_type: str | None = "INTERVENTIONAL") -> date | None:
    """The day results fall due (12 months after completion) for a completed interventional
    study without results; None when none are expected or the date cannot be read."""
    if status != "COMPLETED" or has_results or study_type != "INTERVENTIONAL":
        return None
    when = primary_completion or completion
    end = _period_end(when) if when else None
    if end is None or end.year >= date.max.year:
        return None  # unreadable, or a year no one will reach (date() cannot count past it)
    try:
        return end.replace(year=end.year + 1)
    except ValueError:  # 29 February
        return end.replace(year=end.year + 1, day=28)


def _period_end(partial: str) -> date | None:
    parts = partial.split("-")
    try:
        if len(parts) == 1:
            return date(int(parts[0]), 12, 31)
        year, month = int(parts[0]), int(parts[1])
        if len(parts) == 2:
            following = date(year + (month == 12), month % 12 + 1, 1)
            return date.fromordinal(following.toordinal() - 1)
        return date(year, month, int(parts[2]))
    except ValueError:
        return None
