"""How results read: sync summaries whose numbers add up, JSON with real types, CSV with a
documented joiner, and `tracker status` in lines."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from tracker.models import ChangeEvent, RunStatus, Study, SyncMode
from tracker.sync import SyncResult
from tracker.views import (
    event_dict,
    event_lines,
    event_when,
    status_lines,
    study_dict,
    sync_summary,
    write_export,
)

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def result(**counts: int) -> SyncResult:
    return SyncResult(run_id=2, status=RunStatus.OK, mode=SyncMode.FULL,
                      data_timestamp="2026-11-21T09:00:05", requests=3, seconds=1.0, **counts)


def test_a_summary_counts_every_listed_study_once() -> None:
    text = sync_summary(result(listed=19, new=1, changed=2, reformatted=1, unchanged=15,
                               removed=1, events=4))

    assert text.startswith("Synced 19 studies (full): 1 new, 2 changed, 1 reformatted by the "
                           "registry, 1 removed, 15 unchanged; 4 change events; 3 requests")


def test_a_summary_leaves_out_reformatting_when_there_was_none() -> None:
    text = sync_summary(result(listed=5, unchanged=5))

    assert "reformatted" not in text and "0 new, 0 changed, 0 removed, 5 unchanged" in text


def study(**values: object) -> Study:
    base: dict[str, object] = dict(
        nct_id="NCT04078230", brief_title="Tofacitinib in dermatomyositis",
        overall_status="RECRUITING", phases="PHASE1|PHASE2", conditions="Dermatomyositis",
        countries="China|United States", subtypes="dermatomyositis|ild", therapies="jak",
        recruiting=True, children=False, enrollment=30, site_count=2, content_hash="x",
        first_seen_at=NOW, last_changed_at=NOW)
    return Study(**{**base, **values})


def change(posted: str | None, seen: datetime, **values: object) -> ChangeEvent:
    base: dict[str, object] = dict(
        id=7, sync_run_id=2, nct_id="NCT04078230", kind="status", field="overallStatus",
        old_value='"NOT_YET_RECRUITING"', new_value='"RECRUITING"', plain="Now recruiting",
        summary="Status: Not yet recruiting -> Recruiting", detected_at=seen,
        last_update_posted=posted)
    return ChangeEvent(**{**base, **values})


def test_a_change_reads_in_the_registrys_date_and_adds_the_day_it_was_seen_if_later() -> None:
    late = change("2026-11-21", datetime(2026, 12, 3, 6, 0, tzinfo=UTC))
    same_day = change("2026-11-21", datetime(2026, 11, 21, 23, 0))  # naive: UTC

    assert event_when(late) == "2026-11-21 (seen 2026-12-03)"
    assert event_when(same_day) == "2026-11-21"
    assert event_when(change(None, NOW)) == "2026-11-21"  # no registry date: the day seen
    assert list(event_lines([late, same_day], {"NCT04078230": study()})) == [
        "", "NCT04078230  Tofacitinib in dermatomyositis  [dermatomyositis, ild, jak]",
        "  2026-11-21 (seen 2026-12-03)  Now recruiting",
        "                                (status: Status: Not yet recruiting -> Recruiting)",
        "  2026-11-21  Now recruiting",
        "              (status: Status: Not yet recruiting -> Recruiting)"]


def test_a_change_in_json_keeps_both_dates_and_the_registry_day() -> None:
    row = event_dict(change("2026-11-21", datetime(2026, 12, 3, 6, 0, tzinfo=UTC)))

    assert (row["posted_on"], row["last_update_posted"], row["detected_at"]) == \
        ("2026-11-21", "2026-11-21", "2026-12-03T06:00:00+00:00")
    assert event_dict(change(None, NOW))["posted_on"] == "2026-11-21"


def test_json_gives_lists_as_arrays_and_flags_as_booleans() -> None:
    row = study_dict(study(), date(2026, 11, 21))

    assert row["countries"] == ["China", "United States"]
    assert row["subtypes"] == ["dermatomyositis", "ild"]
    assert row["interventions"] == [] and row["recruiting_countries"] == []
    assert row["recruiting"] is True and row["enrollment"] == 30
    assert row["url"] == "https://clinicaltrials.gov/study/NCT04078230"
    assert json.loads(json.dumps(row)) == row


def test_csv_joins_lists_with_a_bar() -> None:
    out = io.StringIO()

    count = write_export([study_dict(study(), date(2026, 11, 21))], "csv", out)

    [row] = csv.DictReader(io.StringIO(out.getvalue()))
    assert count == 1
    assert row["countries"] == "China|United States" and row["phases"] == "PHASE1|PHASE2"


def test_status_reads_in_the_operators_time_zone() -> None:
    info = {
        "database": "/srv/tracker/data/tracker.db", "data_timestamp": "2026-11-21T09:00:05",
        "counts": {"tracked": 7, "recruiting": 2, "removed": 1, "changes": 3, "versions": 9},
        "last_success": {"finished_at": "2026-11-21T09:05:00+00:00", "mode": "incremental",
                         "new": 0, "changed": 1, "removed": 0, "requests": 4},
        "last_failure": None, "last_sync_failed": False, "failed_in_a_row": 0,
        "mail": {"confirmed": 2, "unconfirmed": 1, "queued": 0, "failed": 0, "unknown": 0,
                 "sent": 5},
        "scheduler": {"running": None, "timezone": "Europe/Paris", "jobs": {
            "sync": {"schedule": "0 */6 * * *", "next": "2026-11-21T12:00:00+00:00",
                     "last": None}}},
    }

    lines = list(status_lines(info, ZoneInfo("Europe/Paris")))

    assert lines[0] == "Database:              /srv/tracker/data/tracker.db"
    assert "Last successful sync:  2026-11-21 09:05 UTC (incremental: 0 new, 1 changed, " \
           "0 removed, 4 requests)" in lines
    assert "Subscribers:           2 confirmed, 1 awaiting confirmation" in lines
    assert "  sync     0 */6 * * *      next 2026-11-21 13:00 CET; never run" in lines


def test_one_change_event_is_one_event() -> None:
    assert "; 1 change event; " in sync_summary(result(listed=5, changed=1, unchanged=4,
                                                      events=1))
