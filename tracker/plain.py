"""Say each change as a sentence a patient can read.

`explain` is pure: a `Change` from the diff, plus the study's records before and after (for
context such as why a trial stopped), in; one short sentence out. The technical summary stays
beside it for researchers.
"""

from __future__ import annotations

from typing import Any

from tracker.diff import Change
from tracker.record import PHASE_LABELS, Record, get, site_place, status_label
from tracker.tags import age_in_years

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

STATUS_SENTENCES = {
    "RECRUITING": "Now recruiting",
    "NOT_YET_RECRUITING": "Not recruiting yet: the trial is expected to open",
    "ACTIVE_NOT_RECRUITING": "No longer recruiting: the trial goes on with the people "
                             "already enrolled",
    "ENROLLING_BY_INVITATION": "Enrolling by invitation only",
    "COMPLETED": "The trial has finished",
    "TERMINATED": "Stopped early",
    "SUSPENDED": "Paused",
    "WITHDRAWN": "Withdrawn before anyone took part",
    "UNKNOWN": "Status unknown: the sponsor has not confirmed it recently",
    "AVAILABLE": "Available through expanded access",
    "NO_LONGER_AVAILABLE": "No longer available through expanded access",
    "TEMPORARILY_NOT_AVAILABLE": "Temporarily not available through expanded access",
    "APPROVED_FOR_MARKETING": "Approved for marketing",
    "WITHHELD": "Details withheld by the sponsor",
}
DATE_NAMES = {
    "startDateStruct": "start",
    "primaryCompletionDateStruct": "finish collecting its main results",
    "completionDateStruct": "finish",
}


def explain(change: Change, old: Record | None = None, new: Record | None = None) -> str:
    # One line, whatever the registry's free text holds (newlines in whyStopped, titles, names).
    return " ".join(_sentence(change, new).split())


def _sentence(change: Change, new: Record | None) -> str:
    kind = change.kind
    if kind == "new":
        # Not "registered": a trial also appears when it starts to match the query, or returns.
        return "Now listed among the tracked myositis trials"
    if kind == "removed":
        return "No longer listed among the tracked myositis trials"
    if kind == "status":
        return _status(change, new)
    if kind == "results_posted":
        return "Results were posted"
    if kind == "site_added":
        site = change.new or {}
        if site.get("status") == "RECRUITING":
            return f"A new site is recruiting in {_where(site)}"
        return f"A new site opened in {_where(site)}"
    if kind == "site_removed":
        return f"The site in {_where(change.old or {})} is no longer listed"
    if kind == "enrollment":
        return _enrollment(change)
    if kind == "dates":
        return _dates(change)
    if kind == "eligibility":
        return _eligibility(change)
    if kind == "interventions":
        return _interventions(change)
    if kind == "outcomes":
        return "What the trial measures has changed"
    if kind == "phase":
        phases = [p for p in change.new or [] if p != "NA"]
        if not phases:
            return "Now listed without a trial phase"
        return f"Now listed as {'/'.join(PHASE_LABELS.get(p, p) for p in phases)}"
    if kind == "contacts":
        return "Contact details changed"
    if kind == "sponsor":
        if change.field == "leadSponsor" and change.new:
            return f"New lead sponsor: {change.new}"
        return "The organisations running the trial changed"
    if kind == "title":
        if change.field == "briefTitle" and change.new:
            return f"New title: {change.new}"
        return "The trial's title was updated"
    return "Other details of the trial were updated"


def _status(change: Change, new: Record | None) -> str:
    if change.field == "locations.status":
        site = change.new or {}
        if site.get("status") == "RECRUITING":
            return f"The site in {_where(site)} is now recruiting"
        return f"The site in {_where(site)} is now: {status_label(site.get('status')).lower()}"
    if change.field == "whyStopped":
        return f"Reason given for stopping: {change.new}"
    if change.field == "lastKnownStatus":
        return f"Last known status: {status_label(change.new).lower()}"
    sentence = STATUS_SENTENCES.get(str(change.new), f"Status: {status_label(change.new)}")
    why = get(new, "protocolSection.statusModule.whyStopped") if new else None
    why = " ".join(str(why or "").split())
    if why and change.new in ("TERMINATED", "SUSPENDED", "WITHDRAWN"):
        # "Sponsor decision" -> "sponsor decision", but an acronym ("DSMB advice") stays.
        acronym = len(why) > 1 and why[0].isupper() and why[1].isupper()
        sentence += f": {why if acronym else why[0].lower() + why[1:]}"
    return sentence


def _where(site: dict[str, Any]) -> str:
    place = ", ".join(" ".join(str(p).split()) for p in (site.get("city"), site.get("country"))
                      if p and str(p).strip())
    return place or site_place(site)


def _enrollment(change: Change) -> str:
    old, new = change.old or {}, change.new or {}
    count = new.get("count")
    if count is None:
        return "The number of participants is no longer given"
    if new.get("type") == "ACTUAL":
        return f"{_people(count)} took part"
    if old.get("count") is not None and old.get("count") != count:
        return f"Now plans to enrol {_people(count)} (was {_number(old['count'])})"
    return f"Plans to enrol {_people(count)}"


def _people(count: Any) -> str:
    return f"{_number(count)} {'person' if count == 1 else 'people'}"


def _number(count: Any) -> str:
    return f"{count:,}" if isinstance(count, int) else str(count)


def _dates(change: Change) -> str:
    old, new = change.old or {}, change.new or {}
    what = DATE_NAMES.get(change.field, "finish")
    when = new.get("date")
    if not when:
        return f"No date is given any more for when the trial will {what}"
    if new.get("type") == "ACTUAL":
        past = {"start": "Started", "finish": "Finished",
                "finish collecting its main results": "Finished collecting its main results"}
        return f"{past[what]} {_spoken(when)}"
    shift = _shift(old.get("date"), when)
    if shift:
        return f"Expected to {what} {shift} than planned: {_spoken(when)}"
    return f"Expected to {what} {_spoken(when)}"


def _eligibility(change: Change) -> str:
    if change.field == "minimumAge":
        years = age_in_years(change.new)
        was = age_in_years(change.old)
        # No minimum before means children could already take part: nothing newly opened.
        if years is not None and years < 18 and was is not None and was >= 18:
            return f"Now open to children from {change.new.lower()}"
        return f"Minimum age is now {change.new.lower()}" if change.new else \
            "There is no minimum age any more"
    if change.field == "maximumAge":
        return f"Maximum age is now {change.new.lower()}" if change.new else \
            "There is no upper age limit any more"
    if change.field == "sex":
        return {"FEMALE": "Now open to women only", "MALE": "Now open to men only",
                "ALL": "Now open to people of any sex"}.get(str(change.new),
                                                            "Who can take part changed")
    return "Who can take part has changed"


def _interventions(change: Change) -> str:
    if change.field == "armGroups":
        return "The trial's treatment groups changed"
    item = change.new or change.old or {}
    name = item.get("name", "a treatment")
    if change.old is None:
        return f"A treatment was added: {name}"
    if change.new is None:
        return f"A treatment was removed: {name}"
    return f"Details of a treatment changed: {name}"


def _spoken(partial: str) -> str:
    """"2026-11" -> "November 2026"; "2026-11-05" -> "5 November 2026"; "2026" -> "2026"."""
    parts = partial.split("-")
    try:
        if len(parts) >= 2:
            month = MONTHS[int(parts[1]) - 1]
            return f"{int(parts[2])} {month} {parts[0]}" if len(parts) == 3 else \
                f"{month} {parts[0]}"
    except (ValueError, IndexError):
        pass
    return partial


def _shift(old: str | None, new: str | None) -> str:
    """How far a planned date moved: "8 months later", "1 month earlier", or "" if it did not
    move by a whole month (or cannot be compared). A year-only date has no month to count
    from, so it gives only the direction ("later"), never invented precision."""
    def year_month(partial: str | None) -> tuple[int, int | None] | None:
        if not partial:
            return None
        parts = partial.split("-")
        try:
            return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)
        except ValueError:
            return None

    a, b = year_month(old), year_month(new)
    if a is None or b is None:
        return ""
    if a[1] is None or b[1] is None:
        years = b[0] - a[0]
        return "" if not years else "later" if years > 0 else "earlier"
    months = (b[0] - a[0]) * 12 + b[1] - a[1]
    if not months:
        return ""
    n = abs(months)
    return f"{n} {'month' if n == 1 else 'months'} {'later' if months > 0 else 'earlier'}"
