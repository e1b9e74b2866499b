"""The site's pages for readers: patients with myositis and their families.

    /                  what the tracker is, how many trials it follows, how fresh the data is
    /trials            the trials recruiting now, narrowed by a plain GET form (no scripts)
    /trials/{nct_id}   one trial's facts and its history of changes

Everything shown is in plain words: tag codes become their labels, statuses and ages become
sentences. Registry text reaches the templates as data and is autoescaped there. The
endpoints are plain functions, so Starlette runs their database reads in a worker thread.
A filter that cannot be understood (a country or place we do not know) is reported beside
its field with what was typed kept, and no search runs until it is fixed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tracker import countries, places
from tracker.errors import UnknownCountry, UnknownPlace
from tracker.jobs import Context
from tracker.matching import distance_km
from tracker.models import Study
from tracker.notify import freshness
from tracker.places import Place
from tracker.record import status_explained
from tracker.report import WEEK, Week
from tracker.store import StudyFilter
from tracker.text import history_url, split_list, study_url
from tracker.times import long_date
from tracker.views import who_can_join
from tracker.vocabulary import Vocabulary

RADII = (50, 100, 250, 500, 1000)  # km, the choices of the "near" search
DEFAULT_RADIUS = 250
SITES_IN_LIST = 5  # places shown per trial in the list; its own page shows them all
PAGE_SIZE = 25  # trials per page of the list: a page a phone can hold, quick to build
NCT_ID = re.compile(r"^NCT\d{8}$")


@dataclass(frozen=True)
class SitePlace:
    """One place a trial recruits in: a city may hold several of its sites."""

    label: str
    sites: int = 1
    km: int | None = None  # from the place searched near, when one was given


@dataclass
class Search:
    """The /trials form as typed, what it resolved to, and what could not be understood."""

    subtype: str = ""
    therapy: str = ""
    country: str = ""
    near: str = ""
    radius: int = DEFAULT_RADIUS
    children: bool = False
    country_name: str | None = None
    place: Place | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def narrowed(self) -> bool:
        return bool(self.subtype or self.therapy or self.country_name or self.children)


def routes(ctx: Context, env: Environment) -> list[Route]:
    """The reader's pages of `ctx`, rendered with `env` (the site's templates)."""

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(f"site/{name}").render(**values)
        return HTMLResponse(html, status_code=status)

    def home(request: Request) -> HTMLResponse:
        myositis = StudyFilter(myositis_only=True)  # as /trials lists them: no look-alikes
        fresh = freshness(ctx.store)
        return render("home.html", title="Myositis trials tracker",
                      tracked=ctx.store.count_studies(myositis),
                      recruiting=ctx.store.count_studies(
                          StudyFilter(myositis_only=True, recruiting=True)),
                      data_date=data_date(fresh.data_timestamp),
                      last_success=when(fresh.last_success), warning=fresh.warning(),
                      report=latest_report(ctx.settings.report_dir))

    def trials(request: Request) -> HTMLResponse:
        known = ctx.store.countries()
        search = read_search(dict(request.query_params), ctx.vocabulary, known)
        total, page, pages, cards = 0, 1, 1, []
        if not search.errors:
            where = StudyFilter(recruiting=True, children=search.children, myositis_only=True,
                                subtypes=(search.subtype,) if search.subtype else (),
                                therapies=(search.therapy,) if search.therapy else (),
                                countries=(search.country_name,) if search.country_name
                                else ())
            wanted = _whole(request.query_params.get("page"), 1)
            if search.place is None:  # counted and paged by the database
                total = ctx.store.count_studies(where)
                pages = max(1, -(-total // PAGE_SIZE))
                page = min(max(1, wanted), pages)
                shown = [(study, site_places(study, None)) for study in
                         ctx.store.study_page(where, (page - 1) * PAGE_SIZE, PAGE_SIZE)]
            else:  # near a place: every candidate's sites are measured, light columns only
                near: list[tuple[int, str, list[SitePlace]]] = []
                for nct_id, sites in ctx.store.recruiting_sites(where):
                    places_ = places_of(sites, search.place)
                    if places_ and places_[0].km is not None \
                            and places_[0].km <= search.radius:
                        near.append((places_[0].km, nct_id, places_))
                near.sort(key=lambda n: (n[0], n[1]))
                total = len(near)
                pages = max(1, -(-total // PAGE_SIZE))
                page = min(max(1, wanted), pages)
                chunk = near[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
                rows = ctx.store.studies(n[1] for n in chunk)
                shown = [(rows[nct_id], places_) for _, nct_id, places_ in chunk
                         if nct_id in rows]
            cards = [card(study, ctx.vocabulary, places_) for study, places_ in shown]
        pager = {"page": page, "pages": pages,
                 "previous": _page_url(request, page - 1) if page > 1 else None,
                 "next": _page_url(request, page + 1) if page < pages else None}
        vocabulary = ctx.vocabulary
        return render("trials.html", title="Trials recruiting now", search=search,
                      cards=cards, count_line=count_line(total, search),
                      pager=pager,
                      subtypes=[(k, t.label) for k, t in vocabulary.subtypes.items()],
                      therapies=[(k, vocabulary.label(k)) for k in vocabulary.therapy_names],
                      radii=RADII, shown=SITES_IN_LIST)

    def trial(request: Request) -> HTMLResponse:
        nct_id = str(request.path_params["nct_id"]).upper()
        study = ctx.store.study(nct_id) if NCT_ID.match(nct_id) else None
        if study is None or study.removed_at is not None:
            raise HTTPException(404)
        # Dated by the registry, newest first (the store's order stands within a day).
        changes = sorted(ctx.store.changes(nct_id=nct_id), key=lambda e: e.posted_on,
                         reverse=True)
        history = [{"date": long_date(e.posted_on), "iso": e.posted_on.isoformat(),
                    "text": e.plain or e.summary} for e in changes]
        info = card(study, ctx.vocabulary, site_places(study, None))
        return render("trial.html", title=study.brief_title or nct_id, trial=info,
                      history=history)

    return [
        Route("/", home),
        Route("/trials", trials),
        Route("/trials/{nct_id}", trial),
    ]


def _whole(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else default


def _page_url(request: Request, page: int) -> str:
    query = {k: v for k, v in request.query_params.items() if k != "page"}
    return "/trials?" + urlencode({**query, "page": str(page)})


def read_search(query: dict[str, str], vocabulary: Vocabulary, known: list[str]) -> Search:
    """The form's values; unknown choices are dropped, unknown names become field errors."""
    search = Search(
        subtype=query.get("subtype", "") if query.get("subtype") in vocabulary.subtypes else "",
        therapy=query.get("therapy", "") if query.get("therapy") in vocabulary.therapy_names
        else "",
        country=query.get("country", "").strip()[:100],
        near=query.get("near", "").strip()[:100],
        children=bool(query.get("children")),
    )
    radius = query.get("radius", "")
    search.radius = int(radius) if radius.isdigit() and int(radius) in RADII else DEFAULT_RADIUS
    if search.country:
        try:
            search.country_name = countries.resolve(search.country, known)
        except UnknownCountry as error:
            search.errors["country"] = str(error)
    if search.near:
        try:
            search.place = places.find(search.near)
        except UnknownPlace as error:
            search.errors["near"] = str(error)
    return search


def count_line(count: int, search: Search) -> str:
    """ "12 trials recruiting now", "3 trials recruiting within 250 km of Lyon, France"."""
    line = f"{count} {'trial' if count == 1 else 'trials'} recruiting"
    line += f" within {search.radius} km of {search.place.label}" if search.place else " now"
    if search.narrowed:
        line += f" {'matches' if count == 1 else 'match'} your choices"
    return line


def card(study: Study, vocabulary: Vocabulary, sites: list[SitePlace]) -> dict[str, Any]:
    """What a reader sees of one trial, in words."""
    return {
        "nct_id": study.nct_id,
        "title": study.brief_title or study.nct_id,
        "status": status_explained(study.overall_status),
        "tests": ", ".join(split_list(study.interventions)) or "Not given",
        "who": who_can_join(study),
        "subtypes": [vocabulary.label(t) for t in split_list(study.subtypes)],
        "therapies": [vocabulary.label(t) for t in split_list(study.therapies)],
        "places": sites,
        "countries": split_list(study.countries),
        "url": study_url(study.nct_id),
        "history_url": history_url(study.nct_id),
    }


def site_places(study: Study, near: Place | None) -> list[SitePlace]:
    """The study's recruiting places (city, country), one per city. Near a place: each with
    its distance in whole km, nearest first, places without coordinates last."""
    return places_of(study.recruiting_sites, near)


def places_of(recruiting_sites: str | None, near: Place | None) -> list[SitePlace]:
    """`site_places` from the stored column alone, so a search need not load whole rows."""
    sites = json.loads(recruiting_sites) if recruiting_sites else []
    found: dict[str, SitePlace] = {}
    for site in sites:
        label = ", ".join(site[k] for k in ("city", "country") if site.get(k)) or "Place not given"
        km = None
        if near is not None and "lat" in site and "lon" in site:
            km = round(distance_km(near.lat, near.lon, float(site["lat"]), float(site["lon"])))
        before = found.get(label)
        if before is None:
            found[label] = SitePlace(label, 1, km)
        else:
            nearest = min((d for d in (before.km, km) if d is not None), default=None)
            found[label] = SitePlace(label, before.sites + 1, nearest)
    out = list(found.values())
    if near is not None:
        out.sort(key=lambda p: (p.km is None, p.km or 0, p.label))
    return out


def latest_report(folder: Path) -> dict[str, str]:
    """The newest weekly report's link and name; the reports' index when none is written."""
    try:
        weeks = sorted((p.stem for p in folder.glob("*-W*.html") if WEEK.match(p.stem)),
                       reverse=True)
    except OSError:
        weeks = []
    if not weeks:
        return {"url": "/reports/", "label": "The weekly reports"}
    start = Week.parse(weeks[0]).start.date()
    return {"url": f"/reports/{weeks[0]}.html",
            "label": f"The latest weekly report (the week of {long_date(start)})"}


def when(moment: datetime | None) -> str | None:
    """3 December 2026 at 06:00 (UTC); None when it never happened."""
    return f"{long_date(moment.date())} at {moment:%H:%M} (UTC)" if moment else None


def data_date(stamp: str | None) -> str | None:
    """The registry's data timestamp as a date in words; as given if it is no ISO time."""
    if not stamp:
        return None
    try:
        return long_date(datetime.fromisoformat(stamp).date())
    except ValueError:
        return stamp
