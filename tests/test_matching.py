"""Matching: which changes matter to patients, what each subscription wants, and when it is due.

The rules are checked against change events made the way production makes them: a baseline
sync against the local fake API, then real (myositis-edited) records moved on with `updated()`
and synced again. Whether a digest is due is checked on subscriptions alone, at chosen moments
in chosen time zones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import all_studies, updated
from tests.fakeapi import Registry
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.matching import Wish, describe, distance_km, is_due, is_patient_change, wants
from tracker.models import ChangeEvent, Study, Subscriber
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.sync import sync
from tracker.times import utcnow
from tracker.vocabulary import load_vocabulary

IMNM = "NCT07725679"  # IMNM trial, no sites; here registered after the baseline, open at 12+
DM = "NCT04078230"  # DM trial, recruiting; 13 sites in the US and China, one added in Lyon
ASS = "NCT00874328"  # antisynthetase ILD trial, status unknown; one site in Seoul
IBM = "NCT02803307"  # IBM trial, completed; three sites in Taipei; results posted here
PM = "NCT00987428"  # polymyositis trial, terminated; dropped by the registry query here

LYON = {"facility": "Hôpital Edouard Herriot", "status": "RECRUITING", "city": "Lyon",
        "zip": "69003", "country": "France", "geoPoint": {"lat": 45.74846, "lon": 4.84671}}
PARIS = (48.8566, 2.3522)  # Paris, Notre-Dame: about 392 km from Lyon as the crow flies

# The patient-facing sentences of the changes the first update makes (see `tracked`).
STOPPED = ("Stopped early: nobody new can join. Reason given: \u201cSponsor decision\u201d. "
           "In plain words: the company or group running the trial (the sponsor) decided "
           "this. If you are taking part, talk to your study team about what this means "
           "for you")
RESULTS = "Results were posted"
LYON_SITE = "A new site is recruiting in Lyon, France"
SITE_RECRUITING = ("Now recruiting at the site in Beijing, China: you can ask the study team "
                   "about joining")
ELIGIBILITY = "Who can take part has changed"
NEW_TRIAL = "Now listed among the tracked myositis trials"
RECRUITING_NOW = "Now recruiting: you can ask the study team about joining"
CLOSED = ("No longer recruiting: the trial goes on with the people already taking part, and "
          "nobody new can join")


# --- a tracked registry and its changes ----------------------------------------------------

@dataclass
class Tracked:
    settings: Settings
    store: Store
    client: CtGovClient
    registry: Registry

    def sync(self) -> None:
        stamp = datetime.fromisoformat(self.registry.data_timestamp) + timedelta(days=1)
        self.registry.data_timestamp = stamp.isoformat()
        result = sync(self.settings, self.store, self.client)
        assert result.mode == "incremental"

    def events(self) -> dict[str, ChangeEvent]:
        """Every change so far, by its plain sentence (each is distinct here)."""
        events = self.store.changes()
        by_plain = {e.plain or e.summary: e for e in events}
        assert len(by_plain) == len(events)
        return by_plain

    def studies(self) -> dict[str, Study]:
        return self.store.studies(e.nct_id for e in self.store.changes())


@pytest.fixture
def tracked(settings: Settings, store: Store, client: CtGovClient,
            registry: Registry) -> Tracked:
    """A baseline, then one update from the registry:

    - IMNM: newly registered (absent at baseline), open to children from 12;
    - IBM: results posted (the baseline record had none);
    - DM: a recruiting site added in Lyon, a Beijing site now recruiting, a new criterion;
    - ASS: stopped early (unknown -> terminated).
    """
    studies = all_studies()
    registry.drop(IMNM)
    before_results = copy.deepcopy(studies[IBM])
    del before_results["resultsSection"]
    before_results["hasResults"] = False
    dm = copy.deepcopy(studies[DM])
    dm["protocolSection"]["contactsLocationsModule"]["locations"][1]["status"] = \
        "NOT_YET_RECRUITING"
    registry.put(before_results, dm)
    sync(settings, store, client)

    imnm = copy.deepcopy(studies[IMNM])
    eligibility = imnm["protocolSection"]["eligibilityModule"]
    eligibility["minimumAge"] = "12 Years"
    eligibility["stdAges"] = ["CHILD", "ADULT"]
    registry.put(imnm, updated(studies[IBM], days=30))
    dm = updated(dm)
    dm["protocolSection"]["contactsLocationsModule"]["locations"][1]["status"] = "RECRUITING"
    dm["protocolSection"]["contactsLocationsModule"]["locations"].append(dict(LYON))
    dm["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] += \
        "\n* No prior JAK inhibitor"
    ass = updated(studies[ASS])
    ass["protocolSection"]["statusModule"].update(overallStatus="TERMINATED",
                                                  whyStopped="Sponsor decision")
    registry.put(dm, ass)
    world = Tracked(settings, store, client, registry)
    world.sync()
    return world


def subscriber(**preferences: Any) -> Subscriber:
    """A subscription as `tracker subscribe` stores it (Preferences.columns)."""
    return Subscriber(id=1, email="pat@example.org", created_at=utcnow(),
                      **Preferences(**preferences).columns())


def wanted(tracked: Tracked, sub: Subscriber) -> set[str]:
    studies = tracked.studies()
    return {plain for plain, event in tracked.events().items()
            if wants(sub, studies.get(event.nct_id), event)}


# --- which changes matter to patients ------------------------------------------------------

def test_is_patient_change_keeps_what_matters_to_someone_joining_a_trial(
        tracked: Tracked) -> None:
    registry = tracked.registry
    dm = updated(registry.studies[DM])
    protocol = dm["protocolSection"]
    protocol["statusModule"]["overallStatus"] = "ACTIVE_NOT_RECRUITING"
    protocol["contactsLocationsModule"]["locations"][2]["status"] = "COMPLETED"
    protocol["contactsLocationsModule"]["locations"].pop(0)  # Baltimore
    protocol["contactsLocationsModule"]["centralContacts"][0]["phone"] = "86-10-0000000"
    imnm = updated(registry.studies[IMNM])
    imnm["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = 420
    ass = updated(registry.studies[ASS])
    ass["protocolSection"]["statusModule"]["whyStopped"] = "Sponsor decision: funding ended"
    ibm = updated(registry.studies[IBM])
    ibm["protocolSection"]["identificationModule"]["briefTitle"] = \
        "Arimoclomol in Inclusion Body Myositis (IBM)"
    registry.put(dm, imnm, ass, ibm)
    registry.drop(PM)
    tracked.sync()

    verdicts = {plain: is_patient_change(e) for plain, e in tracked.events().items()}

    assert verdicts == {
        NEW_TRIAL: True,
        CLOSED: True,
        LYON_SITE: True,
        SITE_RECRUITING: True,
        RESULTS: True,
        STOPPED: True,
        ELIGIBILITY: False,
        "The trial has finished at the site in Beijing, China: nobody new can join": False,
        "The site in Baltimore, United States is no longer listed": False,
        "Contact details changed": False,
        "Now plans to enrol 420 people (was 400)": False,
        "Reason given for stopping: \u201cSponsor decision: funding ended\u201d. In plain "
        "words: the company or group running the trial (the sponsor) decided this; funding "
        "is the money to run the trial": False,
        "New title: Arimoclomol in Inclusion Body Myositis (IBM)": False,
        "No longer listed among the tracked myositis trials": False,
    }


def test_recruitment_opening_counts_for_patients(tracked: Tracked) -> None:
    imnm = updated(tracked.registry.studies[IMNM])
    imnm["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    tracked.registry.put(imnm)
    tracked.sync()

    event = tracked.events()[RECRUITING_NOW]
    assert (event.kind, event.field) == ("status", "overallStatus")
    assert is_patient_change(event)


# --- what each subscription wants -----------------------------------------------------------

@pytest.mark.parametrize(("preferences", "expected"), [
    pytest.param({}, {NEW_TRIAL, RESULTS, LYON_SITE, SITE_RECRUITING, STOPPED},
                 id="patient changes by default"),
    pytest.param({"changes": "all"},
                 {NEW_TRIAL, RESULTS, LYON_SITE, SITE_RECRUITING, STOPPED, ELIGIBILITY},
                 id="all changes"),
    pytest.param({"subtypes": ("ibm",)}, {RESULTS}, id="one subtype"),
    pytest.param({"subtypes": ("dermatomyositis", "imnm")},
                 {NEW_TRIAL, LYON_SITE, SITE_RECRUITING}, id="either of two subtypes"),
    pytest.param({"therapies": ("jak",)}, {LYON_SITE, SITE_RECRUITING}, id="therapy"),
    pytest.param({"therapies": ("jak",), "changes": "all"},
                 {LYON_SITE, SITE_RECRUITING, ELIGIBILITY}, id="therapy, all changes"),
    pytest.param({"subtypes": ("ibm",), "therapies": ("jak",)}, set(), id="subtype and therapy"),
    pytest.param({"countries": ("France",)}, {LYON_SITE, SITE_RECRUITING}, id="country"),
    pytest.param({"countries": ("Taiwan", "South Korea")}, {RESULTS, STOPPED},
                 id="either of two countries"),
    pytest.param({"children": True}, {NEW_TRIAL}, id="open to children"),
    pytest.param({"recruiting_only": True}, {LYON_SITE, SITE_RECRUITING}, id="recruiting only"),
    pytest.param({"recruiting_only": True, "countries": ("France",)},
                 {LYON_SITE, SITE_RECRUITING}, id="recruiting in a country"),
    pytest.param({"recruiting_only": True, "countries": ("South Korea",)}, set(),
                 id="not recruiting in that country"),
    pytest.param({"near": (45.75, 4.85), "radius_km": 50}, {LYON_SITE, SITE_RECRUITING},
                 id="near Lyon"),
    pytest.param({"near": PARIS, "radius_km": 380}, set(), id="380 km of Paris"),
    pytest.param({"near": PARIS, "radius_km": 400}, {LYON_SITE, SITE_RECRUITING},
                 id="400 km of Paris"),
    pytest.param({"near": PARIS}, set(), id="default radius 100 km"),
    pytest.param({"near": (37.55, 126.99), "radius_km": 10}, {STOPPED}, id="near Seoul"),
    pytest.param({"near": (25.04, 121.5), "radius_km": 20, "subtypes": ("ibm",)}, {RESULTS},
                 id="near Taipei, IBM"),
])
def test_wants_applies_each_filter(tracked: Tracked, preferences: dict[str, Any],
                                   expected: set[str]) -> None:
    assert wanted(tracked, subscriber(**preferences)) == expected


def test_distances_are_great_circle_kilometres() -> None:
    lyon = LYON["geoPoint"]
    assert isinstance(lyon, dict)

    assert distance_km(*PARIS, lyon["lat"], lyon["lon"]) == pytest.approx(392, abs=3)
    assert distance_km(*PARIS, *PARIS) == 0
    assert distance_km(0, 0, 0, 180) == pytest.approx(20015, abs=1)  # half the equator


def test_recruiting_only_still_brings_news_of_recruitment_closing(tracked: Tracked) -> None:
    dm = updated(tracked.registry.studies[DM])
    dm["protocolSection"]["statusModule"]["overallStatus"] = "ACTIVE_NOT_RECRUITING"
    tracked.registry.put(dm)
    tracked.sync()
    closed = CLOSED

    assert closed in wanted(tracked, subscriber(recruiting_only=True))
    assert closed in wanted(tracked, subscriber(recruiting_only=True, countries=("France",)))
    assert closed in wanted(tracked, subscriber(recruiting_only=True, near=(45.75, 4.85)))
    assert closed not in wanted(tracked, subscriber(recruiting_only=True,
                                                    countries=("Taiwan",)))
    # The trial no longer recruits, so its earlier news is no longer for these subscribers.
    assert wanted(tracked, subscriber(recruiting_only=True)) == {closed}


def test_a_change_to_a_study_not_in_the_snapshot_is_never_wanted(tracked: Tracked) -> None:
    event = tracked.events()[RESULTS]

    assert not wants(subscriber(changes="all"), None, event)


def test_a_study_without_a_myositis_subtype_is_never_announced_to_patients() -> None:
    # A look-alike (viral myositis, myositis ossificans...) the broad query brings in: its
    # changes reach only the operator's digest of every change.
    new = ChangeEvent(id=1, sync_run_id=2, nct_id=DM, kind="new", field="", summary="New study",
                      detected_at=utcnow(), last_update_posted="2026-11-20")
    look_alike = Study(nct_id=DM, brief_title="Influenza-associated myositis", subtypes=None,
                       recruiting=True, children=True, content_hash="x")
    myositis = Study(nct_id=DM, brief_title="Myositis", subtypes="iim", recruiting=True,
                     children=True, content_hash="x")

    assert wants(subscriber(), myositis, new)
    assert not wants(subscriber(), look_alike, new)
    assert not wants(subscriber(changes="all"), look_alike, new)



def test_describe_says_the_filters_in_a_few_words() -> None:
    sub = subscriber(subtypes=("ibm", "dermatomyositis"), therapies=("jak",),
                     countries=("France",), near=(45.75, 4.85), radius_km=50, children=True,
                     recruiting_only=True, changes="all", cadence="daily")

    assert describe(sub) == ("ibm, dermatomyositis; treatments: jak; in France; within "
                             "50 km of 45.75,4.85; open to children; recruiting only; every "
                             "change; daily")
    words = load_vocabulary().label  # what patients read: labels, never tag codes
    assert describe(sub, labels=words).startswith(
        "Inclusion body myositis, Dermatomyositis; treatments: JAK inhibitors; in France")
    assert describe(subscriber()) == ("all myositis trials; changes that matter to patients; "
                                      "weekly")
    assert describe(subscriber(), weekly_day=0).endswith("; weekly (Monday)")  # the site's day
    assert describe(subscriber(weekday=4)).endswith("; weekly (Friday)")
    assert describe(subscriber(weekday=4), weekly_day=0).endswith("; weekly (Friday)")
    assert describe(sub, weekly_day=0).endswith("; daily")


# --- when a digest is due -----------------------------------------------------------------------

PARIS_TZ = ZoneInfo("Europe/Paris")
TOKYO = ZoneInfo("Asia/Tokyo")


def served(when: datetime | None, **preferences: Any) -> Subscriber:
    """A confirmed subscription last served at `when` (None: never)."""
    sub = subscriber(**preferences)
    sub.confirmed_at = datetime(2026, 1, 1, tzinfo=UTC)
    sub.served_at = when
    return sub


def at(zone: ZoneInfo, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=zone).astimezone(UTC)


def test_a_subscription_never_served_is_due_at_once() -> None:
    now = at(UTC, 2026, 12, 2, 7)  # a Wednesday
    assert is_due(served(None), now, UTC, 0)
    assert is_due(served(None, cadence="daily"), now, UTC, 0)


def test_unconfirmed_or_ended_subscriptions_are_never_due() -> None:
    now = at(UTC, 2026, 12, 2, 7)
    waiting = served(None)
    waiting.confirmed_at = None
    ended = served(None)
    ended.unsubscribed_at = now - timedelta(days=1)

    assert not is_due(waiting, now, UTC, 0)
    assert not is_due(ended, now, UTC, 0)


def test_a_daily_subscription_is_due_once_per_local_day() -> None:
    sub = served(at(PARIS_TZ, 2026, 12, 2, 7), cadence="daily")

    assert not is_due(sub, at(PARIS_TZ, 2026, 12, 2, 23, 59), PARIS_TZ, 0)
    assert is_due(sub, at(PARIS_TZ, 2026, 12, 3, 0, 0), PARIS_TZ, 0)
    # 23:30 UTC on the 2nd is already the 3rd in Paris, not yet in UTC.
    assert is_due(sub, at(UTC, 2026, 12, 2, 23, 30), PARIS_TZ, 0)
    assert not is_due(sub, at(UTC, 2026, 12, 2, 23, 30), UTC, 0)


def test_a_weekly_subscription_is_due_from_the_start_of_its_day_in_the_zone() -> None:
    sub = served(at(TOKYO, 2026, 11, 30, 7))  # Monday in Tokyo

    assert not is_due(sub, at(TOKYO, 2026, 12, 6, 23, 59), TOKYO, 0)  # Sunday
    assert is_due(sub, at(TOKYO, 2026, 12, 7, 0, 0), TOKYO, 0)  # next Monday, local midnight
    assert at(TOKYO, 2026, 12, 7, 0, 0) == at(UTC, 2026, 12, 6, 15)  # a Sunday in UTC


def test_a_weekly_subscription_keeps_its_own_day_or_the_sites() -> None:
    monday = at(UTC, 2026, 11, 30, 7)
    friday = at(UTC, 2026, 12, 4, 7)
    own = served(monday, weekday=4)  # chose Friday
    site = served(monday)

    assert is_due(own, friday, UTC, 0)
    assert not is_due(site, friday, UTC, 0)
    assert is_due(site, friday, UTC, 4)  # the site moved TRACKER_WEEKLY_DAY to Friday


def test_a_missed_day_is_caught_up_once_and_the_week_after_waits_for_its_day() -> None:
    sub = served(at(UTC, 2026, 11, 23, 7))  # served on a Monday; next Monday's run missed
    wednesday = at(UTC, 2026, 12, 2, 7)

    assert is_due(sub, wednesday, UTC, 0)
    sub.served_at = wednesday
    assert not is_due(sub, at(UTC, 2026, 12, 6, 7), UTC, 0)  # Sunday
    assert is_due(sub, at(UTC, 2026, 12, 7, 7), UTC, 0)  # Monday again, not next Wednesday


@pytest.mark.parametrize("change", [
    (datetime(2026, 3, 29, 7), datetime(2026, 3, 22, 7)),  # Paris springs forward on the 29th
    (datetime(2026, 10, 25, 7), datetime(2026, 10, 18, 7)),  # and falls back on the 25th
])
def test_a_change_of_clocks_does_not_move_the_day(change: tuple[datetime, datetime]) -> None:
    sunday, week_before = (moment.replace(tzinfo=PARIS_TZ) for moment in change)
    sub = served(week_before.astimezone(UTC), weekday=6)  # Sundays

    assert not is_due(sub, (sunday - timedelta(minutes=7 * 60 + 1)).astimezone(UTC), PARIS_TZ, 0)
    assert is_due(sub, (sunday - timedelta(hours=7)).astimezone(UTC), PARIS_TZ, 0)  # 00:00 local
    assert not is_due(served(sunday.astimezone(UTC), cadence="daily"),
                      (sunday + timedelta(hours=16)).astimezone(UTC), PARIS_TZ, 0)  # 23:00 local


def test_rows_from_before_served_at_count_from_their_last_digest() -> None:
    sub = served(None)
    sub.last_digest_at = datetime(2026, 11, 30, 7)  # naive, as SQLite hands it back: UTC

    assert not is_due(sub, at(UTC, 2026, 12, 6, 23), UTC, 0)
    assert is_due(sub, at(UTC, 2026, 12, 7, 0), UTC, 0)



def test_subscribers_who_chose_the_same_filters_share_one_wish() -> None:
    base = subscriber(subtypes=("dermatomyositis",), countries=("France",), near=PARIS)
    other_reader = base.model_copy(update={"id": 2, "email": "ana@example.org",
                                           "cadence": "daily", "near_label": "Paris, France"})
    wider = base.model_copy(update={"radius_km": 500.0})
    shouting = base.model_copy(update={"countries": "FRANCE"})  # countries compare uncased

    assert Wish.of(other_reader) == Wish.of(base) == Wish.of(shouting)
    assert hash(Wish.of(other_reader)) == hash(Wish.of(base))
    assert Wish.of(wider) != Wish.of(base)
    assert Wish.of(base.model_copy(update={"changes": "all"})) != Wish.of(base)
    assert Wish.of(base.model_copy(update={"children": True})) != Wish.of(base)
