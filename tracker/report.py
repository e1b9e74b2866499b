"""The weekly report: what changed in an ISO week, and the myositis trial landscape now.

`collect` reads the store into plain data (the JSON written beside the page); `render_*` turn
that data into a self-contained HTML page (inline CSS and SVG, no network) and Markdown;
`write` puts a week's files, the index of every week and the Atom feeds into one folder.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from tracker import charts, templating
from tracker.errors import BadWeek, WriteError
from tracker.feeds import atom_feed, events_for_subtype
from tracker.matching import STOPPED
from tracker.models import ChangeEvent, ChangeKind, Study
from tracker.notify import freshness
from tracker.record import phases_label, status_label
from tracker.store import Store
from tracker.tags import Vocabulary
from tracker.text import split_list as split
from tracker.text import study_url
from tracker.times import utc_time
from tracker.views import overdue

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class Week:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Week:
        found = WEEK.match(text.strip())
        if not found:
            raise BadWeek(f"{text!r} is not an ISO week; write it like 2026-W47.")
        year, number = int(found.group(1)), int(found.group(2))
        try:
            date.fromisocalendar(year, number, 1)
        except ValueError:
            raise BadWeek(f"{year} has no week {number}.") from None
        return cls(year, number)

    @classmethod
    def last_complete(cls, today: date) -> Week:
        year, number, _ = (today - timedelta(days=7)).isocalendar()
        return cls(year, number)

    @property
    def name(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def start(self) -> datetime:
        return datetime.combine(date.fromisocalendar(self.year, self.number, 1), time(),
                                tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)


def collect(store: Store, vocabulary: Vocabulary, week: Week, now: datetime) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data."""
    studies = {s.nct_id: s for s in store.iter_studies()}
    events = [e for e in reversed(store.changes(since=week.start)) if e.detected_at < week.end]
    named = store.studies(e.nct_id for e in events)
    new = [e for e in events if e.kind == ChangeKind.NEW]
    results = [e for e in events if e.kind == ChangeKind.RESULTS_POSTED]
    stopped = [e for e in events if e.kind == ChangeKind.STATUS and e.field == "overallStatus"
               and json.loads(e.new_value or "null") in STOPPED]
    changed = {e.nct_id for e in events if e.kind != ChangeKind.NEW}
    recruiting = [s for s in studies.values() if s.recruiting]
    fresh = freshness(store, now)
    return {
        "week": week.name,
        "start": week.start.date().isoformat(),
        "end": (week.end - timedelta(days=1)).date().isoformat(),
        "generated_at": now.isoformat(timespec="seconds"),
        "headline": {"tracked": len(studies), "recruiting": len(recruiting), "new": len(new),
                     "changed": len(changed), "results_posted": len(results),
                     "stopped": len(stopped)},
        "new_trials": [_trial(named.get(e.nct_id), e.nct_id) for e in new],
        "changes": _by_kind(events, named),
        "recruiting_by_subtype": _count_tags(recruiting, "subtypes",
                                             list(vocabulary.subtypes), vocabulary),
        "recruiting_by_country": Counter(
            c for s in recruiting for c in split(s.recruiting_countries)).most_common(),
        "subtype_by_status": _subtype_by_status(studies.values(), vocabulary),
        "by_phase": Counter(phases_label(split(s.phases) or None)
                            for s in studies.values()).most_common(),
        "by_therapy": _count_tags(studies.values(), "therapies", vocabulary.therapy_names,
                                  vocabulary),
        "new_per_quarter": _per_quarter(studies.values()),
        "results_overdue": [_trial(s, s.nct_id) for s in sorted(
            studies.values(), key=lambda s: s.primary_completion_date or "")
            if overdue(s, now.date())],
        "freshness": {"data_timestamp": fresh.data_timestamp,
                      "last_success": fresh.last_success.isoformat(timespec="minutes")
                      if fresh.last_success else None,
                      "last_sync_failed": fresh.last_sync_failed,
                      "failed_syncs": fresh.failed_syncs, "stale": fresh.stale,
                      "warning": fresh.warning(),
                      "last_error": fresh.last_error if fresh.last_sync_failed else None},
    }


def _trial(study: Study | None, nct_id: str) -> dict[str, Any]:
    return {"nct_id": nct_id, "title": study.brief_title if study else nct_id,
            "status": status_label(study.overall_status) if study else "",
            "subtypes": split(study.subtypes) if study else [],
            "therapies": split(study.therapies) if study else [],
            "url": study_url(nct_id)}


def _by_kind(events: list[ChangeEvent], studies: dict[str, Study]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for event in events:
        if event.kind == ChangeKind.NEW:
            continue
        study = studies.get(event.nct_id)
        grouped.setdefault(event.kind, []).append({
            "nct_id": event.nct_id, "title": study.brief_title if study else event.nct_id,
            "plain": event.plain or event.summary, "summary": event.summary,
            "date": event.detected_at.date().isoformat(),
            "url": study_url(event.nct_id)})
    return grouped


def _count_tags(studies: Any, column: str, order: list[str],
                vocabulary: Vocabulary) -> list[tuple[str, int]]:
    counts = Counter(tag for s in studies for tag in split(getattr(s, column)))
    return [(vocabulary.label(tag), counts[tag]) for tag in order if counts[tag]]


def _subtype_by_status(studies: Any, vocabulary: Vocabulary) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    table: dict[str, Counter[str]] = {}
    for study in studies:
        status = status_label(study.overall_status)
        statuses[status] += 1
        for tag in split(study.subtypes):
            table.setdefault(tag, Counter())[status] += 1
    columns = [s for s, _ in statuses.most_common()]
    rows = [[vocabulary.label(tag), *[table[tag][c] for c in columns]]
            for tag in vocabulary.subtypes if tag in table]
    return {"columns": columns, "rows": rows}


def _per_quarter(studies: Any) -> list[tuple[str, int]]:
    counts: Counter[tuple[int, int]] = Counter()
    for study in studies:
        if study.first_posted and len(study.first_posted) >= 7:
            year, month = int(study.first_posted[:4]), int(study.first_posted[5:7])
            counts[(year, (month - 1) // 3 + 1)] += 1
    if not counts:
        return []
    first, last = min(counts), max(counts)
    out = []
    year, quarter = first
    while (year, quarter) <= last:
        out.append((f"{year}-Q{quarter}", counts[(year, quarter)]))
        year, quarter = (year + 1, 1) if quarter == 4 else (year, quarter + 1)
    return out


# --- rendering -----------------------------------------------------------------------------

def _environment(templates_dir: Path | None = None) -> Environment:
    env = templating.environment(override=templates_dir, strict=False)
    env.filters["md"] = markdown_escape
    env.filters["stamp"] = stamp
    env.filters["by_year"] = by_year
    return env


def stamp(value: str | None, missing: str = "never") -> str:
    """An ISO timestamp as readers write it: 2026-11-21 09:00 UTC (naive ones are UTC)."""
    return utc_time(datetime.fromisoformat(value) if value else None, missing)


def by_year(quarters: list[tuple[str, int]]) -> list[tuple[str, list[int]]]:
    """Quarter counts ("2024-Q3", 2) folded into one row of four per year."""
    years: dict[str, list[int]] = {}
    for label, n in quarters:
        year, quarter = label.split("-Q")
        years.setdefault(year, [0, 0, 0, 0])[int(quarter) - 1] = n
    return list(years.items())


def markdown_escape(text: object) -> str:
    """Registry text made inert in Markdown: no HTML, links, emphasis or headings."""
    value = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = re.sub(r"([\\`*_{}\[\]()#+!|])", r"\\\1", value)
    return " ".join(value.split())


def render_html(data: dict[str, Any], templates_dir: Path | None = None) -> str:
    figures = {
        "recruiting_by_subtype": charts.bar_chart(
            "Trials recruiting now, by myositis subtype", data["recruiting_by_subtype"]),
        "recruiting_by_country": charts.bar_chart(
            "Trials recruiting now, by country", data["recruiting_by_country"][:15]),
        "by_phase": charts.bar_chart("All tracked trials by phase", data["by_phase"]),
        "by_therapy": charts.bar_chart("All tracked trials by treatment class",
                                       data["by_therapy"]),
        "per_quarter": charts.column_chart("New trials per quarter (first posted)",
                                           data["new_per_quarter"]),
    }
    safe = {key: Markup(svg) for key, svg in figures.items()}  # noqa: S704 (escaped in charts)
    return _environment(templates_dir).get_template("report.html").render(
        data=data, charts=safe, kinds=KIND_TITLES)


def render_markdown(data: dict[str, Any], templates_dir: Path | None = None) -> str:
    template = _environment(templates_dir).get_template("report.md")
    return template.render(data=data, kinds=KIND_TITLES)


def render_index(weeks: list[str], templates_dir: Path | None = None) -> str:
    return _environment(templates_dir).get_template("report_index.html").render(weeks=weeks)


KIND_TITLES = {
    "status": "Recruitment and status", "results_posted": "Results posted",
    "site_added": "New sites", "site_removed": "Sites no longer listed",
    "dates": "Timelines", "enrollment": "Enrolment", "eligibility": "Who can take part",
    "interventions": "Treatments", "outcomes": "What is measured", "phase": "Phase",
    "sponsor": "Sponsors", "contacts": "Contacts", "title": "Titles",
    "removed": "No longer tracked", "other": "Other updates",
}


def write(store: Store, vocabulary: Vocabulary, week: Week, out: Path, now: datetime,
          site_url: str, templates_dir: Path | None = None) -> list[Path]:
    """Write the week's .html, .md and .json, the index and the feeds; returns the paths.

    Templates in `templates_dir` replace the shipped ones of the same name (see
    tracker.templating); None means the shipped templates only.
    """
    _make_folder(out)
    data = collect(store, vocabulary, week, now)
    written = [
        _write(out / f"{week.name}.html", render_html(data, templates_dir)),
        _write(out / f"{week.name}.md", render_markdown(data, templates_dir)),
        _write(out / f"{week.name}.json", json.dumps(data, indent=2, ensure_ascii=False)),
    ]
    weeks = sorted((p.stem for p in out.glob("*-W*.html") if WEEK.match(p.stem)),
                   reverse=True)
    written.append(_write(out / "index.html", render_index(weeks, templates_dir)))
    written.extend(_feeds(store, vocabulary, out, now, site_url))
    return written


def _feeds(store: Store, vocabulary: Vocabulary, out: Path, now: datetime,
           site_url: str) -> list[Path]:
    events = store.changes(limit=500)
    studies = store.studies(e.nct_id for e in events)
    base = site_url.rstrip("/")
    labels = {tag: definition.label for tag, definition in vocabulary.subtypes.items()}
    paths = [_write(out / "feed.atom", atom_feed(
        feed_id=f"{base}/feed.atom", title="Myositis clinical trials: all changes",
        self_url=f"{base}/feed.atom", alternate_url=f"{base}/index.html", events=events,
        studies=studies, updated=now, labels=labels))]
    _make_folder(out / "feeds")
    for tag, definition in vocabulary.subtypes.items():
        mine = events_for_subtype(events, studies, tag)
        paths.append(_write(out / "feeds" / f"{tag}.atom", atom_feed(
            feed_id=f"{base}/feeds/{tag}.atom",
            title=f"Myositis clinical trials: {definition.label}",
            self_url=f"{base}/feeds/{tag}.atom", alternate_url=f"{base}/index.html",
            events=mine, studies=studies, updated=now, labels=labels)))
    return paths


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"Cannot create the report folder {folder}: "
                           f"{error.strerror or error}.") from error


def _write(path: Path, text: str) -> Path:
    """Write `text` to `path` whole or not at all; TrackerError naming the path if the disk
    refuses (full, read-only), with no half-written file left behind."""
    part = path.with_name(path.name + ".part")
    try:
        part.write_text(text, encoding="utf-8")
        part.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            part.unlink()
        raise WriteError(f"Cannot write {path}: {error.strerror or error}.") from error
    return path
