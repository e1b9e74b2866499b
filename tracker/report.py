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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment
from markupsafe import Markup

from tracker import charts, figures, landscape, templating
from tracker.errors import BadWeek, WriteError
from tracker.feeds import atom_feed, events_for_subtype
from tracker.matching import STOPPED
from tracker.models import ChangeEvent, ChangeKind, Study
from tracker.notify import freshness
from tracker.record import site_key, status_label
from tracker.store import STUDY, Store, StudyFilter
from tracker.text import split_list as split
from tracker.text import study_url
from tracker.times import as_utc, long_date, stamp
from tracker.views import who_can_join
from tracker.vocabulary import Vocabulary

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
RECRUITING_LISTED = 250  # more than myositis has ever had; beyond it, the site lists them all


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
        return cls.of(today - timedelta(days=7))

    @classmethod
    def of(cls, day: date) -> Week:
        year, number, _ = day.isocalendar()
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


def collect(store: Store, vocabulary: Vocabulary, week: Week, now: datetime, *,
            trial_pages: str | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data. `trial_pages` is the base URL of
    the site's trial pages (".../trials"); without it trials link to ClinicalTrials.gov."""
    first, end = week.start.date(), week.end.date()
    mine = StudyFilter(myositis_only=True)  # look-alikes (viral myositis...) are left out
    events = sorted(store.changes(posted_from=first, posted_before=end, where=mine),
                    key=lambda e: (e.posted_on, e.id or 0))
    late = seen_late(store, week, mine)
    named = store.studies({e.nct_id for e in [*events, *late]})
    link = _linker(trial_pages)

    new = sorted(landscape.studies(store, mine, landscape.posted_between(
        "first_posted", first, end)), key=lambda s: (s.first_posted or "", s.nct_id))
    new_ids = {s.nct_id for s in new}
    newly_tracked = [e for e in events if e.kind == ChangeKind.NEW and e.nct_id not in new_ids]
    results = _results(landscape.studies(store, mine, landscape.posted_between(
        "results_first_posted", first, end)), events, named, link, vocabulary)
    stopped = [e for e in events if e.kind == ChangeKind.STATUS and e.field == "overallStatus"
               and json.loads(e.new_value or "null") in STOPPED]
    changes = [e for e in events if e.kind not in (ChangeKind.NEW, ChangeKind.RESULTS_POSTED)]
    changed = {e.nct_id for e in changes}
    posted = {n: day for n, day in store.versions_posted(first, end).items()
              if n not in changed and n not in new_ids}
    current = {s.nct_id: s for s in landscape.studies(
        store, mine, STUDY.c.nct_id.in_(sorted(posted)))} if posted else {}
    updated = [{**_trial(current[n], link, vocabulary), "date": day,
                "status_checked": _month(current[n].status_verified)} for n, day in sorted(
        posted.items(), key=lambda item: (item[1], item[0])) if n in current]
    recruiting = StudyFilter(myositis_only=True, recruiting=True)
    completed = [row for row in landscape.columns(
        store, mine, figures.ENROLMENT_COLUMNS, STUDY.c.overall_status == "COMPLETED")]
    fresh = freshness(store, now)
    coverage = _coverage(store.watching_since(), week)
    figures_ = [
        figures.recruiting_by_subtype(_single(landscape.grouped(store, recruiting, "subtypes")),
                                      vocabulary),
        figures.recruiting_by_country(_single(landscape.grouped(store, recruiting,
                                                                "recruiting_countries"))),
        figures.by_phase(_single(landscape.grouped(store, mine, "phases"))),
        figures.by_therapy(_single(landscape.grouped(store, mine, "therapies")), vocabulary),
        figures.per_quarter(_single(landscape.grouped(store, mine, "first_posted"))),
        figures.sponsor_types(_single(landscape.grouped(store, mine, "sponsor_class"))),
        figures.wait_to_recruit(landscape.columns(store, mine, figures.WAIT_COLUMNS,
                                                  STUDY.c.start_date_type == "ACTUAL")),
        figures.enrolment(completed, store.earliest_records(landscape.revised(
            store, [row[0] for row in completed if row[2] == "ACTUAL"]))),
    ]
    tracked = landscape.count(store, mine)
    return {
        "week": week.name,
        "start": first.isoformat(),
        "end": (end - timedelta(days=1)).isoformat(),
        "generated_at": now.isoformat(timespec="seconds"),
        "coverage": coverage,
        "headline": {"tracked": tracked,
                     "recruiting": landscape.count(store, recruiting),
                     "new": len(new), "changed": len(changed), "results_posted": len(results),
                     "stopped": len({e.nct_id for e in stopped}), "seen_late": len(late)},
        "look_alikes": landscape.count(store, StudyFilter()) - tracked,
        "new_trials": [{**_trial(s, link, vocabulary), "date": s.first_posted} for s in new],
        "newly_tracked": [{**_trial(named.get(e.nct_id), link, vocabulary, e.nct_id),
                           "date": e.posted_on.isoformat()} for e in newly_tracked],
        "results": results,
        "changes": _by_kind(changes, named, link),
        "updated": updated,
        "seen_late": [_change(e, named, link) for e in late],
        "recruiting": recruiting_now(
            landscape.studies(store, recruiting, newest=RECRUITING_LISTED), events, vocabulary,
            link, landscape.count(store, recruiting),
            trial_pages or "https://clinicaltrials.gov/search?cond=myositis&aggFilters=status:rec"),
        "figures": [f.as_dict() for f in figures_],
        "subtype_by_status": figures.subtype_by_status(
            landscape.grouped(store, mine, "subtypes", "overall_status"), vocabulary),
        "results_overdue": [{**o, "url": link(o["nct_id"]),
                             "registry_url": study_url(o["nct_id"])}
                            for o in figures.overdue_results(landscape.columns(
                                store, mine, figures.OVERDUE_COLUMNS,
                                STUDY.c.overall_status == "COMPLETED"), now.date())],
        "freshness": {"data_timestamp": fresh.data_timestamp,
                      "last_success": fresh.last_success.isoformat(timespec="minutes")
                      if fresh.last_success else None,
                      "last_sync_failed": fresh.last_sync_failed,
                      "failed_syncs": fresh.failed_syncs, "stale": fresh.stale,
                      "warning": fresh.warning(),
                      "last_error": fresh.last_error if fresh.last_sync_failed else None},
    }


def seen_late(store: Store, week: Week, where: StudyFilter | None = None
              ) -> list[ChangeEvent]:
    """Changes the tracker saw during `week` that the registry posted in an earlier week and
    that were not in that week's report when it was first written (or it never was)."""
    written = store.report_weeks()
    late = []
    for event in store.changes(since=week.start, where=where):
        if as_utc(event.detected_at) >= week.end or event.posted_on >= week.start.date():
            continue
        own = written.get(Week.of(event.posted_on).name)
        if own is None or as_utc(event.detected_at) > as_utc(own.first_written_at):
            late.append(event)
    return sorted(late, key=lambda e: (e.posted_on, e.id or 0))


def _coverage(since: date | None, week: Week) -> dict[str, Any]:
    """Which sections are complete for `week`. The registry's own dates (first posted,
    results posted) always are; what changed is known only for updates posted after the
    registry day of the tracker's first sync (`since`)."""
    if since is not None and since < week.start.date():
        return {"watching_since": since.isoformat(), "complete": True, "note": ""}
    started = (f"The tracker started watching on {long_date(since)}, "
               f"{'during' if since < week.end.date() else 'after'} this week"
               if since else "The tracker has not finished a sync yet")
    return {"watching_since": since.isoformat() if since else None, "complete": False,
            "note": f"{started}: new trials and first results are complete; changes are "
                    "partial (trials updated then show how they stand now, not what "
                    "changed)."}


def _month(partial: str | None) -> str | None:
    """ "2026-11" (the registry's status-verified month) -> "November 2026"."""
    try:
        return f"{date.fromisoformat((partial or '')[:7] + '-01'):%B %Y}"
    except ValueError:
        return None


def _single(counts: Counter[tuple[Any, ...]]) -> Counter[Any]:
    """Counts grouped by one column, keyed by its value rather than a 1-tuple."""
    return Counter({key[0]: n for key, n in counts.items()})


def _linker(trial_pages: str | None) -> Callable[[str], str]:
    if trial_pages is None:
        return study_url
    base = trial_pages.rstrip("/")
    return lambda nct_id: f"{base}/{quote(nct_id, safe='')}"


def _trial(study: Study | None, link: Callable[[str], str], vocabulary: Vocabulary,
           nct_id: str | None = None) -> dict[str, Any]:
    nct_id = study.nct_id if study else (nct_id or "")
    tags = split(study.subtypes) if study else []
    return {"nct_id": nct_id, "title": study.brief_title if study else nct_id,
            "status": status_label(study.overall_status) if study else "",
            "subtype_tags": tags, "subtypes": [vocabulary.label(t) for t in tags],
            "therapies": [vocabulary.label(t) for t in split(study.therapies)] if study else [],
            "url": link(nct_id), "registry_url": study_url(nct_id)}


def _results(studies: list[Study], events: list[ChangeEvent], named: dict[str, Study],
             link: Callable[[str], str], vocabulary: Vocabulary) -> list[dict[str, Any]]:
    """Trials whose results were first posted in the week (`studies`, by the registry's
    date) and those a change says posted results (a date the record may not carry yet)."""
    found: dict[str, tuple[Study | None, str | None]] = {
        s.nct_id: (s, s.results_first_posted) for s in studies}
    for event in events:
        if event.kind == ChangeKind.RESULTS_POSTED and event.nct_id not in found:
            found[event.nct_id] = (named.get(event.nct_id), event.posted_on.isoformat())
    return [{**_trial(study, link, vocabulary, nct_id), "date": day}
            for nct_id, (study, day) in sorted(found.items(), key=lambda i: (i[1][1] or "",
                                                                              i[0]))]


def _change(event: ChangeEvent, studies: dict[str, Study],
            link: Callable[[str], str]) -> dict[str, Any]:
    """A change with the day the registry posted it, and the day the tracker saw it when
    that was after the week it was posted in."""
    study = studies.get(event.nct_id)
    seen = as_utc(event.detected_at).date()
    week = Week.of(event.posted_on)
    return {"nct_id": event.nct_id, "title": study.brief_title if study else event.nct_id,
            "plain": event.plain or event.summary, "summary": event.summary,
            "kind": event.kind, "date": event.posted_on.isoformat(),
            "seen": seen.isoformat() if seen >= week.end.date() or seen < week.start.date()
            else None,
            "url": link(event.nct_id), "registry_url": study_url(event.nct_id)}


def _by_kind(events: list[ChangeEvent], studies: dict[str, Study],
             link: Callable[[str], str]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for event in events:
        grouped.setdefault(event.kind, []).append(_change(event, studies, link))
    return {kind: grouped[kind] for kind in KIND_TITLES if kind in grouped}


def recruiting_now(recruiting: list[Study], events: list[ChangeEvent], vocabulary: Vocabulary,
                   link: Callable[[str], str], total: int | None = None,
                   everything: str = "") -> dict[str, Any]:
    """Each recruiting trial with who can join and where, and two indexes into them: by kind
    of myositis and by country. Sites added in the week are marked new. When `recruiting` is
    only the newest `RECRUITING_LISTED` of `total`, `everything` is where all are listed."""
    added: dict[str, set[str]] = {}
    for event in events:
        if event.kind == ChangeKind.SITE_ADDED and event.new_value:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                added.setdefault(event.nct_id, set()).add(site_key(json.loads(event.new_value)))
    trials = [_recruiting_trial(s, added.get(s.nct_id, set()), vocabulary, link)
              for s in sorted(recruiting, key=lambda s: (s.brief_title.casefold(), s.nct_id))]
    kinds = []
    for tag in [*vocabulary.subtypes, ""]:
        mine = [t for t in trials if (tag in t["subtype_tags"]) or (not tag and
                                                                    not t["subtype_tags"])]
        if mine:
            kinds.append({"tag": tag or "none", "anchor": f"kind-{tag or 'none'}",
                          "label": vocabulary.label(tag) if tag else "Kind not stated",
                          "trials": [_entry(t) for t in mine]})
    countries: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        for place in trial["places"]:
            countries.setdefault(place["country"], []).append(
                {**_entry(trial), "cities": [c["city"] for c in place["cities"]],
                 "new": any(c["new"] for c in place["cities"])})
    return {
        "trials": trials,
        "total": len(trials) if total is None else total,
        "everything": everything if total is not None and total > len(trials) else "",
        "by_kind": kinds,
        "by_country": [{"country": name, "anchor": "in-" + _slug(name), "trials": entries}
                       for name, entries in sorted(countries.items(),
                                                   key=lambda i: i[0].casefold())],
    }


def _entry(trial: dict[str, Any]) -> dict[str, Any]:
    return {"nct_id": trial["nct_id"], "title": trial["title"], "anchor": trial["anchor"],
            "subtypes": trial["subtypes"], "countries": [p["country"] for p in trial["places"]]}


def _recruiting_trial(study: Study, added: set[str], vocabulary: Vocabulary,
                      link: Callable[[str], str]) -> dict[str, Any]:
    sites = json.loads(study.recruiting_sites) if study.recruiting_sites else []
    places: dict[str, dict[str, list[str]]] = {}
    new: dict[tuple[str, str], bool] = {}
    for site in sites:
        country = " ".join(str(site.get("country") or "Country not given").split())
        city = " ".join(str(site.get("city") or "City not given").split())
        facilities = places.setdefault(country, {}).setdefault(city, [])
        facility = " ".join(str(site.get("facility") or "").split())
        if facility and facility not in facilities:
            facilities.append(facility)
        if site_key(site) in added:
            new[(country, city)] = True
    tags = split(study.subtypes)
    return {
        "nct_id": study.nct_id, "anchor": f"trial-{_slug(study.nct_id)}",
        "title": study.brief_title or study.nct_id,
        "url": link(study.nct_id), "registry_url": study_url(study.nct_id),
        "subtype_tags": tags, "subtypes": [vocabulary.label(t) for t in tags],
        "therapies": [vocabulary.label(t) for t in split(study.therapies)],
        "who": who_can_join(study), "children": bool(study.children),
        "min_age_years": study.min_age_years, "max_age_years": study.max_age_years,
        "sites": len(sites), "new_sites": sum(1 for s in sites if site_key(s) in added),
        "places": [{"country": country, "anchor": "in-" + _slug(country),
                    "cities": [{"city": city, "facilities": facilities,
                                "new": new.get((country, city), False)}
                               for city, facilities in sorted(
                                   cities.items(), key=lambda i: i[0].casefold())]}
                   for country, cities in sorted(places.items(),
                                                 key=lambda i: i[0].casefold())],
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-") or "x"


# --- rendering -----------------------------------------------------------------------------

def _environment(templates_dir: Path | None = None) -> Environment:
    env = templating.environment(override=templates_dir, strict=False)
    env.filters["md"] = markdown_escape
    env.filters["stamp"] = stamp
    env.filters["by_year"] = by_year
    env.filters["day"] = day
    return env


def day(value: str | None) -> str:
    """A registry date as people write it: "2026-11-21" -> "21 November 2026"."""
    try:
        return long_date(date.fromisoformat((value or "")[:10]))
    except ValueError:
        return value or "unknown date"


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
    charts_ = {figure["key"]: Markup(_chart(figure))  # noqa: S704 (escaped in charts)
               for figure in data["figures"]}
    return _environment(templates_dir).get_template("report.html").render(
        data=data, charts=charts_, kinds=KIND_TITLES)


def _chart(figure: dict[str, Any]) -> str:
    rows = [(label, n) for label, n in figure["rows"]]
    if figure["kind"] == "columns":
        return charts.column_chart(figure["title"], rows)
    return charts.bar_chart(figure["title"], rows[:15])


def render_markdown(data: dict[str, Any], templates_dir: Path | None = None) -> str:
    template = _environment(templates_dir).get_template("report.md")
    return template.render(data=data, kinds=KIND_TITLES)


def render_index(weeks: list[str], templates_dir: Path | None = None) -> str:
    return _environment(templates_dir).get_template("report_index.html").render(weeks=weeks)


KIND_TITLES = {
    "status": "Recruitment and status", "site_added": "New sites",
    "site_removed": "Sites no longer listed", "dates": "Timelines", "enrollment": "Enrolment",
    "eligibility": "Who can take part", "interventions": "Treatments",
    "outcomes": "What is measured", "phase": "Phase", "sponsor": "Sponsors",
    "contacts": "Contacts", "title": "Titles", "removed": "No longer tracked",
    "other": "Other updates", "results_posted": "Results posted", "new": "Newly tracked",
}


def write(store: Store, vocabulary: Vocabulary, week: Week, out: Path, now: datetime,
          site_url: str, templates_dir: Path | None = None, *,
          trial_pages: str | None = None) -> list[Path]:
    """Write the week's .html, .md and .json, rewrite earlier weeks' pages that gained changes
    seen late, then the index and the feeds; returns the paths written.

    Templates in `templates_dir` replace the shipped ones of the same name (see
    tracker.templating); None means the shipped templates only.
    """
    _make_folder(out)
    written = [*_write_week(store, vocabulary, week, out, now, templates_dir, trial_pages)]
    for late in weeks_to_rewrite(store, out, exclude=week):
        written.extend(_write_week(store, vocabulary, late, out, now, templates_dir,
                                   trial_pages))
    weeks = sorted((p.stem for p in out.glob("*-W*.html") if WEEK.match(p.stem)),
                   reverse=True)
    written.append(_write(out / "index.html", render_index(weeks, templates_dir)))
    written.extend(_feeds(store, vocabulary, out, now, site_url))
    return written


def _write_week(store: Store, vocabulary: Vocabulary, week: Week, out: Path, now: datetime,
                templates_dir: Path | None, trial_pages: str | None) -> list[Path]:
    newest = store.newest_event_id()  # read first: a change recorded meanwhile is not lost
    data = collect(store, vocabulary, week, now, trial_pages=trial_pages)
    paths = [
        _write(out / f"{week.name}.html", render_html(data, templates_dir)),
        _write(out / f"{week.name}.md", render_markdown(data, templates_dir)),
        _write(out / f"{week.name}.json", json.dumps(data, indent=2, ensure_ascii=False)),
    ]
    store.mark_report_written(week.name, now, newest)
    return paths


def weeks_to_rewrite(store: Store, out: Path, exclude: Week) -> list[Week]:
    """Weeks whose page is in `out` and that the registry posted changes in which the tracker
    saw after the page was last written (a sync that ran late, or caught up)."""
    written = {name: row for name, row in store.report_weeks().items()
               if name != exclude.name and (out / f"{name}.html").exists()}
    if not written:
        return []
    stale = set()
    for event in store.events_after(min(row.last_event_id for row in written.values())):
        name = Week.of(event.posted_on).name
        if name in written and (event.id or 0) > written[name].last_event_id:
            stale.add(name)
    return [Week.parse(name) for name in sorted(stale)]


def _feeds(store: Store, vocabulary: Vocabulary, out: Path, now: datetime,
           site_url: str) -> list[Path]:
    events = store.changes(limit=500, where=StudyFilter(myositis_only=True))
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
