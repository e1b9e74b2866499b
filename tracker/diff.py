"""Compare two versions of one study record and say, field by field, what changed.

`diff` is pure: two raw API records in, a list of typed `Change`s out. Noise is not change:
if `lastUpdatePostDate` did not move, the registry reformatted the record on its own (or only
the dataset's versionHolder moved), and `diff` returns nothing. `derivedSection` is written by
the registry, not the sponsor, so it never yields a change either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tracker.models import ChangeKind
from tracker.record import (
    PHASE_LABELS,
    Record,
    get,
    last_update_posted,
    phases_label,
    site_key,
    site_place,
    status_label,
)
from tracker.text import shorten

KINDS = tuple(kind.value for kind in ChangeKind)


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    field: str
    old: Any
    new: Any
    summary: str


def diff(old: Record, new: Record) -> list[Change]:
    """Every meaningful change from `old` to `new`, in a fixed, readable order."""
    if last_update_posted(old) == last_update_posted(new):
        return []
    o, n = old.get("protocolSection", {}), new.get("protocolSection", {})
    changes: list[Change] = []
    for detect in (_status, _sites, _enrollment, _dates, _eligibility, _interventions,
                   _outcomes, _phase, _contacts, _sponsor, _title, _other_protocol):
        changes.extend(detect(o, n))
    changes.extend(_results(old, new))
    changes.extend(_other_sections(old, new))
    return changes


def new_study(study: Record) -> Change:
    p = study.get("protocolSection", {})
    status = status_label(get(p, "statusModule.overallStatus"))
    title = shorten(get(p, "identificationModule.briefTitle") or "", 100)
    return Change(ChangeKind.NEW, "study", None, get(p, "identificationModule.nctId"),
                  f"New trial: {title} ({status})")


def removed_study(nct_id: str, reason: str) -> Change:
    return Change(ChangeKind.REMOVED, "study", nct_id, None, f"Removed: {reason}")


# --- one detector per kind -------------------------------------------------------------

def _status(o: Record, n: Record) -> Iterable[Change]:
    before, after = get(o, "statusModule.overallStatus"), get(n, "statusModule.overallStatus")
    why = get(n, "statusModule.whyStopped")
    if before != after:
        summary = f"Status: {status_label(before)} -> {status_label(after)}"
        if why and why != get(o, "statusModule.whyStopped"):
            summary += f" (why stopped: {shorten(why, 80)})"
        lk_after = get(n, "statusModule.lastKnownStatus")
        if lk_after and lk_after != before:
            summary += f" (last known: {status_label(lk_after)})"
        yield Change(ChangeKind.STATUS, "overallStatus", before, after, summary)
        return  # lastKnownStatus exists only while UNKNOWN: it comes and goes with the status
    if why != get(o, "statusModule.whyStopped") and why:
        yield Change(ChangeKind.STATUS, "whyStopped", get(o, "statusModule.whyStopped"), why,
                     f"Why stopped: {shorten(why, 100)}")
    lk_before = get(o, "statusModule.lastKnownStatus")
    lk_after = get(n, "statusModule.lastKnownStatus")
    if lk_before != lk_after and (lk_before or lk_after):
        yield Change(ChangeKind.STATUS, "lastKnownStatus", lk_before, lk_after,
                     f"Last known status: {status_label(lk_before)} -> {status_label(lk_after)}")


def _sites(o: Record, n: Record) -> Iterable[Change]:
    before = _by_key(get(o, "contactsLocationsModule.locations", []), site_key)
    after = _by_key(get(n, "contactsLocationsModule.locations", []), site_key)
    for key, site in after.items():
        if key not in before:
            yield Change(ChangeKind.SITE_ADDED, "locations", None, _site_brief(site),
                         f"New site: {site_place(site)}")
    for key, site in before.items():
        if key not in after:
            yield Change(ChangeKind.SITE_REMOVED, "locations", _site_brief(site), None,
                         f"Site removed: {site_place(site)}")
    details: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = []
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        if a.get("status") != b.get("status"):
            yield Change(ChangeKind.STATUS, "locations.status", _site_brief(a), _site_brief(b),
                         f"Site {site_place(b)}: {status_label(a.get('status'))} -> "
                         f"{status_label(b.get('status'))}")
        if a.get("contacts") != b.get("contacts"):
            yield Change(ChangeKind.CONTACTS, "locations.contacts", _names(a.get("contacts")),
                         _names(b.get("contacts")), f"Site contacts changed: {site_place(b)}")
        rest = _changed_keys(a, b, ignore={"status", "contacts"})
        if rest:
            details.append((a, b, rest))
    if len(details) == 1:
        a, b, rest = details[0]
        yield Change(ChangeKind.OTHER, "locations", _site_brief(a), _site_brief(b),
                     f"Site details updated ({', '.join(rest)}): {site_place(b)}")
    elif details:
        # One line, not one per site: the registry re-geocodes sites in bulk.
        keys = sorted({k for _, _, rest in details for k in rest})
        yield Change(ChangeKind.OTHER, "locations", [_site_brief(a) for a, _, _ in details],
                     [_site_brief(b) for _, b, _ in details],
                     f"Site details updated at {len(details)} sites ({', '.join(keys)})")


def _enrollment(o: Record, n: Record) -> Iterable[Change]:
    a, b = get(o, "designModule.enrollmentInfo") or {}, get(n, "designModule.enrollmentInfo") or {}
    if a != b:
        yield Change(ChangeKind.ENROLLMENT, "enrollmentInfo", a or None, b or None,
                     f"Enrollment: {_count(a)} -> {_count(b)}")


DATE_FIELDS = {
    "startDateStruct": "Start",
    "primaryCompletionDateStruct": "Primary completion",
    "completionDateStruct": "Completion",
}


def _dates(o: Record, n: Record) -> Iterable[Change]:
    for field, label in DATE_FIELDS.items():
        a = get(o, f"statusModule.{field}") or {}
        b = get(n, f"statusModule.{field}") or {}
        if a == b:
            continue
        show_type = a.get("type") != b.get("type")
        yield Change(ChangeKind.DATES, field, a or None, b or None,
                     f"{label} {_date(a, show_type)} -> {_date(b, show_type)}")


ELIGIBILITY_LABELS = {
    "eligibilityCriteria": "Eligibility criteria changed",
    "minimumAge": "Minimum age",
    "maximumAge": "Maximum age",
    "sex": "Sex",
    "healthyVolunteers": "Healthy volunteers",
}


def _eligibility(o: Record, n: Record) -> Iterable[Change]:
    a, b = o.get("eligibilityModule") or {}, n.get("eligibilityModule") or {}
    # stdAges is computed by the registry from the age limits, which are reported themselves.
    for key in _changed_keys(a, b, ignore={"stdAges"}):
        before, after = a.get(key), b.get(key)
        label = ELIGIBILITY_LABELS.get(key)
        if key == "eligibilityCriteria":
            summary = "Eligibility criteria changed"
        elif label:
            summary = f"{label}: {_plain(before)} -> {_plain(after)}"
        else:
            summary = f"Eligibility changed: {key}"
        yield Change(ChangeKind.ELIGIBILITY, key, before, after, summary)


def _interventions(o: Record, n: Record) -> Iterable[Change]:
    def name(i: dict[str, Any]) -> str:
        kind = str(i.get("type") or "").replace("_", " ").capitalize()
        return f"{kind}: {i.get('name')}" if kind else str(i.get("name"))

    yield from _keyed_list(ChangeKind.INTERVENTIONS, "interventions", name,
        get(o, "armsInterventionsModule.interventions", []),
        get(n, "armsInterventionsModule.interventions", []),
        "Intervention")
    yield from _keyed_list(ChangeKind.INTERVENTIONS, "armGroups", lambda a: str(a.get("label")),
        get(o, "armsInterventionsModule.armGroups", []),
        get(n, "armsInterventionsModule.armGroups", []),
        "Arm")


def _outcomes(o: Record, n: Record) -> Iterable[Change]:
    for field, label in (("primaryOutcomes", "Primary outcome"),
                         ("secondaryOutcomes", "Secondary outcome"),
                         ("otherOutcomes", "Other outcome")):
        yield from _keyed_list(ChangeKind.OUTCOMES, field,
                               lambda m: shorten(str(m.get("measure")), 100),
            get(o, f"outcomesModule.{field}", []), get(n, f"outcomesModule.{field}", []), label)


def _phase(o: Record, n: Record) -> Iterable[Change]:
    a, b = get(o, "designModule.phases"), get(n, "designModule.phases")
    if (a or []) != (b or []):
        yield Change(ChangeKind.PHASE, "phases", a, b,
                     f"Phase: {phases_label(a)} -> {phases_label(b)}")


def _contacts(o: Record, n: Record) -> Iterable[Change]:
    for field, label in (("centralContacts", "Central contacts"),
                         ("overallOfficials", "Overall officials")):
        a = get(o, f"contactsLocationsModule.{field}", [])
        b = get(n, f"contactsLocationsModule.{field}", [])
        if (a or []) != (b or []):
            yield Change(ChangeKind.CONTACTS, field, _names(a), _names(b), f"{label} changed")


def _sponsor(o: Record, n: Record) -> Iterable[Change]:
    a = get(o, "sponsorCollaboratorsModule.leadSponsor.name")
    b = get(n, "sponsorCollaboratorsModule.leadSponsor.name")
    if a != b:
        yield Change(ChangeKind.SPONSOR, "leadSponsor", a, b,
                     f"Lead sponsor: {_text(a)} -> {_text(b)}")
    yield from _keyed_list(ChangeKind.SPONSOR, "collaborators", lambda c: str(c.get("name")),
        get(o, "sponsorCollaboratorsModule.collaborators", []),
        get(n, "sponsorCollaboratorsModule.collaborators", []), "Collaborator")
    a_rp = get(o, "sponsorCollaboratorsModule.responsibleParty")
    b_rp = get(n, "sponsorCollaboratorsModule.responsibleParty")
    if a_rp != b_rp:
        yield Change(ChangeKind.SPONSOR, "responsibleParty", a_rp, b_rp,
                     "Responsible party changed")


def _title(o: Record, n: Record) -> Iterable[Change]:
    for field, label in (("briefTitle", "Title"), ("officialTitle", "Official title"),
                         ("acronym", "Acronym")):
        a = get(o, f"identificationModule.{field}")
        b = get(n, f"identificationModule.{field}")
        if a != b:
            yield Change(ChangeKind.TITLE, field, a, b,
                         f"{label}: {shorten(_text(a), 80)} -> {shorten(_text(b), 80)}")


# Keys each detector above owns; everything else in protocolSection is reported as `other`.
COVERED = {
    "identificationModule": {"briefTitle", "officialTitle", "acronym", "nctId"},
    "statusModule": {"overallStatus", "lastKnownStatus", "whyStopped", *DATE_FIELDS,
                     # routine bookkeeping, not a change to the trial:
                     "lastUpdateSubmitDate", "lastUpdatePostDateStruct", "statusVerifiedDate",
                     "resultsFirstSubmitDate", "resultsFirstSubmitQcDate",
                     "resultsFirstPostDateStruct"},
    "sponsorCollaboratorsModule": {"leadSponsor", "collaborators", "responsibleParty"},
    "designModule": {"phases", "enrollmentInfo"},
    "armsInterventionsModule": {"interventions", "armGroups"},
    "outcomesModule": {"primaryOutcomes", "secondaryOutcomes", "otherOutcomes"},
    "contactsLocationsModule": {"locations", "centralContacts", "overallOfficials"},
}
MODULE_LABELS = {
    "identificationModule": "Identification",
    "statusModule": "Status details",
    "oversightModule": "Oversight",
    "descriptionModule": "Description",
    "conditionsModule": "Conditions and keywords",
    "designModule": "Study design",
    "referencesModule": "References",
    "ipdSharingStatementModule": "Data-sharing statement",
}


def _other_protocol(o: Record, n: Record) -> Iterable[Change]:
    for module in sorted(set(o) | set(n)):
        a, b = o.get(module) or {}, n.get(module) or {}
        if module == "eligibilityModule":
            continue  # every key there is eligibility
        keys = _changed_keys(a, b, ignore=COVERED.get(module, set()))
        if not keys:
            continue
        if module == "conditionsModule":
            yield from _conditions(a, b)
            continue
        label = MODULE_LABELS.get(module, module)
        yield Change(ChangeKind.OTHER, module, {k: a.get(k) for k in keys},
                     {k: b.get(k) for k in keys},
                     f"{label} updated ({', '.join(keys)})")


def _conditions(a: dict[str, Any], b: dict[str, Any]) -> Iterable[Change]:
    for field, label in (("conditions", "Condition"), ("keywords", "Keyword")):
        before, after = a.get(field) or [], b.get(field) or []
        added = [c for c in after if c not in before]
        dropped = [c for c in before if c not in after]
        if added:
            yield Change(ChangeKind.OTHER, field, before, after,
                         f"{label}s added: {', '.join(added)}")
        if dropped:
            yield Change(ChangeKind.OTHER, field, before, after,
                         f"{label}s removed: {', '.join(dropped)}")
    rest = _changed_keys(a, b, ignore={"conditions", "keywords"})
    if rest:
        yield Change(ChangeKind.OTHER, "conditionsModule", None, None,
                     f"Conditions and keywords updated ({', '.join(rest)})")


def _results(old: Record, new: Record) -> Iterable[Change]:
    before, after = old.get("resultsSection"), new.get("resultsSection")
    posted = get(new, "protocolSection.statusModule.resultsFirstPostDateStruct.date")
    if (not before and after) or (not old.get("hasResults") and new.get("hasResults")):
        yield Change(ChangeKind.RESULTS_POSTED, "resultsSection", None, posted,
                     f"Results posted{f' on {posted}' if posted else ''}")
    elif before and after and before != after:
        yield Change(ChangeKind.OTHER, "resultsSection", None, None,
                     f"Results updated ({', '.join(_changed_keys(before, after))})")


def _other_sections(old: Record, new: Record) -> Iterable[Change]:
    for section, label in (("documentSection", "Documents"), ("annotationSection", "Annotations")):
        a, b = old.get(section), new.get(section)
        if a != b:
            yield Change(ChangeKind.OTHER, section, None, None, f"{label} updated")


# --- helpers ------------------------------------------------------------------------------

def _keyed_list(kind: ChangeKind, field: str, key: Callable[[dict[str, Any]], str],
                before: list[dict[str, Any]] | None, after: list[dict[str, Any]] | None,
                label: str) -> Iterable[Change]:
    a, b = _by_key(before or [], key), _by_key(after or [], key)
    for k in b.keys() - a.keys():
        yield Change(kind, field, None, b[k], f"{label} added: {k}")
    for k in a.keys() - b.keys():
        yield Change(kind, field, a[k], None, f"{label} removed: {k}")
    for k in a.keys() & b.keys():
        if a[k] != b[k]:
            yield Change(kind, field, a[k], b[k], f"{label} changed: {k}")


def _by_key(items: list[dict[str, Any]] | None,
            key: Callable[[dict[str, Any]], str]) -> dict[str, dict[str, Any]]:
    """Items by identity; later duplicates keep their own entry with a numbered key."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        k = key(item)
        if k in out:
            n = 2
            while f"{k} #{n}" in out:
                n += 1
            k = f"{k} #{n}"
        out[k] = item
    return dict(sorted(out.items()))


def _changed_keys(a: dict[str, Any], b: dict[str, Any],
                  ignore: set[str] | None = None) -> list[str]:
    ignore = ignore or set()
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))


def _site_brief(site: dict[str, Any]) -> dict[str, Any]:
    return {k: site[k] for k in ("facility", "status", "city", "state", "country", "geoPoint")
            if k in site}


def _names(contacts: list[dict[str, Any]] | None) -> list[str]:
    return [str(c.get("name")) for c in contacts or [] if c.get("name")]


def _count(info: dict[str, Any]) -> str:
    if info.get("count") is None:
        return "not given"
    kind = info.get("type")
    return f"{info['count']} ({kind.lower()})" if kind else str(info["count"])


def _date(struct: dict[str, Any], show_type: bool) -> str:
    date = struct.get("date") or "none"
    if show_type and struct.get("type"):
        return f"{date} ({struct['type'].lower()})"
    return date


def _plain(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value in PHASE_LABELS:
        return PHASE_LABELS[value]
    return str(value).replace("_", " ").capitalize() if str(value).isupper() else str(value)


def _text(value: Any) -> str:
    """Free text (titles, names) as given: "PEPM" is an acronym, not an enum to reword."""
    return "none" if value is None else str(value)
