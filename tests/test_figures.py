"""The report's figures about all tracked trials: pure functions over snapshot rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from tracker import figures
from tracker.models import Study
from tracker.vocabulary import load_vocabulary

VOCABULARY = load_vocabulary()
TODAY = date(2026, 12, 4)


def tally(rows: list[Study], *columns: str) -> Counter[Any]:
    """What the database's GROUP BY gives the figures: how many rows share each value."""
    if len(columns) == 1:
        return Counter(getattr(r, columns[0]) for r in rows)
    return Counter(tuple(getattr(r, c) for c in columns) for r in rows)


def values(rows: list[Study], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(r, c) for c in columns) for r in rows]


def study(nct_id: str = "NCT00000001", **columns: Any) -> Study:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    return Study(nct_id=nct_id, brief_title=f"Trial {nct_id}", content_hash="x",
                 first_seen_at=moment, last_changed_at=moment,
                 study_type=columns.pop("study_type", "INTERVENTIONAL"), **columns)


def test_results_overdue_are_listed_longest_first_with_how_long() -> None:
    rows = [
        study("NCT00000001", overall_status="COMPLETED", primary_completion_date="2025-06-30"),
        study("NCT00000002", overall_status="COMPLETED", primary_completion_date="2021-03"),
        study("NCT00000003", overall_status="COMPLETED", primary_completion_date="2025-11-30"),
        study("NCT00000004", overall_status="COMPLETED", primary_completion_date="2020-01",
              has_results=True),
        study("NCT00000005", overall_status="COMPLETED", primary_completion_date="2020-01",
              study_type="OBSERVATIONAL"),
    ]
    overdue = figures.overdue_results(values(rows, figures.OVERDUE_COLUMNS), TODAY)

    assert [(o["nct_id"], o["overdue"]) for o in overdue] == [
        ("NCT00000002", "4 years and 8 months"),  # due 31 March 2022
        ("NCT00000001", "5 months"),  # due 30 June 2026
        ("NCT00000003", "less than a month"),  # due 30 November 2026
    ]
    assert figures.overdue_results(values(rows[2:3], figures.OVERDUE_COLUMNS),
                                   date(2026, 11, 30)) == []  # due that day


def test_sponsor_types_group_the_registry_classes_in_words() -> None:
    rows = [study(f"NCT0000000{i}", sponsor_class=c) for i, c in enumerate(
        ["INDUSTRY", "INDUSTRY", "OTHER", "NIH", "FED", "OTHER_GOV", "NETWORK", None])]
    figure = figures.sponsor_types(tally(rows, "sponsor_class"))

    assert figure.rows == [("Companies", 2), ("Universities and hospitals", 2),
                           ("Governments", 3), ("Not stated", 1)]
    assert figure.reading == ("Of 8 trials, 2 by companies, 2 by universities and hospitals, "
                              "3 by governments.")


def test_the_wait_to_recruit_counts_actual_starts_from_registration() -> None:
    rows = [
        study("NCT00000001", first_submitted="2024-01-10", start_date="2024-02-20",
              start_date_type="ACTUAL"),  # 41 days
        study("NCT00000002", first_submitted="2024-01-10", start_date="2024-09",
              start_date_type="ACTUAL"),  # mid-September: 8 months
        study("NCT00000003", first_posted="2024-05-01", start_date="2024-03-01",
              start_date_type="ACTUAL"),  # started before it was registered
        study("NCT00000004", first_submitted="2024-01-10", start_date="2027-01",
              start_date_type="ESTIMATED"),  # not started: left out
    ]
    figure = figures.wait_to_recruit(values(rows, figures.WAIT_COLUMNS))

    assert dict(figure.rows) == {"Before it was posted": 1, "Within 3 months": 1,
                                 "3 to 6 months": 0, "6 to 12 months": 1,
                                 "More than a year": 0}
    assert figure.extra["trials"] == 3
    assert figure.reading == ("Of 3 trials that have started, 1 began before being "
                              "registered; half of the others started within 5 months of "
                              "being registered.")
    assert figures.wait_to_recruit(values(rows[3:], figures.WAIT_COLUMNS)).rows == []


def test_enrolment_compares_the_first_estimate_with_the_actual_number() -> None:
    def planned(count: int, kind: str = "ESTIMATED") -> dict[str, Any]:
        return {"protocolSection": {"designModule": {"enrollmentInfo": {
            "count": count, "type": kind}}}}

    rows = [study("NCT00000001", enrollment=30, enrollment_type="ACTUAL"),
            study("NCT00000002", enrollment=120, enrollment_type="ACTUAL"),
            study("NCT00000003", enrollment=50, enrollment_type="ACTUAL")]
    first = {"NCT00000001": planned(100), "NCT00000002": planned(100),
             "NCT00000003": planned(50, "ACTUAL")}  # first seen finished: no plan known
    figure = figures.enrolment(values(rows, figures.ENROLMENT_COLUMNS), first)

    assert figure.rows == [("Fewer than half", 1), ("Half to almost all", 0),
                           ("All or more", 1)]
    assert figure.extra == {"completed_with_actual": 3, "compared": 2}
    assert figure.reading == ("Completed trials took in 50 people each (the middle value of "
                              "3). For 2 trials we know the number planned: 1 reached it.")


def test_subtypes_by_status_read_as_words_a_phone_can_wrap() -> None:
    rows = [study("NCT00000001", subtypes="dermatomyositis", overall_status="RECRUITING"),
            study("NCT00000002", subtypes="dermatomyositis|ibm", overall_status="COMPLETED"),
            study("NCT00000003", subtypes="dermatomyositis", overall_status="RECRUITING")]
    table = figures.subtype_by_status(tally(rows, "subtypes", "overall_status"), VOCABULARY)

    assert table["columns"] == ["Recruiting", "Completed"]
    assert dict(table["words"]) == {"Dermatomyositis": "2 recruiting; 1 completed",
                                    "Inclusion body myositis": "1 completed"}


def test_every_figure_has_a_reading_even_with_no_trials() -> None:
    empty: Counter[Any] = Counter()
    for figure in (figures.recruiting_by_subtype(empty, VOCABULARY),
                   figures.recruiting_by_country(empty), figures.by_phase(empty),
                   figures.by_therapy(empty, VOCABULARY), figures.per_quarter(empty),
                   figures.sponsor_types(empty), figures.wait_to_recruit([]),
                   figures.enrolment([], {})):
        assert figure.rows == [] and figure.reading.endswith(".")


def test_new_trials_per_quarter_fill_empty_quarters_and_compare_years() -> None:
    rows = [study(f"NCT0000000{i}", first_posted=d) for i, d in enumerate(
        ["2024-01-15", "2024-11-02", "2025-12-30", "2025-12-31", "2025-07"])]
    figure = figures.per_quarter(tally(rows, "first_posted"))

    assert figure.rows[0] == ("2024-Q1", 1) and figure.rows[-1] == ("2025-Q4", 2)
    assert len(figure.rows) == 8
    assert figure.reading == ("3 trials were first posted in the last four quarters, "
                              "against 2 in the four before.")


def test_lists_counted_by_the_database_count_each_item_they_hold() -> None:
    rows = [study("NCT00000001", subtypes="dermatomyositis|ibm", recruiting_countries="France"),
            study("NCT00000002", subtypes="dermatomyositis", recruiting_countries="France|Japan"),
            study("NCT00000003", subtypes="dermatomyositis", recruiting_countries=None)]

    kinds = figures.recruiting_by_subtype(tally(rows, "subtypes"), VOCABULARY)
    assert dict(kinds.rows) == {"Dermatomyositis": 3, "Inclusion body myositis": 1}
    assert kinds.reading.startswith("Of 3 trials recruiting now, the most are for "
                                    "dermatomyositis (3).")
    places = figures.recruiting_by_country(tally(rows, "recruiting_countries"))
    assert places.rows == [("France", 2), ("Japan", 1)]
    phases = figures.by_phase(Counter({"PHASE2": 3, "PHASE2|PHASE3": 1, None: 2}))
    assert phases.rows[0] == ("Phase 2", 3) and ("No phase", 2) in phases.rows
