"""How studies, changes and sync runs are shown: text lines for people, dicts for JSON/CSV.

Pure functions over stored rows; the CLI only prints what these return.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any, TextIO

from tracker.models import ChangeEvent, Study, SyncRun
from tracker.record import phases_label, status_label
from tracker.sync import SyncResult
from tracker.tags import Vocabulary, results_overdue

STUDY_URL = "https://clinicaltrials.gov/study/{}"
HISTORY_URL = "https://clinicaltrials.gov/study/{}?tab=history"
EXPORT_COLUMNS = [
    "nct_id", "brief_title", "official_title", "acronym", "overall_status",
    "last_known_status", "why_stopped", "study_type", "phases", "conditions", "interventions",
    "lead_sponsor", "enrollment", "enrollment_type", "start_date", "primary_completion_date",
    "completion_date", "first_posted", "last_update_posted", "results_first_posted",
    "has_results", "minimum_age", "maximum_age", "sex", "countries", "site_count",
    "subtypes", "therapies", "recruiting", "children", "min_age_years", "max_age_years",
    "recruiting_countries", "first_seen_at", "last_changed_at", "removed_at",
]
EXTRA_COLUMNS = ["results_overdue", "url"]


def overdue(study: Study, today: date) -> bool:
    return results_overdue(study.overall_status, study.has_results,
                           study.primary_completion_date, study.completion_date, today,
                           study.study_type)


def study_dict(study: Study, today: date) -> dict[str, Any]:
    row = {c: getattr(study, c) for c in EXPORT_COLUMNS}
    for key in ("first_seen_at", "last_changed_at", "removed_at"):
        row[key] = row[key].isoformat() if row[key] else None
    row["results_overdue"] = overdue(study, today)
    row["url"] = STUDY_URL.format(study.nct_id)
    return row


def study_detail(study: Study, today: date) -> dict[str, Any]:
    """study_dict plus the tag evidence and recruiting sites, for `show --json`."""
    out = study_dict(study, today)
    out["tag_evidence"] = json.loads(study.tag_evidence) if study.tag_evidence else {}
    out["recruiting_sites"] = json.loads(study.recruiting_sites) if study.recruiting_sites \
        else []
    out["history_url"] = HISTORY_URL.format(study.nct_id)
    return out


def event_dict(event: ChangeEvent, study: Study | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.id, "nct_id": event.nct_id, "kind": event.kind, "field": event.field,
        "plain": event.plain, "summary": event.summary,
        "old": json.loads(event.old_value) if event.old_value else None,
        "new": json.loads(event.new_value) if event.new_value else None,
        "detected_at": event.detected_at.isoformat(),
        "last_update_posted": event.last_update_posted, "sync_run_id": event.sync_run_id,
        "url": STUDY_URL.format(event.nct_id),
    }
    if study is not None:
        out["title"] = study.brief_title
        out["subtypes"] = split(study.subtypes)
        out["therapies"] = split(study.therapies)
    return out


def split(joined: str | None) -> list[str]:
    return [part for part in (joined or "").split("|") if part]


def tag_line(study: Study) -> str:
    parts = split(study.subtypes) + split(study.therapies)
    return "[" + ", ".join(parts) + "]" if parts else ""


def event_lines(events: Iterable[ChangeEvent], studies: dict[str, Study]) -> Iterator[str]:
    """Changes grouped by study: a heading with title and tags, then one line per change."""
    current = None
    for event in events:
        if event.nct_id != current:
            current = event.nct_id
            study = studies.get(event.nct_id)
            title = _short(study.brief_title, 80) if study else ""
            tags = tag_line(study) if study else ""
            yield ""
            yield f"{event.nct_id}  {title}  {tags}".rstrip()
        yield f"  {event.detected_at:%Y-%m-%d}  {event.plain or event.summary}"
        if event.plain and event.plain != event.summary:
            yield f"              ({event.kind}: {event.summary})"


def study_lines(s: Study, vocabulary: Vocabulary, today: date) -> Iterator[tuple[str, str]]:
    if s.removed_at:
        yield "Tracking", f"no longer matches the query (since {s.removed_at:%Y-%m-%d})"
    status = status_label(s.overall_status)
    if s.last_known_status:
        status += f" (last known: {status_label(s.last_known_status)})"
    if s.why_stopped:
        status += f"; why stopped: {s.why_stopped}"
    yield "Status", status
    yield "Phase", phases_label(s.phases.split("|") if s.phases else None)
    evidence = json.loads(s.tag_evidence) if s.tag_evidence else {}
    for label, group in (("Subtypes", "subtypes"), ("Treatments", "therapies")):
        tags = evidence.get(group, {})
        yield label, "; ".join(
            f"{vocabulary.label(t)} [{t}] (matched {_evidence(ev)})" for t, ev in tags.items()
        ) or "none recognised"
    yield "Conditions", (s.conditions or "").replace("|", "; ") or "none listed"
    yield "Interventions", (s.interventions or "").replace("|", "; ") or "none listed"
    yield "Sponsor", s.lead_sponsor or "not given"
    yield "Who can join", _who(s)
    if s.enrollment is not None:
        kind = f" ({s.enrollment_type.lower()})" if s.enrollment_type else ""
        yield "Enrollment", f"{s.enrollment}{kind}"
    yield "Dates", (f"start {s.start_date or '?'}; primary completion "
                    f"{s.primary_completion_date or '?'}; completion {s.completion_date or '?'}")
    countries = (s.countries or "").replace("|", ", ")
    yield "Sites", f"{s.site_count}" + (f" in {countries}" if countries else "")
    sites = json.loads(s.recruiting_sites) if s.recruiting_sites else []
    if sites:
        yield "Recruiting at", "; ".join(_site(site) for site in sites[:10]) + (
            f"; and {len(sites) - 10} more" if len(sites) > 10 else "")
    if s.has_results:
        yield "Results", f"posted {s.results_first_posted or ''}".strip()
    else:
        yield "Results", "overdue: completed over 12 months ago, none posted" \
            if overdue(s, today) else "none posted"
    yield "Last update posted", s.last_update_posted or "?"
    yield "Link", STUDY_URL.format(s.nct_id)


def _who(s: Study) -> str:
    ages = []
    if s.minimum_age:
        ages.append(f"from {s.minimum_age.lower()}")
    if s.maximum_age:
        ages.append(f"up to {s.maximum_age.lower()}")
    age = " ".join(ages) or "any age"
    children = "children can take part" if s.children else "adults only"
    return f"{age} ({children})"


def _evidence(evidence: list[list[str]]) -> str:
    shown = [f'"{text}" in {source}' for source, text in evidence[:3]]
    more = f" and {len(evidence) - 3} more" if len(evidence) > 3 else ""
    return ", ".join(shown) + more


def _site(site: dict[str, Any]) -> str:
    place = ", ".join(site[k] for k in ("city", "country") if site.get(k))
    return f"{site['facility']} ({place})" if site.get("facility") else place


def run_dict(run: SyncRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in run.model_dump().items() if k != "query"}


def failed_since(failed: SyncRun | None, ok: SyncRun | None) -> bool:
    if failed is None or failed.id is None:
        return False
    return ok is None or ok.id is None or failed.id > ok.id


def run_brief(run: SyncRun) -> str:
    if run.status == "skipped":
        return "registry data unchanged"
    return (f"{run.mode}: {run.new} new, {run.changed} changed, {run.removed} removed, "
            f"{run.requests} requests")


def sync_summary(r: SyncResult) -> str:
    took = f"{r.requests} request{'s' if r.requests != 1 else ''} in {r.seconds:.1f}s"
    stamp = f"data as of {r.data_timestamp}"
    if r.mode == "skipped":
        return (f"Nothing to do: ClinicalTrials.gov has not refreshed its data since the last "
                f"sync ({stamp}); {took}.")
    if r.mode == "baseline":
        dropped = f", {r.removed} from the previous query dropped" if r.removed else ""
        return (f"Baseline recorded: {r.listed} studies{dropped}; no changes are reported on a "
                f"first sync; {took}; {stamp}.")
    how = f"incremental, updates since {r.since}" if r.mode == "incremental" else "full"
    return (f"Synced {r.listed} studies ({how}): {r.new} new, {r.changed} changed, "
            f"{r.removed} removed, {r.unchanged} unchanged; {r.events} change events; "
            f"{took}; {stamp}.")


def write_export(rows: Iterable[dict[str, Any]], fmt: str, handle: TextIO) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=[*EXPORT_COLUMNS, *EXTRA_COLUMNS])
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
        return count
    handle.write("[")
    for row in rows:
        handle.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        count += 1
    handle.write("\n]\n" if count else "]\n")
    return count


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
