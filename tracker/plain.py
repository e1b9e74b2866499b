"""Say each change as a sentence a patient can read.

`explain` is pure: a `Change` from the diff, plus the study's records before and after (for
context such as why a trial stopped), in; one short line out, written for someone with
myositis reading at about age 12. The technical summary stays beside it for researchers.
A status says what it means for joining; a sponsor's reason for stopping is quoted as
written, with plain words for the jargon it uses; a dummy treatment is never "a treatment".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tracker.diff import Change
from tracker.record import (
    PHASE_LABELS,
    Record,
    get,
    site_place,
    status_label,
    status_meaning,
    status_words,
)
from tracker.tags import age_in_years

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

# How a new status is announced, for a trial and for one of its sites alike; any other
# status by its plain words (record.PLAIN_STATUS). Its meaning for joining follows.
BECAME = {
    "RECRUITING": "Now recruiting",
    "ACTIVE_NOT_RECRUITING": "No longer recruiting",
    "COMPLETED": "The trial has finished",
    "APPROVED_FOR_MARKETING": "Approved for marketing",
}
STOPPED = ("TERMINATED", "SUSPENDED", "WITHDRAWN")
TAKES_PART = ("TERMINATED", "SUSPENDED")  # statuses that change things for those taking part
TAKING_PART = "If you are taking part, talk to your study team about what this means for you"

# Words in a sponsor's reason for stopping (whyStopped), in plain words: (group, pattern,
# gloss, negatable). The first match of a group counts. A negatable gloss states a fact
# ("not enough people joined"), so it is left out when a "not" comes before it in the same
# clause ("not due to slow enrolment"); the others only define a word, which stays true.
_LEADING = (r"slow|slower|poor|low|lower|insufficient|inadequate|limited|lack of|lacking|"
            r"difficult\w*|failure to|failed to|unable to|inability to|not enough|too few|"
            r"challeng\w*")
_PEOPLE = r"enrol\w*|accru\w*|recruit\w*|participants?|patients?|subjects?|volunteers?"
STOP_REASONS: tuple[tuple[str, str, str, bool], ...] = (
    ("committee", r"\b(dsmb|dsmc|i?dmc|data (and )?safety monitoring|data monitoring|"
                  r"safety monitoring (board|committee))",
     "a data monitoring committee (such as a DSMB or DMC) is a group of independent experts "
     "who keep checking the trial's safety and results", False),
    ("futility", r"\bfutil(e|ity)\b",
     "futility means the trial was unlikely to show that the treatment works", False),
    ("efficacy", r"\b(lack of|no|insufficient|poor|limited|inadequate|not enough)\s+(\w+\s+)?"
                 r"(efficacy|effectiveness|benefit)\b",
     "the treatment did not seem to work well enough", True),
    ("efficacy", r"\befficacy\b", "efficacy means how well the treatment works", False),
    ("enrolment", rf"\b({_LEADING})\b(\W+\w+){{0,2}}?\W+({_PEOPLE})\b|"
                  rf"\b(no|zero|few)\s+(\w+\s+)?(participants?|patients?|subjects?)\s+"
                  rf"(were\s+|was\s+)?(enrol\w*|recruit\w*|accru\w*)|"
                  r"\b(enrol\w*|accrual|recruitment|recruiting)\b(\W+\w+){0,2}?\W+"
                  r"(slow\w*|poor|low|insufficient|inadequate|difficult\w*|challeng\w*|"
                  r"below|lower than)\b",
     "not enough people joined the trial", True),
    ("sponsor", r"\b(business|commercial|strategic|corporate|company|sponsor'?s?)\b"
                r"(\W+\w+){0,2}?\W+(decision|decided|reasons?|priorit\w*|considerations?)\b|"
                r"\bdecision\W+(\w+\W+){0,2}?(sponsor|company)\b|\bportfolio\b|\breprioriti\w*",
     "the company or group running the trial (the sponsor) decided this", True),
    ("sponsor", r"\bsponsor\b",
     "the sponsor is the company or group running the trial", False),
    ("funding", r"\b(fund\w*|financ\w*|budget\w*)\b",
     "funding is the money to run the trial", False),
    ("safety", r"(?<!data )(?<!and )\bsafety\b(?!\s+(monitoring|review|board|committee))",
     "safety is about whether the treatment could harm people", False),
    ("adverse", r"\badverse (events?|effects?|reactions?)|\bside effects?\b|\btoxicit\w*|"
                r"\bsaes?\b",
     "adverse events are unwanted or harmful things that happen to people in a trial, such "
     "as side effects", False),
    ("covid", r"\b(covid(-?19)?|coronavirus|sars-cov-2|pandemic)\b",
     "the COVID-19 pandemic made the trial hard to run", True),
    ("pi", r"\b(pi|principal investigator|investigator|study doctor)\b(\W+\w+){0,3}?\W+"
           r"(left|leaving|leaves|moved|moving|relocat\w*|retir\w*|depart\w*)\b|"
           r"\b(departure|relocation|retirement|loss|death) of (the )?(pi|principal "
           r"investigator|investigator)\b",
     "the doctor leading the trial left", True),
    ("pi", r"\b(pi|principal investigator)\b",
     "the principal investigator (PI) is the doctor leading the trial", False),
    ("supply", r"\b(drug|product|medication|medicine|treatment|ip)\s+(supply|supplies|shortage|"
               r"availability|unavailab\w*|not available|no longer available|expir\w*)|"
               r"\b(supply|supplies|shortage|manufactur\w*)\b",
     "there was a problem getting enough of the treatment", True),
    ("interim", r"\binterim analys[ie]s\b",
     "an interim analysis is a look at the results partway through the trial", False),
    ("ethics", r"\b(irb|ethics committee|institutional review board)\b",
     "an ethics committee (IRB) checks that a trial is safe and fair for the people in it",
     False),
    ("regulator", r"\bclinical hold\b",
     "a clinical hold is when the US medicines agency (FDA) orders a trial to stop or pause",
     False),
    ("regulator", r"\b(fda|ema|mhra|regulator\w*|regulatory|health authorit\w*)\b",
     "a regulator is the government agency that checks medicines are safe, such as the FDA "
     "in the United States", False),
)
NEGATION = re.compile(r"\b(not|unrelated|without|nor)\b")
CLAUSE_END = re.compile(r"[.;,:()\[\]]")

# Dummy treatments given for comparison; a name that joins one to a real treatment
# ("Placebo + methotrexate") is a treatment.
DUMMY = re.compile(r"\b(placebos?|sham|vehicle)\b", re.IGNORECASE)
JOINED = re.compile(r"\+|&|/|\b(plus|and|with|or)\b", re.IGNORECASE)
DUMMY_WORDS = "A dummy treatment (one with no medicine in it, used for comparison)"
DATE_NAMES = {
    "startDateStruct": "start",
    "primaryCompletionDateStruct": "finish collecting its main results",
    "completionDateStruct": "finish",
}


def explain(change: Change, old: Record | None = None, new: Record | None = None, *,
            known_names: Mapping[str, str] | None = None) -> str:
    """The change in one line of plain words, whatever the registry's free text holds
    (newlines in whyStopped, titles, names). `known_names` maps drug codes to the names
    people know ("CP-690550" -> "tofacitinib"); a treatment named by a code gets its name."""
    return " ".join(_sentence(change, new, known_names or {}).split())


def _sentence(change: Change, new: Record | None, known_names: Mapping[str, str]) -> str:
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
        return _interventions(change, known_names)
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
        sentence = _became(site.get("status"), f" at the site in {_where(site)}")
        return f"{sentence}. {TAKING_PART}" if site.get("status") in TAKES_PART else sentence
    if change.field == "whyStopped":
        return f"Reason given for stopping: {_reason(str(change.new or ''))}"
    if change.field == "lastKnownStatus":
        return f"Last known status: {status_label(change.new).lower()}"
    status = str(change.new) if change.new else None
    parts = [_became(status)]
    why = " ".join(str(get(new, "protocolSection.statusModule.whyStopped") or "").split())
    if why and status in STOPPED:
        parts.append(f"Reason given: {_reason(why)}")
    if status in TAKES_PART:
        parts.append(TAKING_PART)
    return ". ".join(parts)


def _became(status: str | None, where: str = "") -> str:
    """ "Paused: nobody new can join for now", or with `where` " at the site in Lyon, France"
    after the first words: a site's status reads as the trial's does."""
    meaning = status_meaning(status)
    headline = BECAME.get(status or "", status_words(status)) + where
    return f"{headline}: {meaning}" if meaning else headline


def _reason(why: str) -> str:
    """The sponsor's reason quoted as written, then plain words for the jargon in it."""
    said = " ".join(why.split())
    glosses = stop_glosses(said)
    quoted = f"\u201c{said}\u201d"
    return f"{quoted}. In plain words: {'; '.join(glosses)}" if glosses else quoted


def stop_glosses(why: str) -> list[str]:
    """Plain words for what a reason for stopping says, in STOP_REASONS order; [] when it
    uses none of the words known there."""
    text = why.casefold()
    found: list[str] = []
    done: set[str] = set()
    for group, pattern, gloss, negatable in STOP_REASONS:
        if group in done:
            continue
        match = re.search(pattern, text)
        if match is None:
            continue
        if negatable:
            clause = CLAUSE_END.split(text[:match.start()])[-1]
            if NEGATION.search(clause):
                continue
        found.append(gloss)
        done.add(group)
    return found


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


SEXES = {"FEMALE": "women only", "MALE": "men only", "ALL": "people of any sex"}


def _eligibility(change: Change) -> str:
    """What changed in the structured fields, old to new; the criteria text only as changed."""
    old, new = change.old, change.new
    if change.field in ("minimumAge", "maximumAge"):
        which = "Minimum age" if change.field == "minimumAge" else "Maximum age"
        was = f" (was {_age(old)})" if old else " (there was none before)"
        if not new:
            none = "There is no minimum age" if change.field == "minimumAge" else \
                "There is no upper age limit"
            return f"{none} any more (it was {_age(old)})" if old else f"{none} any more"
        years, before = age_in_years(new), age_in_years(old)
        # No minimum before means children could already take part: nothing newly opened.
        if change.field == "minimumAge" and years is not None and years < 18 \
                and before is not None and before >= 18:
            return f"Now open to children from {_age(new)}{was}"
        return f"{which} is now {_age(new)}{was}"
    if change.field == "sex":
        if str(new) not in SEXES:
            return "Who can take part changed: the trial no longer says which sexes can join"
        was = f" (was open to {SEXES[str(old)]})" if str(old) in SEXES else ""
        return f"Now open to {SEXES[str(new)]}{was}"
    if change.field == "healthyVolunteers":
        if new is True:
            return "People without myositis (healthy volunteers) can now take part too"
        if new is False and old is True:
            return ("People without myositis (healthy volunteers) can no longer take part: "
                    "the trial is only for people with the condition")
        if new is False:
            return "The trial now says it is only for people with the condition"
        return "The trial no longer says whether people without myositis can take part"
    return "Who can take part has changed"


def _age(age: Any) -> str:
    """ "18 Years" -> "18 years", as the registry gives it otherwise."""
    return " ".join(str(age).split()).lower()


def _interventions(change: Change, known_names: Mapping[str, str]) -> str:
    if change.field == "armGroups":
        return "The trial's treatment groups changed"
    item = change.new or change.old or {}
    name = treatment_name(item, known_names)
    if is_dummy(str(item.get("name") or "")):
        if change.old is None:
            return f"{DUMMY_WORDS} was added: {name}"
        if change.new is None:
            return f"{DUMMY_WORDS} was removed: {name}"
        return f"Details of the dummy treatment used for comparison changed: {name}"
    if change.old is None:
        return f"A treatment was added: {name}"
    if change.new is None:
        return f"A treatment was removed: {name}"
    return f"Details of a treatment changed: {name}"


def is_dummy(name: str) -> bool:
    """A placebo, sham or vehicle on its own: given for comparison, no treatment."""
    return bool(DUMMY.search(name)) and not JOINED.search(name)


def treatment_name(item: dict[str, Any], known_names: Mapping[str, str]) -> str:
    """The intervention's name as written, with the name people know for a drug code in it
    (or in its otherNames): "CP-690550 (tofacitinib)". The whole name, each word of it and
    each other name are looked up, ignoring case, spaces and hyphens; a known name already
    in the name is not repeated."""
    name = " ".join(str(item.get("name") or "a treatment").split())
    if not known_names:
        return name
    codes = {_code(code): known for code, known in known_names.items()}
    words = [name, *re.split(r"[\s,;()\[\]]+", name),
             *(str(n) for n in item.get("otherNames") or [])]
    for word in words:
        known = codes.get(_code(word)) if _code(word) else None
        if known and known.casefold() not in name.casefold():
            return f"{name} ({known})"
    return name


def _code(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


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
