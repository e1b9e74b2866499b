"""Subscribers: addresses, what each one wants, signed links, and the e-mail commands.

The matching rules are checked against change events made the way production makes them: a
baseline sync against the local fake API, then real (myositis-edited) records moved on with
`updated()` and synced again. The commands run in-process with click's runner, or as real
processes where the exact stderr and exit status matter.
"""

from __future__ import annotations

import copy
import email
import email.policy
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from tests.conftest import all_studies, updated
from tests.fakeapi import Registry
from tracker import outbox, subscribers, tokens
from tracker.cli import cli
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.database import Database, sqlite_path
from tracker.errors import BadAddress, BadToken
from tracker.matching import describe, distance_km, is_due, is_patient_change, wants
from tracker.models import ChangeEvent, Study, Subscriber
from tracker.store import Store
from tracker.subscribers import Preferences, normalise_address, parse_point
from tracker.sync import sync
from tracker.times import as_utc, utcnow

SECRET = "subscriber-tests-secret-0123456789"
PUBLIC_URL = "https://trials.example.org"

IMNM = "NCT07725679"  # IMNM trial, no sites; here registered after the baseline, open at 12+
DM = "NCT04078230"  # DM trial, recruiting; 13 sites in the US and China, one added in Lyon
ASS = "NCT00874328"  # antisynthetase ILD trial, status unknown; one site in Seoul
IBM = "NCT02803307"  # IBM trial, completed; three sites in Taipei; results posted here
PM = "NCT00987428"  # polymyositis trial, terminated; dropped by the registry query here

LYON = {"facility": "Hôpital Edouard Herriot", "status": "RECRUITING", "city": "Lyon",
        "zip": "69003", "country": "France", "geoPoint": {"lat": 45.74846, "lon": 4.84671}}
PARIS = (48.8566, 2.3522)  # Paris, Notre-Dame: about 392 km from Lyon as the crow flies

# The patient-facing sentences of the changes the first update makes (see `tracked`).
STOPPED = "Stopped early: sponsor decision"
RESULTS = "Results were posted"
LYON_SITE = "A new site is recruiting in Lyon, France"
SITE_RECRUITING = "The site in Beijing, China is now recruiting"
ELIGIBILITY = "Who can take part has changed"
NEW_TRIAL = "Now listed among the tracked myositis trials"


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


# --- addresses ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "normal"), [
    ("pat@example.org", "pat@example.org"),
    ("  Pat.Smith+trials@Example.ORG \n", "Pat.Smith+trials@example.org"),
    ("dr@bücher.example", "dr@xn--bcher-kva.example"),  # the form a mail header can carry
])
def test_good_addresses_are_normalised(given: str, normal: str) -> None:
    assert normalise_address(given) == normal


@pytest.mark.parametrize(("given", "reason"), [
    ("bad@@x", "The part after the @-sign contains invalid characters: '@'."),
    ("no-at-sign", "An email address must have an @-sign."),
    ("a@b\nBcc: victim@example.org", "it contains control characters."),
    ("a@b\n", "The part after the @-sign is not valid. It should have a period."),
    ("", "An email address must have an @-sign."),
    ("josé@example.org", "Internationalized characters before the @-sign are not supported"),
])
def test_bad_addresses_are_refused_saying_why(given: str, reason: str) -> None:
    with pytest.raises(BadAddress) as refused:
        normalise_address(given)

    assert str(refused.value).startswith(f"{given.strip()!r} is not a valid e-mail address: ")
    assert reason in str(refused.value)
    assert refused.value.exit_code == 2


def test_an_address_fit_for_a_header_reaches_the_to_header(env: dict[str, str]) -> None:
    invoke(env, "subscribe", "dr@bücher.example")

    [eml] = Path(env["TRACKER_DIGEST_DIR"]).glob("*.eml")
    raw = eml.read_bytes()
    assert b"\r\nTo: dr@xn--bcher-kva.example\r\n" in raw  # no encoded word in an address
    db = Database.open(env["TRACKER_DATABASE_URL"])
    [row] = outbox.messages(db)
    db.close()
    assert row.recipient == "dr@xn--bcher-kva.example"  # the SMTP envelope's RCPT TO
    assert invoke(env, "unsubscribe", "DR@Bücher.example").output == \
        "Unsubscribed: dr@xn--bcher-kva.example.\n"


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
        "No longer recruiting: the trial goes on with the people already enrolled": True,
        LYON_SITE: True,
        SITE_RECRUITING: True,
        RESULTS: True,
        STOPPED: True,
        ELIGIBILITY: False,
        "The site in Beijing, China is now: completed": False,
        "The site in Baltimore, United States is no longer listed": False,
        "Contact details changed": False,
        "Now plans to enrol 420 people (was 400)": False,
        "Reason given for stopping: Sponsor decision: funding ended": False,
        "New title: Arimoclomol in Inclusion Body Myositis (IBM)": False,
        "No longer listed among the tracked myositis trials": False,
    }


def test_recruitment_opening_counts_for_patients(tracked: Tracked) -> None:
    imnm = updated(tracked.registry.studies[IMNM])
    imnm["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    tracked.registry.put(imnm)
    tracked.sync()

    event = tracked.events()["Now recruiting"]
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
    closed = "No longer recruiting: the trial goes on with the people already enrolled"

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


def test_points_are_parsed_or_refused_with_the_reason() -> None:
    assert parse_point("45.75,4.85") == (45.75, 4.85)
    assert parse_point(" -33.87 , 151.21 ") == (-33.87, 151.21)
    for bad in ("45.75", "45.75;4.85", "north,east", "1,2,3"):
        with pytest.raises(ValueError, match="give latitude and longitude as LAT,LON"):
            parse_point(bad)
    with pytest.raises(ValueError, match=r"latitude must be within -90\.\.90"):
        parse_point("95,4")


def test_describe_says_the_filters_in_a_few_words() -> None:
    sub = subscriber(subtypes=("ibm", "dermatomyositis"), therapies=("jak",),
                     countries=("France",), near=(45.75, 4.85), radius_km=50, children=True,
                     recruiting_only=True, changes="all", cadence="daily")

    assert describe(sub) == ("subtypes ibm, dermatomyositis; treatments jak; in France; within "
                             "50 km of 45.75,4.85; open to children; recruiting only; every "
                             "change; daily")
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


# --- signed links -------------------------------------------------------------------------------

def test_a_token_round_trips_what_it_signs() -> None:
    token = tokens.make(SECRET, "confirm", 7, "pat@example.org")

    read = tokens.read(SECRET, "confirm", f" {token}\n", max_age=3600)

    assert read == tokens.Token("confirm", 7, "pat@example.org",
                                hashlib.sha256(token.encode()).hexdigest())
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)  # safe in a URL as it is


def test_a_tampered_token_is_refused() -> None:
    token = tokens.make(SECRET, "confirm", 7, "pat@example.org")
    payload, stamp, signature = token.split(".")
    other = tokens.make(SECRET, "confirm", 8, "eve@example.org").split(".")[0]

    # (The signature's first character: its last may only carry unused padding bits.)
    altered = ("B" if signature[0] == "A" else "A") + signature[1:]
    for bad in (f"{payload}.{stamp}.{altered}",  # signature altered
                f"{other}.{stamp}.{signature}",  # someone else's subscription
                token[: len(token) // 2],  # cut short by a mail client
                ""):
        with pytest.raises(BadToken, match="This link is not valid"):
            tokens.read(SECRET, "confirm", bad, max_age=3600)
    with pytest.raises(BadToken, match="not valid"):
        tokens.read("some-other-secret-0123456789", "confirm", token, max_age=3600)


def test_a_token_for_one_purpose_does_not_serve_another() -> None:
    unsubscribe = tokens.make(SECRET, "unsubscribe", 7, "pat@example.org")

    with pytest.raises(BadToken, match="not valid"):
        tokens.read(SECRET, "confirm", unsubscribe, max_age=3600)
    assert tokens.read(SECRET, "unsubscribe", unsubscribe, max_age=3600).subscriber_id == 7


def test_an_old_token_has_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    eight_days_ago = time.time() - 8 * 86400
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: eight_days_ago)
        token = tokens.make(SECRET, "confirm", 7, "pat@example.org")

    with pytest.raises(BadToken, match="This link has expired; subscribe again"):
        tokens.read(SECRET, "confirm", token, max_age=7 * 86400)
    assert tokens.read(SECRET, "confirm", token, max_age=9 * 86400).subscriber_id == 7


def test_a_confirmation_link_works_once(store: Store) -> None:
    now = utcnow()
    pending, _ = subscribers.subscribe(store.db, "pat@example.org", Preferences(),
                                       confirmed=False, now=now)
    assert pending.id is not None and pending.confirmed_at is None
    token = tokens.read(SECRET, "confirm",
                        tokens.make(SECRET, "confirm", pending.id, pending.email), 3600)

    confirmed = subscribers.confirm(store.db, token, now + timedelta(minutes=5))

    assert confirmed.confirmed_at == now + timedelta(minutes=5)
    with pytest.raises(BadToken, match=r"This confirmation link has already been used\."):
        subscribers.confirm(store.db, token, now + timedelta(minutes=6))
    assert subscribers.find(store.db, "pat@example.org").confirmed_at == \
        now + timedelta(minutes=5)


def test_confirming_an_ended_or_different_subscription_is_refused(store: Store) -> None:
    now = utcnow()
    gone, _ = subscribers.subscribe(store.db, "gone@example.org", Preferences(),
                                    confirmed=False, now=now)
    assert gone.id is not None
    subscribers.unsubscribe(store.db, gone.id, now)
    ended = tokens.read(SECRET, "confirm", tokens.make(SECRET, "confirm", gone.id, gone.email),
                        3600)
    someone_else = tokens.read(SECRET, "confirm",
                               tokens.make(SECRET, "confirm", gone.id, "eve@example.org"), 3600)

    for token in (ended, someone_else):
        with pytest.raises(BadToken, match="no longer exists; subscribe again"):
            subscribers.confirm(store.db, token, now)
    assert subscribers.find(store.db, "gone@example.org").confirmed_at is None


# --- the commands --------------------------------------------------------------------------------

def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'tracker.db'}",
            "TRACKER_SECRET_KEY": SECRET, "TRACKER_PUBLIC_URL": PUBLIC_URL,
            "TRACKER_MAIL_FROM": "Myositis trials <news@trials.example.org>",
            "TRACKER_SMTP_HOST": "", "TRACKER_DIGEST_DIR": str(tmp_path / "mail"), **extra}


def invoke(env: dict[str, str], *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`tracker ARGS` in a fresh process, as a user's shell would run it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CTGOV_"))}
    return subprocess.run([sys.executable, "-m", "tracker", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def listed(env: dict[str, str], *options: str) -> list[dict[str, Any]]:
    rows = json.loads(invoke(env, "subscribers", "--json", *options).output)
    assert isinstance(rows, list)
    return rows


def database_file(env: dict[str, str]) -> Path:
    path = sqlite_path(env["TRACKER_DATABASE_URL"])
    assert path is not None
    return path


def nobody_subscribed(env: dict[str, str]) -> bool:
    """No subscription was stored: no database was made (an option click refused before the
    command ran), or the one made lists nobody, not even as ended."""
    return not database_file(env).exists() or listed(env, "--all") == []


def confirmation_emails(env: dict[str, str]) -> list[EmailMessage]:
    found = []
    for path in sorted(Path(env["TRACKER_DIGEST_DIR"]).glob("*-confirm-*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def confirm_token(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    lines = text.get_content().replace("\r\n", "\n")
    found = re.search(r"^https://trials\.example\.org/confirm\?token=([A-Za-z0-9_.-]+)$",
                      lines, re.MULTILINE)
    assert found, lines
    assert f'href="{found.group(0)}"' in html.get_content()
    return found.group(1)


def only_subscriber(env: dict[str, str]) -> Subscriber:
    db = Database.open(env["TRACKER_DATABASE_URL"])
    try:
        [row] = subscribers.listing(db)
    finally:
        db.close()
    assert row.id is not None
    return row


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


@pytest.mark.slow
def test_subscribe_without_a_secret_key_fails_in_one_line_naming_it(
        env: dict[str, str]) -> None:
    without = {k: v for k, v in env.items() if k != "TRACKER_SECRET_KEY"}

    result = run(without, "subscribe", "pat@example.org")

    assert result.returncode == 2
    assert result.stderr.startswith("tracker: error: TRACKER_SECRET_KEY is not set; it signs "
                                    "confirmation and unsubscribe links.")
    assert len(result.stderr.strip().splitlines()) == 1
    assert nobody_subscribed(env)  # nobody was subscribed half-way
    assert not Path(env["TRACKER_DIGEST_DIR"]).exists()


@pytest.mark.slow
@pytest.mark.parametrize(("address", "reason"), [
    ("bad@@x", "The part after the @-sign contains invalid characters"),
    ("no-at-sign", "An email address must have an @-sign."),
    ("a@b\nBcc: victim@example.org", "it contains control characters."),
    ("", "An email address must have an @-sign."),
])
def test_subscribe_refuses_a_bad_address_in_one_line(env: dict[str, str], address: str,
                                                    reason: str) -> None:
    result = run(env, "subscribe", address)

    assert result.returncode == 2
    assert result.stderr.startswith(f"tracker: error: {address!r} is not a valid e-mail "
                                    "address: ")
    assert reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_subscribe_sends_a_confirmation_whose_link_confirms_once(env: dict[str, str]) -> None:
    folder = env["TRACKER_DIGEST_DIR"]

    result = invoke(env, "subscribe", "Pat@Example.org", "--subtype", "ibm", "--near",
                    "45.75,4.85", "--radius-km", "50", "--cadence", "daily")

    assert result.output == (
        "Created: Pat@example.org (subtypes ibm; within 50 km of 45.75,4.85; changes that "
        "matter to patients; daily).\n"
        f"A confirmation e-mail was written to {folder}/; nothing else is sent until it is "
        "confirmed.\n")
    [message] = confirmation_emails(env)
    assert message["To"] == "Pat@example.org"
    assert message["Subject"] == "Please confirm your subscription to myositis trial updates"
    assert message["List-Unsubscribe"] is None
    [row] = listed(env)
    assert (row["email"], row["confirmed"], row["cadence"]) == ("Pat@example.org", False,
                                                                 "daily")
    assert (row["subtypes"], row["near"]) == (["ibm"], {"lat": 45.75, "lon": 4.85,
                                                        "radius_km": 50})
    token = confirm_token(message)

    confirmed = invoke(env, "confirm", token)

    assert confirmed.output == "Confirmed: Pat@example.org will receive daily digests.\n"
    assert listed(env)[0]["confirmed"] is True
    again = invoke(env, "confirm", token, code=2)
    assert again.stderr == "tracker: error: This confirmation link has already been used.\n"


def test_subscribing_again_once_confirmed_updates_without_a_second_opt_in(
        env: dict[str, str]) -> None:
    invoke(env, "subscribe", "pat@example.org", "--subtype", "ibm", "--cadence", "daily")
    invoke(env, "confirm", confirm_token(confirmation_emails(env)[0]))

    result = invoke(env, "subscribe", "PAT@example.org", "--subtype", "dermatomyositis",
                    "--country", "uk", "--changes", "all")

    assert result.output.startswith("Updated: ")
    assert result.output.endswith(" (subtypes dermatomyositis; in United Kingdom; every change; "
                                  "weekly (Monday)).\n")
    assert len(confirmation_emails(env)) == 1
    [row] = listed(env)
    assert row["email"] == "pat@example.org"  # one subscription per address, whatever its case
    assert row["confirmed"] is True
    assert row["summary"] == ("subtypes dermatomyositis; in United Kingdom; every change; "
                              "weekly (Monday)")
    assert (row["subtypes"], row["countries"], row["changes"]) == (
        ["dermatomyositis"], ["United Kingdom"], "all")


def test_subscribing_again_before_confirming_sends_a_fresh_confirmation(
        env: dict[str, str]) -> None:
    invoke(env, "subscribe", "pat@example.org")
    time.sleep(1.1)  # a token's timestamp has one-second resolution

    result = invoke(env, "subscribe", "pat@example.org", "--cadence", "daily")

    assert result.output.startswith("Updated: pat@example.org (all myositis trials; changes "
                                    "that matter to patients; daily).\nA confirmation e-mail")
    first, second = confirmation_emails(env)
    assert confirm_token(first) != confirm_token(second)
    invoke(env, "confirm", confirm_token(second))
    assert listed(env)[0]["confirmed"] is True


def test_the_operator_may_subscribe_someone_already_confirmed(env: dict[str, str]) -> None:
    without_secret = {k: v for k, v in env.items() if k != "TRACKER_SECRET_KEY"}

    result = invoke(without_secret, "subscribe", "pat@example.org", "--therapy", "jak",
                    "--confirmed")

    assert result.output == ("Created: pat@example.org (treatments jak; changes that matter to "
                             "patients; weekly (Monday)).\n")
    assert confirmation_emails(env) == []
    assert listed(env)[0]["confirmed"] is True


def test_a_weekly_subscriber_may_choose_the_day(env: dict[str, str]) -> None:
    result = invoke(env, "subscribe", "pat@example.org", "--day", "Friday", "--confirmed")

    assert result.output.endswith("; weekly (Friday)).\n")
    assert only_subscriber(env).weekday == 4
    assert listed(env)[0]["day"] == "Friday"
    # The site's day is shown for those who did not choose one.
    invoke(env, "subscribe", "dr@example.org", "--confirmed")
    assert listed({**env, "TRACKER_WEEKLY_DAY": "wed"})[0]["day"] == "Wednesday"


def test_unsubscribe_ends_a_subscription_once(env: dict[str, str]) -> None:
    invoke(env, "subscribe", "pat@example.org", "--confirmed")

    assert invoke(env, "unsubscribe", "PAT@example.org").output == \
        "Unsubscribed: pat@example.org.\n"
    assert invoke(env, "unsubscribe", "pat@example.org").output == \
        "pat@example.org was already unsubscribed.\n"
    unknown = invoke(env, "unsubscribe", "nobody@example.org", code=4)
    assert unknown.stderr == ("tracker: error: nobody@example.org is not subscribed ('tracker "
                              "subscribers' lists everyone).\n")
    assert listed(env) == []
    [ended] = listed(env, "--all")
    assert (ended["email"], ended["unsubscribed"]) == ("pat@example.org", True)


def test_subscribers_lists_who_gets_what(env: dict[str, str]) -> None:
    missing = invoke(env, "subscribers", code=2)  # only reads: it makes no database
    assert missing.stderr == (f"tracker: error: No snapshot at {database_file(env)}; run "
                              "'tracker sync' first or set TRACKER_DATABASE_URL.\n")
    assert not database_file(env).exists()
    invoke(env, "db", "upgrade")
    assert invoke(env, "subscribers").output == \
        "No subscribers yet; add one with 'tracker subscribe EMAIL'.\n"
    invoke(env, "subscribe", "pat@example.org", "--subtype", "ibm", "--confirmed")
    invoke(env, "subscribe", "dr@example.org", "--therapy", "jak", "--changes", "all",
           "--cadence", "daily")
    invoke(env, "subscribe", "gone@example.org", "--confirmed")
    invoke(env, "unsubscribe", "gone@example.org")

    lines = invoke(env, "subscribers").output.splitlines()

    assert len(lines) == 2
    assert re.fullmatch(r"dr@example\.org +awaiting confirmation +no digest yet +treatments "
                        r"jak; every change; daily", lines[0])
    assert re.fullmatch(r"pat@example\.org +confirmed +no digest yet +subtypes ibm; changes "
                        r"that matter to patients; weekly \(Monday\)", lines[1])
    every = invoke(env, "subscribers", "--all").output
    assert re.search(r"^gone@example\.org +ended ", every, re.MULTILINE)
    rows = listed(env)
    for row in rows:  # when each subscribed (just now), as an ISO time
        assert as_utc(datetime.fromisoformat(row.pop("created_at"))) <= utcnow()
    assert rows == [
        {"email": "dr@example.org", "confirmed": False, "unsubscribed": False,
         "subtypes": [], "therapies": ["jak"], "countries": [], "near": None,
         "children": False, "recruiting_only": False, "changes": "all", "cadence": "daily",
         "day": None, "summary": "treatments jak; every change; daily",
         "last_digest_at": None},
        {"email": "pat@example.org", "confirmed": True, "unsubscribed": False,
         "subtypes": ["ibm"], "therapies": [], "countries": [], "near": None,
         "children": False, "recruiting_only": False, "changes": "patient",
         "cadence": "weekly", "day": "Monday",
         "summary": "subtypes ibm; changes that matter to patients; weekly (Monday)",
         "last_digest_at": None},
    ]


@pytest.mark.slow
def test_an_unknown_subtype_is_refused_with_the_choices(env: dict[str, str]) -> None:
    result = run(env, "subscribe", "pat@example.org", "--subtype", "lupus")

    assert result.returncode == 2
    assert "'lupus' is not a known tag; choose from dermatomyositis, jdm" in result.stderr
    assert "Traceback" not in result.stderr
    assert nobody_subscribed(env)


@pytest.mark.parametrize(("args", "message"), [
    (["--near", "45.75"], "give latitude and longitude as LAT,LON, e.g. 45.75,4.85"),
    (["--near", "95,4.85"], "latitude must be within -90..90"),
    (["--radius-km", "50"], "--radius-km needs --near LAT,LON"),
    (["--cadence", "hourly"], "'hourly' is not one of 'daily', 'weekly'"),
    (["--day", "someday"], "'someday' is not a day of the week; give e.g. mon or monday"),
    (["--cadence", "daily", "--day", "fri"], "--day only applies to weekly digests"),
])
def test_bad_subscription_options_are_refused(env: dict[str, str], args: list[str],
                                              message: str) -> None:
    result = invoke(env, "subscribe", "pat@example.org", *args, code=2)

    assert message in result.stderr
    assert nobody_subscribed(env)


def test_confirm_refuses_a_link_that_is_not_a_confirmation(env: dict[str, str]) -> None:
    invoke(env, "subscribe", "pat@example.org")
    row = only_subscriber(env)
    unsubscribe_token = tokens.make(SECRET, "unsubscribe", row.id, row.email)

    result = invoke(env, "confirm", unsubscribe_token, code=2)

    assert result.stderr == ("tracker: error: This link is not valid (it may be incomplete or "
                             "altered).\n")
    assert listed(env)[0]["confirmed"] is False


def test_confirm_refuses_a_link_older_than_the_confirmation_days(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    invoke(env, "subscribe", "pat@example.org")
    row = only_subscriber(env)
    two_days_ago = time.time() - 2 * 86400
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: two_days_ago)
        old = tokens.make(SECRET, "confirm", row.id, row.email)

    result = invoke({**env, "TRACKER_CONFIRM_DAYS": "1"}, "confirm", old, code=2)

    assert result.stderr == ("tracker: error: This link has expired; subscribe again to get a "
                             "new one.\n")
    assert invoke(env, "confirm", old).output.startswith("Confirmed: pat@example.org")

