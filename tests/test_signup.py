"""Sign-up and the subscriber's own page, served in-process: confirmation e-mails are written
as files (no mail server is set), on a copy of the migrated SQLite template."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from tests.conftest import load_study
from tracker import jobs, notify, runs, subscribers
from tracker.config import Settings
from tracker.database import Database
from tracker.jobs import Context
from tracker.matching import describe, is_due
from tracker.models import Cadence, ChangeSet, RunStatus, Subscriber
from tracker.record import content_hash, summarise
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.tags import Tagger, columns
from tracker.tokens import Purpose, make
from tracker.vocabulary import load_vocabulary
from tracker.web import create_app

SECRET = "s" * 32
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # a Wednesday


@dataclass
class Site:
    client: TestClient
    ctx: Context
    mail: Path

    def form(self, path: str = "/subscribe") -> str:
        """Open a form page; its CSRF token (the cookie is kept by the client)."""
        page = self.client.get(path)
        return token_in(page.text)

    def sign_up(self, **fields: Any) -> Any:
        return self.client.post("/subscribe", data={"csrf": self.form(), **fields})

    def confirmations(self) -> list[Path]:
        return sorted(self.mail.glob("*confirm*.txt")) if self.mail.exists() else []

    def subscriber(self, email: str) -> Subscriber:
        return subscribers.find(self.ctx.db, email)


def token_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


def text(html: str) -> str:
    """What a reader sees: the page without its tags and style."""
    return " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<style>.*?</style>", "", html))
                    .split())


@pytest.fixture
def site(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Site]:
    shutil.copyfile(migrated_sqlite, tmp_path / "tracker.db")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'tracker.db'}",
                        secret_key=SECRET, digest_dir=tmp_path / "mail",
                        report_dir=tmp_path / "reports",
                        confirmations_per_address_per_day=2, signups_per_client_per_hour=6)
    db = Database.open(settings.database_url)
    ctx = Context(settings, db, clock=lambda: NOW)
    with TestClient(create_app(ctx)) as client:
        yield Site(client, ctx, tmp_path / "mail")
    db.close()


def manage_link(site: Site, email: str) -> str:
    subscriber = site.subscriber(email)
    assert subscriber.id is not None
    return "/manage?token=" + make(SECRET, Purpose.MANAGE, subscriber.id, email)


def subscribed(site: Site, email: str = "pat@example.org", **prefs: Any) -> str:
    """A confirmed subscriber; their manage page's address."""
    subscribers.subscribe(site.ctx.db, email, Preferences(**prefs), confirmed=True, now=NOW)
    return manage_link(site, email)


# --- signing up -----------------------------------------------------------------------------

def test_the_form_labels_every_choice_in_words_and_hides_the_trap(site: Site) -> None:
    page = site.client.get("/subscribe")
    assert page.status_code == 200
    seen = text(page.text)
    for words in ("Your e-mail address", "Inclusion body myositis", "Dermatomyositis that "
                  "starts in childhood.", "JAK inhibitors", "Countries", "Near a town or city",
                  "Only trials open to children", "What matters to patients", "Every change",
                  "Day for the weekly e-mail", "Leave this empty"):
        assert words in seen
    assert 'value="ibm"' in page.text and ">ibm<" not in page.text  # codes only as values
    assert 'tabindex="-1" autocomplete="off"' in page.text
    assert "<script" not in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_a_sign_up_with_a_place_stores_its_coordinates_and_sends_one_confirmation(
        site: Site) -> None:
    answer = site.sign_up(email="Pat@Example.org", near="Lyon", radius="250",
                          subtype=["ibm", "not-a-tag"], therapy="jak", countries="france, UK",
                          children="1", changes="all", cadence="weekly", weekday="4")
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text
    stored = site.subscriber("Pat@example.org")
    assert stored.near_lat == pytest.approx(45.75, abs=0.05)
    assert stored.near_lon == pytest.approx(4.85, abs=0.05)
    assert (stored.radius_km, stored.near_label) == (250, "Lyon, France")
    assert (stored.subtypes, stored.therapies, stored.countries) == \
        ("ibm", "jak", "France|United Kingdom")
    assert (stored.children, stored.changes, stored.cadence, stored.weekday) == \
        (True, ChangeSet.ALL, Cadence.WEEKLY, 4)
    assert stored.confirmed_at is None
    [mail] = site.confirmations()
    assert "within 250 km of Lyon, France" in mail.read_text()


def test_errors_are_shown_beside_their_fields_with_what_was_typed_kept(site: Site) -> None:
    answer = site.sign_up(email="pat at example", near="Lyonn", countries="Frnace",
                          subtype="ibm", cadence="daily")
    assert answer.status_code == 400
    assert re.search(r'id="email-error" class="error">[^<]*not a valid e-mail', answer.text)
    assert 'id="countries-error"' in answer.text and "France" in answer.text
    assert 'id="near-error"' in answer.text
    assert 'value="pat at example"' in answer.text and 'value="Frnace"' in answer.text
    assert re.search(r'value="ibm" checked', answer.text)
    assert re.search(r'value="daily" checked', answer.text)
    assert subscribers.listing(site.ctx.db, include_ended=True) == []
    assert site.confirmations() == []


def test_an_unknown_place_shows_suggestions(site: Site) -> None:
    answer = site.sign_up(email="pat@example.org", near="Lyonn")
    error = re.search(r'id="near-error" class="error">([^<]*)<', answer.text)
    assert error and "did you mean" in error.group(1) and "Lyon, France" in error.group(1)


def test_an_existing_address_gets_the_same_answer_and_keeps_its_choices(site: Site) -> None:
    subscribed(site, subtypes=("ibm",))
    fresh = site.sign_up(email="new@example.org")
    known = site.sign_up(email="pat@example.org", subtype="jdm")
    pending = site.sign_up(email="new@example.org", subtype="jdm")
    assert fresh.status_code == known.status_code == pending.status_code == 200
    assert text(fresh.text) == text(known.text) == text(pending.text)
    assert site.subscriber("pat@example.org").subtypes == "ibm"  # only its own link changes it
    assert site.subscriber("new@example.org").subtypes == "jdm"


@pytest.mark.parametrize("token", [None, "", "forged.token.value"])
def test_a_missing_or_wrong_form_token_stores_nothing(site: Site, token: str | None) -> None:
    site.client.get("/subscribe")
    data = {"email": "pat@example.org"} | ({} if token is None else {"csrf": token})
    answer = site.client.post("/subscribe", data=data)
    assert answer.status_code == 400
    assert "This form expired; please try again" in answer.text
    token_in(answer.text)  # with a fresh form
    assert subscribers.listing(site.ctx.db, include_ended=True) == []


def test_a_form_token_works_only_with_its_own_cookie(site: Site) -> None:
    stolen = site.form()
    site.client.cookies.clear()
    site.client.get("/subscribe")  # another browser, another cookie
    answer = site.client.post("/subscribe", data={"csrf": stolen, "email": "pat@example.org"})
    assert answer.status_code == 400
    assert subscribers.listing(site.ctx.db, include_ended=True) == []


def test_a_filled_trap_field_is_answered_as_usual_and_does_nothing(site: Site) -> None:
    answer = site.sign_up(email="pat@example.org", website="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert subscribers.listing(site.ctx.db, include_ended=True) == []
    assert site.confirmations() == []


def test_one_address_gets_no_more_confirmations_a_day_than_the_limit(site: Site) -> None:
    answers = [site.sign_up(email="pat@example.org") for _ in range(4)]
    assert {a.status_code for a in answers} == {200}
    assert len({text(a.text) for a in answers}) == 1
    assert len(site.confirmations()) == 2


def test_one_client_gets_429_past_its_hourly_limit(site: Site) -> None:
    answers = [site.sign_up(email=f"p{n}@example.org") for n in range(7)]
    assert [a.status_code for a in answers] == [200] * 6 + [429]
    assert "Too many attempts" in answers[-1].text
    assert len(subscribers.listing(site.ctx.db, include_ended=True)) == 6


# --- the manage page ------------------------------------------------------------------------

def test_the_manage_page_shows_the_current_choices(site: Site) -> None:
    link = subscribed(site, subtypes=("ibm",), therapies=("jak",), countries=("France",),
                      near=(45.75, 4.85), radius_km=250, near_label="Lyon, France",
                      children=True, changes=ChangeSet.ALL, cadence=Cadence.DAILY)
    page = site.client.get(link)
    assert page.status_code == 200
    assert "pat@example.org" in page.text and 'name="email"' not in page.text
    for checked in ('value="ibm" checked', 'value="jak" checked', 'value="1" checked',
                    'value="all" checked', 'value="daily" checked', 'value="250" selected'):
        assert checked in page.text
    assert 'value="France"' in page.text and 'value="Lyon, France"' in page.text
    assert "Pause for a month" in page.text and "Unsubscribe" in page.text
    assert "Resume" not in page.text


def form_of(page: str) -> dict[str, Any]:
    """The save form's fields as the browser would send them, unchanged."""
    form = page.split('<form method="post" action="/manage">')[1].split("</form>")[0]
    data: dict[str, Any] = {}
    for tag in re.findall(r"<(?:input|select)[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        if tag.startswith("<select"):
            chosen = re.search(name.group(1) + r'".*?value="([^"]+)" selected', form, re.DOTALL)
            value = chosen.group(1) if chosen else None
        elif 'type="checkbox"' in tag or 'type="radio"' in tag:
            value = re.search(r'value="([^"]*)"', tag).group(1) if " checked" in tag \
                else None  # type: ignore[union-attr]
        else:
            value = re.search(r'value="([^"]*)"', tag).group(1)  # type: ignore[union-attr]
        if value is not None:
            data.setdefault(name.group(1), []).append(value)
    return data


def test_saving_changes_only_what_was_changed(site: Site) -> None:
    link = subscribed(site, subtypes=("ibm",), countries=("France",), near=(45.75, 4.85),
                      radius_km=250, near_label="Lyon, France", changes=ChangeSet.ALL,
                      weekday=3, recruiting_only=True)
    before = site.subscriber("pat@example.org")
    data = form_of(site.client.get(link).text)
    data["cadence"] = ["daily"]
    answer = site.client.post("/manage", data={**data, "action": "save"})
    assert answer.status_code == 200 and "Your choices are saved." in answer.text
    after = site.subscriber("pat@example.org")
    assert after.cadence == Cadence.DAILY
    assert replace_fields(after, cadence=before.cadence, weekday=before.weekday) == before


def replace_fields(subscriber: Subscriber, **values: Any) -> Subscriber:
    return Subscriber(**{**subscriber.model_dump(), **values})


def test_a_bad_change_is_shown_beside_its_field_and_saves_nothing(site: Site) -> None:
    link = subscribed(site)
    data = form_of(site.client.get(link).text)
    answer = site.client.post("/manage", data={**data, "near": "Lyonn", "action": "save"})
    assert answer.status_code == 400 and 'id="near-error"' in answer.text
    assert site.subscriber("pat@example.org").near_lat is None


def test_pause_resume_and_unsubscribe(site: Site) -> None:
    link = subscribed(site)
    token = link.split("token=")[1]

    def press(action: str) -> Any:
        csrf = token_in(site.client.get(link).text)
        return site.client.post("/manage", data={"csrf": csrf, "token": token,
                                                 "action": action})

    paused = press("pause")
    assert "Paused: no e-mails until 1 January 2027." in paused.text and "Resume" in paused.text
    assert site.subscriber("pat@example.org").paused_until is not None
    assert press("resume").status_code == 200
    assert site.subscriber("pat@example.org").paused_until is None
    ended = press("unsubscribe")
    assert "will receive no more e-mails" in ended.text
    assert site.subscriber("pat@example.org").unsubscribed_at is not None
    again = site.client.get(link)
    assert again.status_code == 400 and 'href="/subscribe"' in again.text


def test_opening_the_manage_page_changes_nothing(site: Site) -> None:
    link = subscribed(site)
    before = site.subscriber("pat@example.org")
    for query in ("", "&action=pause", "&action=unsubscribe"):
        assert site.client.get(link + query).status_code == 200
    assert site.subscriber("pat@example.org") == before


def test_a_manage_post_without_its_form_token_changes_nothing(site: Site) -> None:
    link = subscribed(site)
    site.client.get(link)
    answer = site.client.post("/manage", data={"token": link.split("token=")[1],
                                               "action": "unsubscribe"})
    assert answer.status_code == 400 and "This form expired" in answer.text
    assert site.subscriber("pat@example.org").unsubscribed_at is None


@pytest.mark.parametrize("kind", ["tampered", "unsubscribe token", "another address"])
def test_a_bad_manage_link_says_so_and_links_to_sign_up(site: Site, kind: str) -> None:
    link = subscribed(site)
    subscriber = site.subscriber("pat@example.org")
    assert subscriber.id is not None
    token = {"tampered": link.split("token=")[1][:-3] + "abc",
             "unsubscribe token": make(SECRET, Purpose.UNSUBSCRIBE, subscriber.id,
                                       subscriber.email),
             "another address": make(SECRET, Purpose.MANAGE, subscriber.id,
                                     "eve@example.org")}[kind]
    page = site.client.get(f"/manage?token={token}")
    assert page.status_code == 400
    assert "This link does not work" in page.text and 'href="/subscribe"' in page.text
    posted = site.client.post("/manage", data={"csrf": site.form(), "token": token,
                                               "action": "unsubscribe"})
    assert posted.status_code == 400
    assert site.subscriber("pat@example.org").unsubscribed_at is None


# --- the links in e-mails, and pausing ------------------------------------------------------

def manage_path(mail: str) -> str:
    found = re.search(r"(http://localhost:8000/manage\?token=\S+)", mail)
    assert found, "the e-mail has no manage link"
    url = urlsplit(found.group(1))
    return f"{url.path}?{url.query}"


def test_the_confirmation_e_mail_links_the_manage_page(site: Site) -> None:
    site.sign_up(email="pat@example.org")
    [mail] = site.confirmations()
    assert "Change what you receive" in mail.with_suffix(".html").read_text()
    page = site.client.get(manage_path(mail.read_text()))
    assert page.status_code == 200 and "pat@example.org" in page.text


def test_every_digest_links_the_manage_page(site: Site) -> None:
    store = Store(site.ctx.db)
    subscribed(site)
    record = load_study("NCT02803307")
    tagger = Tagger(load_vocabulary())
    run = runs.begin_sync(store.db, site.ctx.settings.query)
    with store.transaction() as tx:
        tx.insert_studies([{**summarise(record), **columns(tagger.tag(record), record),
                            "content_hash": content_hash(record),
                            "vocabulary": tagger.vocabulary.digest, "first_seen_at": NOW,
                            "last_changed_at": NOW}])
        tx.add_events([{"nct_id": "NCT02803307", "kind": "new", "field": "study",
                        "summary": "new study", "plain": "A new trial.", "sync_run_id": run,
                        "detected_at": NOW}])
    runs.finish_sync(store.db, run, RunStatus.OK, data_timestamp="2026-12-01T09:00:00")
    result = notify.prepare_digests(site.ctx.settings, store, NOW, operator=None)
    assert len(result.planned) == 1
    jobs.deliver(site.ctx)
    [mail] = site.mail.glob("*digest*.txt")
    assert "Change what you receive" in mail.with_suffix(".html").read_text()
    page = site.client.get(manage_path(mail.read_text()))
    assert page.status_code == 200 and "pat@example.org" in page.text


def test_a_paused_subscriber_is_not_due_until_the_pause_ends() -> None:
    subscriber = Subscriber(email="pat@example.org", created_at=NOW, confirmed_at=NOW,
                            cadence=Cadence.DAILY, paused_until=NOW + timedelta(days=30))
    assert not is_due(subscriber, NOW, UTC, 0)
    assert not is_due(subscriber, NOW + timedelta(days=29), UTC, 0)
    assert is_due(subscriber, NOW + timedelta(days=31), UTC, 0)
    assert is_due(replace_fields(subscriber, paused_until=None), NOW, UTC, 0)


def test_describe_names_the_place_chosen() -> None:
    subscriber = Subscriber(email="pat@example.org", created_at=NOW, near_lat=45.75,
                            near_lon=4.85, radius_km=100, near_label="Lyon, France")
    assert "within 100 km of Lyon, France" in describe(subscriber)
