"""How studies, changes and sync runs are shown: text lines for people, dicts for JSON/CSV.

Pure functions over stored rows; the CLI only prints what these return. In JSON every list is
an array, every count a number and every flag a boolean; CSV cells join lists with "|".
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, tzinfo
from typing import Any, TextIO

from tracker.models import ChangeEvent, Study, SyncMode, SyncRun
from tracker.record import phases_label, status_label
from tracker.sync import SyncResult
from tracker.tags import results_overdue
from tracker.text import JOINER, history_url, shorten, split_list, study_url
from tracker.times import local_time, parse_iso, utc_day, utc_time
from tracker.vocabulary import Vocabulary

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
SEX_WORDS = {"ALL": "anyone", "FEMALE": "women", "MALE": "men"}
AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+(\w+?)s?\s*$")
# Stored "|"-joined; arrays in JSON, "|"-joined again in CSV.
LIST_COLUMNS = {"phases", "conditions", "interventions", "countries", "subtypes", "therapies",
                "recruiting_countries"}


def overdue(study: Study, today: date) -> bool:
    return results_overdue(study.overall_status, study.has_results,
                           study.primary_completion_date, study.completion_date, today,
                           study.study_type)


def study_dict(study: Study, today: date) -> dict[str, Any]:
    """One study with JSON types: lists as lists, times as ISO strings."""
    row = {c: getattr(study, c) for c in EXPORT_COLUMNS}
    for key in LIST_COLUMNS:
        row[key] = split_list(row[key])
    for key in ("first_seen_at", "last_changed_at", "removed_at"):
        row[key] = row[key].isoformat() if row[key] else None
    row["results_overdue"] = overdue(study, today)
    row["url"] = study_url(study.nct_id)
    return row


def study_detail(study: Study, today: date) -> dict[str, Any]:
    """study_dict plus the tag evidence and recruiting sites, for `show --json`."""
    out = study_dict(study, today)
    out["tag_evidence"] = json.loads(study.tag_evidence) if study.tag_evidence else {}
    out["recruiting_sites"] = json.loads(study.recruiting_sites) if study.recruiting_sites \
        else []
    out["history_url"] = history_url(study.nct_id)
    return out


def event_dict(event: ChangeEvent, study: Study | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.id, "nct_id": event.nct_id, "kind": event.kind, "field": event.field,
        "plain": event.plain, "summary": event.summary,
        "old": json.loads(event.old_value) if event.old_value else None,
        "new": json.loads(event.new_value) if event.new_value else None,
        "posted_on": event.posted_on.isoformat(), "detected_at": event.detected_at.isoformat(),
        "last_update_posted": event.last_update_posted, "sync_run_id": event.sync_run_id,
        "url": study_url(event.nct_id),
    }
    if study is not None:
        out["title"] = study.brief_title
        out["subtypes"] = split_list(study.subtypes)
        out["therapies"] = split_list(study.therapies)
    return out


def event_when(event: ChangeEvent) -> str:
    """The registry's date of a change, then the day the tracker recorded it when that is
    another day: "2026-11-21 (seen 2026-12-03)"."""
    posted, seen = event.posted_on, utc_day(event.detected_at)
    return f"{posted:%Y-%m-%d}" + (f" (seen {seen:%Y-%m-%d})" if seen != posted else "")


def tag_line(study: Study) -> str:
    parts = split_list(study.subtypes) + split_list(study.therapies)
    return "[" + ", ".join(parts) + "]" if parts else ""


def event_lines(events: Iterable[ChangeEvent], studies: dict[str, Study]) -> Iterator[str]:
    """Changes grouped by study: a heading with title and tags, then one line per change,
    dated by the registry (see `event_when`)."""
    current = None
    for event in events:
        if event.nct_id != current:
            current = event.nct_id
            study = studies.get(event.nct_id)
            title = shorten(study.brief_title, 80) if study else ""
            tags = tag_line(study) if study else ""
            yield ""
            yield f"{event.nct_id}  {title}  {tags}".rstrip()
        when = event_when(event)
        yield f"  {when}  {event.plain or event.summary}"
        if event.plain and event.plain != event.summary:
            yield f"{'':{len(when) + 4}}({event.kind}: {event.summary})"


def study_lines(s: Study, vocabulary: Vocabulary, today: date) -> Iterator[tuple[str, str]]:
    if s.removed_at:
        yield "Tracking", f"no longer matches the query (since {s.removed_at:%Y-%m-%d})"
    status = status_label(s.overall_status)
    if s.last_known_status:
        status += f" (last known: {status_label(s.last_known_status)})"
    if s.why_stopped:
        status += f"; why stopped: {s.why_stopped}"
    yield "Status", status
    yield "Phase", phases_label(split_list(s.phases) or None)
    evidence = json.loads(s.tag_evidence) if s.tag_evidence else {}
    for label, group in (("Subtypes", "subtypes"), ("Treatments", "therapies")):
        tags = evidence.get(group, {})
        yield label, "; ".join(
            f"{vocabulary.label(t)} [{t}] (matched {_evidence(ev)})" for t, ev in tags.items()
        ) or "none recognised"
        if group == "subtypes":
            yield from _not_myositis_lines(s, evidence.get("not_myositis", []))
        elif evidence.get("not_tested"):
            yield "Not counted as tested", "; ".join(
                f"{name} ({reason})" for reason, name in evidence["not_tested"])
    yield "Conditions", "; ".join(split_list(s.conditions)) or "none listed"
    yield "Interventions", "; ".join(split_list(s.interventions)) or "none listed"
    yield "Sponsor", s.lead_sponsor or "not given"
    yield "Who can join", _who(s)
    if s.enrollment is not None:
        kind = f" ({s.enrollment_type.lower()})" if s.enrollment_type else ""
        yield "Enrollment", f"{s.enrollment}{kind}"
    yield "Dates", (f"start {s.start_date or '?'}; primary completion "
                    f"{s.primary_completion_date or '?'}; completion {s.completion_date or '?'}")
    countries = ", ".join(split_list(s.countries))
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
    yield "Link", study_url(s.nct_id)


def who_can_join(study: Study) -> str:
    """ "Anyone aged 18 to 80 years. Adults only." """
    people = SEX_WORDS.get((study.sex or "ALL").upper(), "anyone")
    low, high = _age(study.minimum_age), _age(study.maximum_age)
    if low and high:
        low_n, low_unit = low
        high_n, high_unit = high
        ages = f"aged {low_n} to {high_n} {high_unit}" if low_unit == high_unit \
            else f"aged {low_n} {low_unit} to {high_n} {high_unit}"
    elif low:
        ages = f"aged {low[0]} {low[1]} or older"
    elif high:
        ages = f"up to {high[0]} {high[1]} old"
    else:
        ages = "of any age"
    children = "Children can take part." if study.children else "Adults only."
    return f"{people.capitalize()} {ages}. {children}"


def _age(text: str | None) -> tuple[str, str] | None:
    """ "18 Years" -> ("18", "years"); "1 Month" -> ("1", "months"); None if unreadable."""
    found = AGE.match(text or "")
    if not found:
        return None
    return found.group(1), found.group(2).lower() + "s"


def _who(s: Study) -> str:
    ages = []
    if s.minimum_age:
        ages.append(f"from {s.minimum_age.lower()}")
    if s.maximum_age:
        ages.append(f"up to {s.maximum_age.lower()}")
    age = " ".join(ages) or "any age"
    children = "children can take part" if s.children else "adults only"
    return f"{age} ({children})"


def _not_myositis_lines(s: Study, look_alikes: list[list[str]]) -> Iterator[tuple[str, str]]:
    """The words read as look-alikes, each with its reason, and, for a study without a
    subtype, that patients are not told about it."""
    if look_alikes:
        yield "Not counted as myositis", "; ".join(
            f"'{words}' in {source} ({reason})" for source, words, reason in look_alikes)
    if not s.subtypes:
        yield "Patients told", "no: no kind of myositis recognised, so digests to " \
            "subscribers leave it out (the operator's digest still lists its changes)"


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
    out = {k: (v.isoformat() if isinstance(v, datetime) else v)
           for k, v in run.model_dump().items() if k != "query"}
    out["unreadable"] = json.loads(run.unreadable) if run.unreadable else []
    return out


def sync_summary(r: SyncResult) -> str:
    took = f"{r.requests} request{'s' if r.requests != 1 else ''} in {r.seconds:.1f}s"
    stamp = f"data as of {r.data_timestamp}"
    if r.mode == SyncMode.SKIPPED:
        return (f"Nothing to do: ClinicalTrials.gov has not refreshed its data since the last "
                f"sync ({stamp}); {took}.")
    if r.mode == SyncMode.BASELINE:
        dropped = f", {r.removed} from the previous query dropped" if r.removed else ""
        line = (f"Baseline recorded: {r.listed} studies{dropped}; no changes are reported on a "
                f"first sync; {took}; {stamp}.")
    else:
        how = f"incremental, updates since {r.since}" if r.mode == SyncMode.INCREMENTAL \
            else "full"
        # listed = new + changed + reformatted + unreadable + unchanged; removed ones are
        # no longer listed.
        reformatted = f", {r.reformatted} reformatted by the registry" if r.reformatted else ""
        line = (f"Synced {r.listed} studies ({how}): {r.new} new, {r.changed} changed"
                f"{reformatted}, {r.removed} removed, {r.unchanged} unchanged; {r.events} "
                f"change event{'s' if r.events != 1 else ''}; {took}; {stamp}.")
    return " ".join([line, *sync_notices(r.held, r.unreadable)])


def sync_notices(held: int, unreadable: list[list[str]]) -> list[str]:
    """What an operator must know about a sync that succeeded: removals held back, records
    that could not be read. Sentences, for summaries, `tracker status` and digests."""
    notices = []
    if held:
        notices.append(
            f"{held} removal{'s were' if held != 1 else ' was'} held back: that many trials "
            "vanished from the listing at once, which is more likely a registry fault; they "
            "are removed only if a sync after the registry's next refresh still misses them.")
    if unreadable:
        shown = "; ".join(f"{nct_id}, {problem}" for nct_id, problem in unreadable[:5])
        more = f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        notices.append(
            f"{len(unreadable)} record{'s' if len(unreadable) != 1 else ''} could not be "
            f"read: {shown}{more}. {'They were' if len(unreadable) != 1 else 'It was'} kept "
            "as received and left out of the changes; the other studies synced.")
    return notices


def write_export(rows: Iterable[dict[str, Any]], fmt: str, handle: TextIO) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=[*EXPORT_COLUMNS, *EXTRA_COLUMNS])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: JOINER.join(v) if isinstance(v, list) else v
                             for k, v in row.items()})
            count += 1
        return count
    handle.write("[")
    for row in rows:
        handle.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        count += 1
    handle.write("\n]\n" if count else "]\n")
    return count



def status_lines(info: dict[str, Any], zone: tzinfo) -> Iterator[str]:
    """`tracker status` for people, from `status.overview`'s data."""
    counts, mail, scheduler = info["counts"], info["mail"], info["scheduler"]
    yield f"{'Database:':<22} {info['database']}"
    yield (f"{'Studies tracked:':<22} {counts['tracked']} ({counts['recruiting']} recruiting; "
           f"{counts['removed']} no longer matching)")
    yield (f"{'Change events:':<22} {counts['changes']} ({counts['versions']} record versions "
           "stored)")
    ok = info["last_success"]
    if ok:
        yield (f"{'Last successful sync:':<22} {utc_time(parse_iso(ok['finished_at']))} "
               f"({_run_brief(ok)})")
        yield f"{'API data timestamp:':<22} {info['data_timestamp']}"
    else:
        yield f"{'Last successful sync:':<22} never; run 'tracker sync'"
    failed = info["last_failure"]
    if failed:
        when = parse_iso(failed["finished_at"] or failed["started_at"])
        yield f"{'Last failed sync:':<22} {utc_time(when)}: {failed['error']}"
    yield (f"{'Subscribers:':<22} {mail['confirmed']} confirmed, {mail['unconfirmed']} "
           "awaiting confirmation")
    yield (f"{'Outbox:':<22} {mail['queued']} queued, {mail['failed']} failed, "
           f"{mail['unknown']} unknown outcome, {mail['sent']} sent")
    running = scheduler["running"]
    yield (f"{'Scheduler:':<22} "
           + (f"running ({running})" if running else "not running ('tracker run' starts it)")
           + f"; times in {scheduler['timezone']}")
    for job, row in scheduler["jobs"].items():
        last = row["last"]
        done = (f"last {last['status']} {local_time(parse_iso(last['started_at']), zone)}: "
                f"{last['summary']}" if last else "never run")
        yield (f"  {job:<8} {row['schedule']:<16} next "
               f"{local_time(parse_iso(row['next']), zone)}; {done}")
    data = info.get("last_data_change") or {}
    for notice in sync_notices(info.get("held_removals", 0), data.get("unreadable") or []):
        yield f"Note: {notice}"
    if info["failed_in_a_row"] > 1:
        yield (f"Warning: the last {info['failed_in_a_row']} syncs failed; the data may be out "
               "of date.")
    elif info["last_sync_failed"]:
        yield "Warning: the most recent sync failed; the data may be out of date."


def _run_brief(run: dict[str, Any]) -> str:
    if run["mode"] == SyncMode.SKIPPED:
        return "registry data unchanged"
    return (f"{run['mode']}: {run['new']} new, {run['changed']} changed, {run['removed']} "
            f"removed, {run['requests']} requests")
