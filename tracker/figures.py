"""The report's figures about the whole set of tracked trials, each with a one-line reading.

Pure functions over `Study` rows (and, for planned enrolment, each study's oldest stored
record): no database, no clock. A `Figure` is what the page draws as a chart, the Markdown
prints as a table and the JSON carries as rows, so the three say the same thing. Readings
are written for someone of about 12: plain words, numbers spelled as numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from statistics import median
from typing import Any

from tracker.models import Study
from tracker.record import Record, get, phases_label, status_label
from tracker.tags import results_deadline
from tracker.text import split_list
from tracker.vocabulary import Vocabulary


@dataclass(frozen=True)
class Figure:
    """One chart's data: rows of (label, number), the column headings of its table, and what
    it says in words. `kind` is "bars" or "columns" (a time series)."""

    key: str
    title: str
    reading: str
    rows: list[tuple[str, int]]
    headings: tuple[str, str] = ("", "Trials")
    kind: str = "bars"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [list(row) for row in self.rows]
        data["headings"] = list(self.headings)
        return data


SPONSOR_TYPES = {
    "INDUSTRY": "Companies",
    "NIH": "Governments", "FED": "Governments", "OTHER_GOV": "Governments",
    "OTHER": "Universities and hospitals", "NETWORK": "Universities and hospitals",
    "INDIV": "Universities and hospitals",
}
NOT_STATED = "Not stated"

WAIT_BUCKETS = ("Before it was posted", "Within 3 months", "3 to 6 months", "6 to 12 months",
                "More than a year")
ENROLMENT_BUCKETS = ("Fewer than half", "Half to almost all", "All or more")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def count_tags(studies: Iterable[Study], column: str, order: list[str],
               vocabulary: Vocabulary) -> list[tuple[str, int]]:
    counts = Counter(tag for s in studies for tag in split_list(getattr(s, column)))
    return [(vocabulary.label(tag), counts[tag]) for tag in order if counts[tag]]


def recruiting_by_subtype(recruiting: list[Study], vocabulary: Vocabulary) -> Figure:
    rows = count_tags(recruiting, "subtypes", list(vocabulary.subtypes), vocabulary)
    if rows:
        top, n = max(rows, key=lambda row: row[1])
        reading = (f"Of {_plural(len(recruiting), 'trial')} recruiting now, the most are for "
                   f"{top.lower()} ({n}). A trial can be for more than one kind of myositis.")
    else:
        reading = "No tracked trial is recruiting now."
    return Figure("recruiting_by_subtype", "Trials recruiting now, by kind of myositis",
                  reading, rows, ("Kind of myositis", "Trials"))


def recruiting_by_country(recruiting: list[Study]) -> Figure:
    rows = Counter(c for s in recruiting for c in split_list(s.recruiting_countries)
                   ).most_common()
    if rows:
        reading = (f"Trials are recruiting in {_plural(len(rows), 'country', 'countries')}; "
                   f"the most in {rows[0][0]} ({_plural(rows[0][1], 'trial')}).")
    else:
        reading = "No recruiting trial lists a site that is open now."
    return Figure("recruiting_by_country", "Trials recruiting now, by country", reading,
                  rows, ("Country", "Trials"),
                  note="The chart shows the 15 countries with the most trials; the table "
                       "lists them all." if len(rows) > 15 else "")


def by_phase(studies: list[Study]) -> Figure:
    rows = Counter(phases_label(split_list(s.phases) or None) for s in studies).most_common()
    phased = [(label, n) for label, n in rows if "Phase" in label and label != "No phase"]
    unphased = len(studies) - sum(n for _, n in phased)
    if phased:
        reading = (f"{phased[0][0]} is the most common stage ({phased[0][1]} of "
                   f"{_plural(len(studies), 'trial')}).")
        if unphased:
            reading += (f" {_plural(unphased, 'trial has', 'trials have')} no phase: they "
                        "test something other than a new medicine (exercise or a device, say) "
                        "or follow how the disease develops.")
    elif rows:
        reading = "None of the tracked trials gives a phase."
    else:
        reading = "No trials are tracked yet."
    return Figure("by_phase", "All tracked trials by phase", reading, rows,
                  ("Phase", "Trials"))


def by_therapy(studies: list[Study], vocabulary: Vocabulary) -> Figure:
    rows = count_tags(studies, "therapies", vocabulary.therapy_names, vocabulary)
    reading = (f"The treatment tested most often is {rows[0][0].lower()} "
               f"({_plural(rows[0][1], 'trial')})." if rows
               else "No tracked trial names a treatment we can group.")
    return Figure("by_therapy", "All tracked trials by kind of treatment", reading,
                  sorted(rows, key=lambda row: -row[1]), ("Kind of treatment", "Trials"))


def per_quarter(studies: list[Study]) -> Figure:
    counts: Counter[tuple[int, int]] = Counter()
    for study in studies:
        posted = study.first_posted or ""
        if len(posted) >= 7 and posted[:4].isdigit() and posted[5:7].isdigit():
            counts[(int(posted[:4]), (int(posted[5:7]) - 1) // 3 + 1)] += 1
    rows: list[tuple[str, int]] = []
    if counts:
        year, quarter = min(counts)
        while (year, quarter) <= max(counts):
            rows.append((f"{year}-Q{quarter}", counts[(year, quarter)]))
            year, quarter = (year + 1, 1) if quarter == 4 else (year, quarter + 1)
    if len(rows) >= 8:
        recent, before = sum(n for _, n in rows[-4:]), sum(n for _, n in rows[-8:-4])
        reading = (f"{_plural(recent, 'trial was', 'trials were')} first posted in the last "
                   f"four quarters, against {before} in the four before.")
    elif rows:
        reading = f"{_plural(sum(n for _, n in rows), 'trial was', 'trials were')} posted " \
                  f"from {rows[0][0]} to {rows[-1][0]}."
    else:
        reading = "No tracked trial has a first-posted date."
    return Figure("per_quarter", "New trials per quarter (first posted)", reading, rows,
                  ("Quarter", "New trials"), kind="columns")


def sponsor_types(studies: list[Study]) -> Figure:
    """Industry, academic or government, from the lead sponsor's class on the registry."""
    counts = Counter(SPONSOR_TYPES.get(s.sponsor_class or "", NOT_STATED) for s in studies)
    order = ("Companies", "Universities and hospitals", "Governments", NOT_STATED)
    rows = [(label, counts[label]) for label in order if counts[label]]
    parts = [f"{counts[label]} by {label.lower()}" for label in order[:3] if counts[label]]
    reading = (f"Of {_plural(len(studies), 'trial')}, " + ", ".join(parts) + "."
               if parts else "No tracked trial names the kind of organisation running it.")
    return Figure("sponsor_types", "Who runs the trials", reading, rows,
                  ("Lead organisation", "Trials"))


def _day(partial: str | None, *, end: bool = False) -> date | None:
    """A registry date ("2024", "2024-05" or "2024-05-17") as a day (the middle of a month
    or year given without a day, the end with `end`)."""
    parts = (partial or "").split("-")
    try:
        numbers = [int(p) for p in parts]
        if len(numbers) == 3:
            return date(*numbers)
        if len(numbers) == 2:
            return date(numbers[0], numbers[1], 28 if end else 15)
        if len(numbers) == 1:
            return date(numbers[0], 12, 31) if end else date(numbers[0], 7, 1)
    except ValueError:
        return None
    return None


def months_between(start: date, end: date) -> float:
    return (end - start).days / 30.44


def wait_to_recruit(studies: list[Study]) -> Figure:
    """From registration (first submitted, else first posted) to the actual start date: the
    day the first person joined, as the registry defines it."""
    waits: list[float] = []
    for study in studies:
        registered = _day(study.first_submitted or study.first_posted)
        started = _day(study.start_date)
        if study.start_date_type == "ACTUAL" and registered and started:
            waits.append(months_between(registered, started))
    counts = Counter(_wait_bucket(m) for m in waits)
    rows = [(label, counts[label]) for label in WAIT_BUCKETS if waits]
    if waits:
        before = counts[WAIT_BUCKETS[0]]
        after = [m for m in waits if m >= 0]
        months = round(median(after)) if after else 0
        within = "a month" if months <= 1 else f"{months} months"
        middle = f"half of the others started within {within} of being registered" \
            if after else "none started after being registered"
        reading = (f"Of {_plural(len(waits), 'trial')} that have started, {before} began before "
                   f"being registered; {middle}.")
    else:
        reading = "No tracked trial gives an actual start date yet."
    return Figure("wait_to_recruit", "Time from registration to the first person joining",
                  reading, rows, ("Time", "Trials"),
                  extra={"trials": len(waits),
                         "median_months": round(median(waits), 1) if waits else None})


def _wait_bucket(months: float) -> str:
    if months < 0:
        return WAIT_BUCKETS[0]
    for limit, label in ((3, WAIT_BUCKETS[1]), (6, WAIT_BUCKETS[2]), (12, WAIT_BUCKETS[3])):
        if months <= limit:
            return label
    return WAIT_BUCKETS[4]


def enrolment(completed: list[Study], first_records: Mapping[str, Record]) -> Figure:
    """Planned against actual numbers of people, for completed trials. The planned number is
    the estimate in the oldest version the tracker holds; a trial first seen already
    completed has none, so the reading says how many could be compared."""
    actual = [s for s in completed if s.enrollment_type == "ACTUAL" and s.enrollment is not None]
    ratios: list[float] = []
    for study in actual:
        first = first_records.get(study.nct_id) or {}
        info = get(first, "protocolSection.designModule.enrollmentInfo") or {}
        planned = info.get("count") if isinstance(info, dict) else None
        if info.get("type") == "ESTIMATED" and isinstance(planned, int) and planned > 0:
            ratios.append((study.enrollment or 0) / planned)
    counts = Counter(ENROLMENT_BUCKETS[0] if r < 0.5 else ENROLMENT_BUCKETS[1] if r < 1
                     else ENROLMENT_BUCKETS[2] for r in ratios)
    rows = [(label, counts[label]) for label in ENROLMENT_BUCKETS if ratios]
    people = sorted(s.enrollment or 0 for s in actual)
    size = (f"Completed trials took in {round(median(people))} people each (the middle "
            f"value of {len(people)})." if people else "No completed trial gives its "
            "actual number of people yet.")
    if ratios:
        reached = counts[ENROLMENT_BUCKETS[2]]
        compared = (f" For {_plural(len(ratios), 'trial')} we know the number planned: "
                    f"{reached} reached it.")
    else:
        compared = (" The number planned is known only for trials the tracker watched "
                    "before they finished, and there are none yet.")
    return Figure("enrolment", "Completed trials: people planned and people who took part",
                  size + compared, rows, ("Share of the planned number", "Trials"),
                  extra={"completed_with_actual": len(people), "compared": len(ratios)})


def subtype_by_status(studies: list[Study], vocabulary: Vocabulary) -> dict[str, Any]:
    """For each subtype, how many trials are in each status, busiest status first."""
    statuses: Counter[str] = Counter()
    table: dict[str, Counter[str]] = {}
    for study in studies:
        status = status_label(study.overall_status)
        statuses[status] += 1
        for tag in split_list(study.subtypes):
            table.setdefault(tag, Counter())[status] += 1
    columns = [s for s, _ in statuses.most_common()]
    rows = [[vocabulary.label(tag), *[table[tag][c] for c in columns]]
            for tag in vocabulary.subtypes if tag in table]
    words = [[row[0], "; ".join(f"{n} {c.lower()}" for c, n in zip(columns, row[1:],
                                                                     strict=True) if n)]
             for row in rows]
    return {"columns": columns, "rows": rows, "words": words}


def overdue_results(studies: list[Study], today: date) -> list[dict[str, Any]]:
    """Completed interventional trials more than a year past their (primary) completion with
    no results posted, longest overdue first, with how long in months."""
    late = []
    for study in studies:
        deadline = results_deadline(study.overall_status, study.has_results,
                                    study.primary_completion_date, study.completion_date,
                                    study.study_type)
        if deadline is not None and today > deadline:
            months = int(months_between(deadline, today))
            late.append((deadline, study, months))
    late.sort(key=lambda item: (item[0], item[1].nct_id))
    return [{"nct_id": s.nct_id, "title": s.brief_title, "months": months,
             "overdue": _how_long(months), "due": deadline.isoformat()}
            for deadline, s, months in late]


def _how_long(months: int) -> str:
    if months < 1:
        return "less than a month"
    if months < 24:
        return _plural(months, "month")
    return f"{months // 12} years" + (f" and {_plural(months % 12, 'month')}"
                                      if months % 12 else "")
