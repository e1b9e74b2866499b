"""Subscribers: addresses, points on the map, confirmation links, and the e-mail commands.

Subscriptions are stored in a real database. The commands run in-process with click's runner,
or as real processes where the exact stderr and exit status matter.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tracker import outbox, subscribers, tokens
from tracker.cli import cli
from tracker.database import Database, sqlite_path
from tracker.errors import BadAddress, BadToken
from tracker.models import Subscriber
from tracker.store import Store
from tracker.subscribers import Preferences, normalise_address, parse_point
from tracker.times import as_utc, utcnow

SECRET = "subscriber-tests-secret-0123456789"
PUBLIC_URL = "https://trials.example.org"


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


# --- points on the map ------------------------------------------------------------------------

def test_points_are_parsed_or_refused_with_the_reason() -> None:
    assert parse_point("45.75,4.85") == (45.75, 4.85)
    assert parse_point(" -33.87 , 151.21 ") == (-33.87, 151.21)
    for bad in ("45.75", "45.75;4.85", "north,east", "1,2,3"):
        with pytest.raises(ValueError, match="give latitude and longitude as LAT,LON"):
            parse_point(bad)
    with pytest.raises(ValueError, match=r"latitude must be within -90\.\.90"):
        parse_point("95,4")


# --- confirmation links -----------------------------------------------------------------------

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
    rows = json.loads(invoke(env, "subscribers", "--json", *options).stdout)
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
        "Created: Pat@example.org (Inclusion body myositis; within 50 km of 45.75,4.85; "
        "changes that "
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
    assert result.output.endswith(" (Dermatomyositis; in United Kingdom; every change; "
                                  "weekly (Monday)).\n")
    assert len(confirmation_emails(env)) == 1
    [row] = listed(env)
    assert row["email"] == "pat@example.org"  # one subscription per address, whatever its case
    assert row["confirmed"] is True
    assert row["summary"] == ("Dermatomyositis; in United Kingdom; every change; "
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

    assert result.output == ("Created: pat@example.org (treatments: JAK inhibitors; "
                             "changes that matter to "
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
    assert re.fullmatch(r"dr@example\.org +awaiting confirmation +no digest yet +treatments: "
                        r"JAK inhibitors; every change; daily", lines[0])
    assert re.fullmatch(r"pat@example\.org +confirmed +no digest yet +Inclusion body myositis; "
                        r"changes that matter to patients; weekly \(Monday\)", lines[1])
    every = invoke(env, "subscribers", "--all").output
    assert re.search(r"^gone@example\.org +ended ", every, re.MULTILINE)
    rows = listed(env)
    for row in rows:  # when each subscribed (just now), as an ISO time
        assert as_utc(datetime.fromisoformat(row.pop("created_at"))) <= utcnow()
    assert rows == [
        {"email": "dr@example.org", "confirmed": False, "unsubscribed": False,
         "subtypes": [], "therapies": ["jak"], "countries": [], "near": None,
         "children": False, "recruiting_only": False, "changes": "all", "cadence": "daily",
         "day": None, "summary": "treatments: JAK inhibitors; every change; daily",
         "last_digest_at": None},
        {"email": "pat@example.org", "confirmed": True, "unsubscribed": False,
         "subtypes": ["ibm"], "therapies": [], "countries": [], "near": None,
         "children": False, "recruiting_only": False, "changes": "patient",
         "cadence": "weekly", "day": "Monday",
         "summary": "Inclusion body myositis; changes that matter to patients; weekly (Monday)",
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

