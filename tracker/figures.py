"""The report's figures about the whole set of tracked trials, each with a one-line reading.

Pure functions over what the database counted (how many trials share each stored value) or a
few columns of its rows (and, for planned enrolment, each study's oldest stored record): no
database, no clock, so a figure is as cheap at 50,000 trials as at 50. A `Figure` is what
the page draws as a chart, the Markdown prints as a table and the JSON carries as rows, so
the three say the same thing. Readings are written for someone of about 12: plain words,
numbers spelled as numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from statistics import median
from typing import Any

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


def split_counts(lists: Mapping[str | None, int]) -> Counter[str]:
    """Counts of stored "|"-joined lists (one per distinct value) as counts of each item."""
    counts: Counter[str] = Counter()
    for joined, n in lists.items():
        for item in split_list(joined):
            counts[item] += n
    return counts


def count_tags(lists: Mapping[str | None, int], order: list[str],
               vocabulary: Vocabulary) -> list[tuple[str, int]]:
    counts = split_counts(lists)
    return [(vocabulary.label(tag), counts[tag]) for tag in order if counts[tag]]


def recruiting_by_subtype(subtypes: Mapping[str | None, int],
                          vocabulary: Vocabulary) -> Figure:
    """`subtypes`: how many recruiting trials carry each stored subtype list."""
    rows = count_tags(subtypes, list(vocabulary.subtypes), vocabulary)
    total = sum(subtypes.values())
    if rows:
        top, n = max(rows, key=lambda row: row[1])
        reading = (f"Of {_plural(total, 'trial')} recruiting now, the most are for "
                   f"{top.lower()} ({n}). A trial can be for more than one kind of myositis.")
    else:
        reading = "No tracked trial is recruiting now."
    return Figure("recruiting_by_subtype", "Trials recruiting now, by kind of myositis",
                  reading, rows, ("Kind of myositis", "Trials"))


def recruiting_by_country(countries: Mapping[str | None, int]) -> Figure:
    """`countries`: how many recruiting trials carry each stored list of countries."""
    rows = split_counts(countries).most_common()
    if rows:
        reading = (f"Trials are recruiting in {_plural(len(rows), 'country', 'countries')}; "
                   f"the most in {rows[0][0]} ({_plural(rows[0][1], 'trial')}).")
    else:
        reading = "No recruiting trial lists a site that is open now."
    return Figure("recruiting_by_country", "Trials recruiting now, by country", reading,
                  rows, ("Country", "Trials"),
                  note="The chart shows the 15 countries with the most trials; the table "
                       "lists them all." if len(rows) > 15 else "")


def by_phase(phases: Mapping[str | None, int]) -> Figure:
    """`phases`: how many trials carry each stored list of phases."""
    labels: Counter[str] = Counter()
    for joined, n in phases.items():
        labels[phases_label(split_list(joined) or None)] += n
    rows = labels.most_common()
    total = sum(phases.values())
    phased = [(label, n) for label, n in rows if "Phase" in label and label != "No phase"]
    unphased = total - sum(n for _, n in phased)
    if phased:
        reading = (f"{phased[0][0]} is the most common stage ({phased[0][1]} of "
                   f"{_plural(total, 'trial')}).")
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


def by_therapy(therapies: Mapping[str | None, int], vocabulary: Vocabulary) -> Figure:
    """`therapies`: how many trials carry each stored list of treatment classes."""
    rows = count_tags(therapies, vocabulary.therapy_names, vocabulary)
    reading = (f"The treatment tested most often is {rows[0][0].lower()} "
               f"({_plural(rows[0][1], 'trial')})." if rows
               else "No tracked trial names a treatment we can group.")
    return Figure("by_therapy", "All tracked trials by kind of treatment", reading,
                  sorted(rows, key=lambda row: -row[1]), ("Kind of treatment", "Trials"))


def per_quarter(first_posted: Mapping[str | None, int]) -> Figure:
    """`first_posted`: how many trials were first posted on each date."""
    counts: Counter[tuple[int, int]] = Counter()
    for posted, n in first_posted.items():
        posted = posted or ""
        if len(posted) >= 7 and posted[:4].isdigit() and posted[5:7].isdigit():
            counts[(int(posted[:4]), (int(posted[5:7]) - 1) // 3 + 1)] += n
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


def sponsor_types(classes: Mapping[str | None, int]) -> Figure:
    """Industry, academic or government, from the lead sponsor's class on the registry
    (`classes`: how many trials have each)."""
    counts: Counter[str] = Counter()
    for sponsor_class, n in classes.items():
        counts[SPONSOR_TYPES.get(sponsor_class or "", NOT_STATED)] += n
    total = sum(classes.values())
    order = ("Companies", "Universities and hospitals", "Governments", NOT_STATED)
    rows = [(label, counts[label]) for label in order if counts[label]]
    parts = [f"{counts[label]} by {label.lower()}" for label in order[:3] if counts[label]]
    reading = (f"Of {_plural(total, 'trial')}, " + ", ".join(parts) + "."
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


WAIT_COLUMNS = ("first_submitted", "first_posted", "start_date", "start_date_type")


def wait_to_recruit(rows: Iterable[tuple[Any, ...]]) -> Figure:
    """From registration (first submitted, else first posted) to the actual start date: the
    day the first person joined, as the registry defines it. `rows` hold WAIT_COLUMNS."""
    waits: list[float] = []
    for first_submitted, first_posted, start_date, start_type in rows:
        registered = _day(first_submitted or first_posted)
        started = _day(start_date)
        if start_type == "ACTUAL" and registered and started:
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


ENROLMENT_COLUMNS = ("nct_id", "enrollment", "enrollment_type")


def enrolment(completed: Iterable[tuple[Any, ...]], first_records: Mapping[str, Record]
              ) -> Figure:
    """Planned against actual numbers of people, for completed trials (`completed` holds
    ENROLMENT_COLUMNS). The planned number is the estimate in the oldest version the tracker
    holds; a trial first seen already completed has none, so the reading says how many could
    be compared."""
    actual = [(nct_id, n) for nct_id, n, kind in completed
              if kind == "ACTUAL" and isinstance(n, int)]
    ratios: list[float] = []
    for nct_id, joined in actual:
        first = first_records.get(nct_id) or {}
        info = get(first, "protocolSection.designModule.enrollmentInfo") or {}
        planned = info.get("count") if isinstance(info, dict) else None
        if info.get("type") == "ESTIMATED" and isinstance(planned, int) and planned > 0:
            ratios.append(joined / planned)
    counts = Counter(ENROLMENT_BUCKETS[0] if r < 0.5 else ENROLMENT_BUCKETS[1] if r < 1
                     else ENROLMENT_BUCKETS[2] for r in ratios)
    rows = [(label, counts[label]) for label in ENROLMENT_BUCKETS if ratios]
    people = sorted(n for _, n in actual)
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


def subtype_by_status(pairs: Mapping[tuple[str | None, str | None], int],
                      vocabulary: Vocabulary) -> dict[str, Any]:
    """For each subtype, how many trials are in each status, busiest status first (`pairs`:
    how many trials have each stored subtype list and status)."""
    statuses: Counter[str] = Counter()
    table: dict[str, Counter[str]] = {}
    for (subtypes, overall_status), n in pairs.items():
        status = status_label(overall_status)
        statuses[status] += n
        for tag in split_list(subtypes):
            table.setdefault(tag, Counter())[status] += n
    columns = [s for s, _ in statuses.most_common()]
    rows = [[vocabulary.label(tag), *[table[tag][c] for c in columns]]
            for tag in vocabulary.subtypes if tag in table]
    words = [[row[0], "; ".join(f"{n} {c.lower()}" for c, n in zip(columns, row[1:],
                                                                     strict=True) if n)]
             for row in rows]
    return {"columns": columns, "rows": rows, "words": words}


OVERDUE_COLUMNS = ("nct_id", "brief_title", "overall_status", "has_results",
                   "primary_completion_date", "completion_date", "study_type")


def overdue_results(rows: Iterable[tuple[Any, ...]], today: date) -> list[dict[str, Any]]:
    """Completed interventional trials more than a year past their (primary) completion with
    no results posted, longest overdue first, with how long in months (`rows` hold
    OVERDUE_COLUMNS)."""
    late = []
    for nct_id, title, status, has_results, primary, completion, study_type in rows:
        deadline = results_deadline(status, bool(has_results), primary, completion,
                                    study_type)
        if deadline is not None and today > deadline:
            late.append((deadline, nct_id, title, int(months_between(deadline, today))))
    late.sort()
    return [{"nct_id": nct_id, "title": title, "months": months,
             "overdue": _how_long(months), "due": deadline.isoformat()}
            for deadline, nct_id, title, months in late]


def _how_long(months: int) -> str:
    if months < 1:
        return "less than a month"
    if months < 24:
        return _plural(months, "month")
    return f"{months // 12} years" + (f" and {_plural(months % 12, 'month')}"
                                      if months % 12 else "")
