"""Digests as subscribers receive them: which changes, grouped how, said how, and when.

Studies and change events are made the way production makes them: a baseline sync against
the local fake API, then real records moved on with `updated()` and synced again. Digests are
then planned and queued by `tracker.notify.prepare_digests`, and every assertion reads the
queued e-mail back with the standard library's parser, as a mail client would.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from tests.conftest import updated
from tests.fakeapi import Registry
from tracker import digest as render
from tracker import notify, outbox, runs, subscribers, tokens
from tracker.cli import cli
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.errors import BadToken, RetriesExhausted
from tracker.models import (
    ChangeEvent,
    MessageKind,
    MessageStatus,
    OutboxMessage,
    RunStatus,
    Subscriber,
)
from tracker.notify import NotifyResult
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.sync import sync
from tracker.times import utcnow

SECRET = "digest-tests-secret-key-0123456789"
PUBLIC_URL = "https://trials.example.org"
MAIL_FROM = "Myositis trials <news@trials.example.org>"

IMNM = "NCT07725679"  # Efgartigimod in IMNM: not yet recruiting, no sites; tags imnm, fcrn
DM = "NCT04078230"  # Tofacitinib in refractory DM: recruiting, 13 sites; dermatomyositis, jak
ASS = "NCT00874328"  # Rituximab in antisynthetase ILD: status unknown, one site in Seoul
IBM = "NCT02803307"  # Arimoclomol in IBM: completed, three sites in Taipei

# A real French site, in the API's location shape.
LYON = {"facility": "Hôpital Edouard Herriot", "status": "RECRUITING", "city": "Lyon",
        "zip": "69003", "country": "France", "geoPoint": {"lat": 45.74846, "lon": 4.84671}}
TAIPEI = {"facility": "National Taiwan University Hospital", "status": "COMPLETED",
          "city": "Taipei", "country": "Taiwan", "geoPoint": {"lat": 25.04776, "lon": 121.53185}}

Edit = Callable[[Registry], None]


# --- edits a sponsor would post, in the API's own shapes --------------------------------------

def set_status(nct_id: str, status: str, why: str | None = None) -> Edit:
    def edit(registry: Registry) -> None:
        study = updated(registry.studies[nct_id])
        module = study["protocolSection"]["statusModule"]
        module["overallStatus"] = status
        if why:
            module["whyStopped"] = why
        registry.put(study)
    return edit


def add_site(nct_id: str, site: dict[str, Any]) -> Edit:
    def edit(registry: Registry) -> None:
        study = updated(registry.studies[nct_id])
        study["protocolSection"].setdefault("contactsLocationsModule", {}) \
            .setdefault("locations", []).append(dict(site))
        registry.put(study)
    return edit


def set_site_status(nct_id: str, index: int, status: str) -> Edit:
    def edit(registry: Registry) -> None:
        study = updated(registry.studies[nct_id])
        study["protocolSection"]["contactsLocationsModule"]["locations"][index]["status"] = status
        registry.put(study)
    return edit


def set_title(nct_id: str, title: str) -> Edit:
    def edit(registry: Registry) -> None:
        study = updated(registry.studies[nct_id])
        study["protocolSection"]["identificationModule"]["briefTitle"] = title
        registry.put(study)
    return edit


def add_criterion(nct_id: str, text: str) -> Edit:
    def edit(registry: Registry) -> None:
        study = updated(registry.studies[nct_id])
        study["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] += f"\n* {text}"
        registry.put(study)
    return edit


# --- the world a digest is made in ------------------------------------------------------------

@dataclass
class World:
    settings: Settings
    store: Store
    client: CtGovClient
    registry: Registry

    def sync(self, *edits: Edit) -> None:
        """The sponsor posts `edits`, the registry refreshes, and the tracker syncs."""
        for edit in edits:
            edit(self.registry)
        stamp = datetime.fromisoformat(self.registry.data_timestamp) + timedelta(days=1)
        self.registry.data_timestamp = stamp.isoformat()
        result = sync(self.settings, self.store, self.client)
        assert result.mode == "incremental" and result.events > 0

    def subscribe(self, address: str, *, confirmed: bool = True, now: datetime | None = None,
                  **preferences: Any) -> Subscriber:
        subscriber, _ = subscribers.subscribe(self.store.db, address,
                                              Preferences(**preferences), confirmed=confirmed,
                                              now=now or utcnow())
        return subscriber

    def digests(self, now: datetime | None = None, *, operator: bool = False,
                dry_run: bool = False) -> NotifyResult:
        return notify.prepare_digests(self.settings, self.store, now or utcnow(),
                                      operator="operator" if operator else None,
                                      dry_run=dry_run)

    def queued(self, kind: str = "digest") -> list[OutboxMessage]:
        return [m for m in outbox.messages(self.store.db) if m.kind == kind]

    def newest_event(self) -> int:
        return max(e.id or 0 for e in self.store.changes())


@pytest.fixture
def world(settings: Settings, store: Store, client: CtGovClient, registry: Registry) -> World:
    mail = replace(settings, secret_key=SECRET, public_url=PUBLIC_URL, mail_from=MAIL_FROM)
    sync(mail, store, client)  # the baseline: no change events
    return World(mail, store, client, registry)


def parse(row: OutboxMessage) -> EmailMessage:
    message = email.message_from_bytes(row.message, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML alternatives, in the order the message carries them (with the wire's
    CRLF line ends read as newlines, as a mail client shows them)."""
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    text, html = (p.get_content().replace("\r\n", "\n") for p in parts)
    return text, html


def header_block(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def trial_section(text: str, nct_id: str) -> str:
    """One trial's block of the text part: from its status line to its record-history link."""
    start = text.index(f"{nct_id} · ")
    end = text.index("Record history:", start)
    return text[start:text.index("\n", end)]


# --- subject --------------------------------------------------------------------------------

def test_subject_counts_updates_and_trials_and_names_two_short_titles(world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(set_status(IMNM, "RECRUITING"))
    world.sync(add_site(DM, LYON))
    world.sync(set_status(ASS, "TERMINATED", why="Sponsor decision"))

    result = world.digests()

    [planned] = result.planned
    expected = ("Myositis trials: 3 updates on 3 trials: Efgartigimod in Immune-Mediated "
                "Necrotizing Myopa…; Tofacitinib in Refractory Dermatomyositis and 1 more")
    assert planned.subject == expected
    [row] = world.queued()
    assert row.subject == expected
    assert parse(row)["Subject"] == expected


def test_subject_is_singular_for_one_update_on_one_trial(world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(set_status(IMNM, "RECRUITING"))

    world.digests()

    [row] = world.queued()
    assert parse(row)["Subject"] == ("Myositis trials: 1 update on 1 trial: Efgartigimod in "
                                     "Immune-Mediated Necrotizing Myopa…")


def test_a_hostile_title_never_breaks_a_header_or_adds_one(world: World) -> None:
    hostile = ("<script>alert('x')</script>\r\nBcc: x@y\r\n\r\nX-Injected: yes\n"
               + "A" * 5000)
    world.subscribe("pat@example.org")
    world.sync(set_title(IMNM, hostile), set_status(IMNM, "RECRUITING"))

    world.digests()

    [row] = world.queued()
    message = parse(row)
    assert sorted(message.keys()) == sorted([
        "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type"])
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert message.get_all("To") == ["pat@example.org"]
    subject = message["Subject"]
    assert subject.startswith("Myositis trials: 1 update on 1 trial: <script>alert('x')"
                              "</script> Bcc: x@y")
    assert "\r" not in subject and "\n" not in subject
    assert subject.endswith("…") and len(subject) < 120
    raw_headers = header_block(row.message)
    assert all(len(line) <= 998 for line in raw_headers)
    assert not [line for line in raw_headers if line.lower().startswith((b"bcc", b"x-injected"))]
    assert not [h for h in message if message[h].defects]
    text, html = bodies(message)
    assert not [line for line in text.splitlines() if line.startswith(("Bcc:", "X-Injected"))]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<script" not in html.lower()


# --- the body ----------------------------------------------------------------------------------

def test_text_comes_first_then_html_with_inline_styles_only(world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(add_site(DM, LYON), set_status(IMNM, "RECRUITING"))

    world.digests()

    [row] = world.queued()
    text, html = bodies(parse(row))
    assert text.startswith("News about myositis trials you follow\n")
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<style" not in html and "class=" not in html and "<link" not in html
    styled = re.findall(r"<(?:body|table|td|h1|h2|p|ul|li|a|span)\b[^>]*>", html)
    assert len(styled) > 20
    assert [tag for tag in styled if 'style="' not in tag] == []


def test_every_trial_links_to_its_study_page_and_record_history(world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(add_site(DM, LYON), set_status(IMNM, "RECRUITING"),
               set_status(ASS, "TERMINATED", why="Sponsor decision"))

    world.digests()

    [row] = world.queued()
    text, html = bodies(parse(row))
    for nct_id in (DM, IMNM, ASS):
        page = f"https://clinicaltrials.gov/study/{nct_id}"
        section = trial_section(text, nct_id)
        assert f"  Study page: {page}\n" in section
        assert section.endswith(f"  Record history: {page}?tab=history")
        assert f'<a href="{page}" style=' in html
        assert f'<a href="{page}?tab=history" style=' in html


def test_changes_are_grouped_by_trial_each_with_its_plain_sentence_and_tags(
        world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(add_site(DM, LYON))  # the trials' changes interleave across syncs
    world.sync(set_status(IMNM, "RECRUITING"))
    world.sync(set_site_status(DM, 1, "NOT_YET_RECRUITING"))  # not for patients: left out
    world.sync(set_site_status(DM, 1, "RECRUITING"))

    world.digests()

    [row] = world.queued()
    assert row.events == 3
    text, html = bodies(parse(row))
    assert "3 changes to 2 trials since the last digest." in text
    assert text.count(f"{DM} · ") == 1 and text.count(f"{IMNM} · ") == 1
    assert text.index(f"{DM} · ") < text.index(f"{IMNM} · ")  # in order of first change
    dm = trial_section(text, DM)
    assert dm.startswith(f"{DM} · Recruiting · Dermatomyositis, JAK inhibitors\n"
                         "  Updated on the registry on 10 November 2022 and 12 November "
                         "2022:\n")
    assert ("  - A new site is recruiting in Lyon, France\n"
            "  - Now recruiting at the site in Beijing, China: you can ask the study team "
            "about joining\n") in dm
    assert "not yet recruiting" not in text.lower()
    imnm = trial_section(text, IMNM)
    assert imnm.startswith(f"{IMNM} · Recruiting · Immune-mediated necrotizing myopathy, "
                           "FcRn blockers\n  Updated on the registry on 25 July 2026:\n"
                           "  - Now recruiting: you can ask the study team about joining\n")
    assert f"{DM} &middot; Recruiting &middot; Dermatomyositis, JAK inhibitors" in html
    assert "<strong>A new site is recruiting in Lyon, France</strong>" in html
    assert ("<strong>Now recruiting at the site in Beijing, China: you can ask the study team "
            "about joining</strong>") in html
    assert "<strong>Now recruiting: you can ask the study team about joining</strong>" in html


def test_a_subscribers_digest_shows_no_internal_codes_only_the_operators_does(
        world: World) -> None:
    world.subscribe("pat@example.org", changes="all")
    world.sync(add_site(DM, LYON), set_status(IMNM, "RECRUITING"),
               add_criterion(DM, "No prior JAK inhibitor"))

    world.digests(operator=True)

    [row] = world.queued()
    text, html = bodies(parse(row))
    kinds = re.compile(r"\b(new|removed|status|results_posted|site_added|site_removed|"
                       r"enrollment|dates|eligibility|interventions|outcomes|phase|contacts|"
                       r"sponsor|title|other): ")
    for body in (text, html):
        assert not kinds.search(body), kinds.search(body)
        assert "New site: Lyon" not in body  # the technical summary
        assert "Not yet recruiting -> Recruiting" not in body
    assert "  - A new site is recruiting in Lyon, France\n  - " in text
    [operator] = world.queued("operator")
    technical, technical_html = bodies(parse(operator))
    assert "    (site_added: New site: Lyon, France (Hôpital Edouard Herriot))\n" in technical
    assert ">site_added: New site: Lyon, France (Hôpital Edouard Herriot)</span>" \
        in technical_html


def test_a_stopped_trial_reads_in_plain_words_with_a_line_for_those_taking_part(
        world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(set_status(ASS, "TERMINATED", why="DSMB futility"))

    world.digests()

    [row] = world.queued()
    text, html = bodies(parse(row))
    section = trial_section(text, ASS)
    assert section.startswith(f"{ASS} · Stopped early · ")
    assert ("  - Stopped early: nobody new can join. Reason given: \u201cDSMB futility\u201d. "
            "In plain words: ") in section
    assert "futility means the trial was unlikely to show that the treatment works" in section
    assert section.count("If you are taking part, talk to your study team about what this "
                         "means for you") == 1
    assert "Terminated" not in text and "Terminated" not in html
    assert "&#8220;DSMB futility&#8221;" in html or "\u201cDSMB futility\u201d" in html


def test_the_footer_names_choices_by_label_and_place_by_name_never_codes(
        world: World) -> None:
    seoul = (37.5665, 126.978)  # the ASS trial's one site
    world.subscribe("named@example.org", subtypes=("ass", "iim"), near=seoul,
                    near_label="Seoul, South Korea", changes="all")
    world.subscribe("point@example.org", subtypes=("ass", "iim"), near=seoul, changes="all")
    world.sync(set_status(ASS, "TERMINATED", why="Sponsor decision"))

    world.digests()

    rows = {row.recipient: row for row in world.queued()}
    assert set(rows) == {"named@example.org", "point@example.org"}
    for recipient, place in (("named@example.org", "Seoul, South Korea"),
                             ("point@example.org", "the place you chose")):
        text, html = bodies(parse(rows[recipient]))
        choices = ("You receive Antisynthetase syndrome, Idiopathic inflammatory myopathy "
                   f"(general); within 100 km of {place}; every change; weekly (Monday).")
        assert choices in text and choices in html
        footer = text.split("\n--\n", 1)[1]
        assert not re.search(r"\b(ass|iim)\b", footer)
        assert "37.5665" not in text + html and "126.978" not in text + html


def test_the_confirmation_names_choices_by_label_and_place_by_name(world: World) -> None:
    subscriber = world.subscribe("point@example.org", confirmed=False, subtypes=("ass",),
                                 therapies=("b-cell",), near=(45.75, 4.85))
    renderer = render.Renderer(world.settings)

    text, html = renderer.confirmation(subscriber, f"{PUBLIC_URL}/confirm?token=t")

    said = ("Antisynthetase syndrome; treatments: B-cell depletion; within 100 km of the place "
            "you chose; changes that matter to patients; weekly (Monday)")
    assert said in " ".join(text.split()) and said in html
    for body in (text, html):
        assert not re.search(r"\b(ass|b-cell)\b", body) and "45.75" not in body


def test_a_tag_the_vocabulary_no_longer_has_is_never_shown_by_its_code(
        world: World) -> None:
    pat = world.subscribe("pat@example.org", subtypes=("ass",))
    assert pat.id is not None
    world.sync(set_status(ASS, "TERMINATED", why="Sponsor decision"))
    shrunk = render.Renderer(world.settings)
    vocabulary = shrunk.vocabulary
    shrunk.vocabulary = replace(vocabulary, subtypes={k: v for k, v in
                                                      vocabulary.subtypes.items()
                                                      if k != "ass"})
    [event] = [e for e in world.store.changes() if e.nct_id == ASS]
    study = world.store.study(ASS)
    assert study is not None and "ass" in (study.subtypes or "")
    digest = render.Digest(pat.email, [render.Trial(study, [event])], event.id or 0, pat)
    freshness = render.Freshness("2026-11-21T09:00:05", utcnow(), False)

    text, html = shrunk.digest(digest, freshness, None)

    for body in (text, html):
        assert not re.search(r"\bass\b", body)
    assert "You receive a choice no longer offered;" in text


def test_each_trial_is_dated_by_the_registry_not_by_the_sync_that_saw_it(world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(set_status(IMNM, "RECRUITING"))  # posted 25 July 2026, seen today

    world.digests()

    [row] = world.queued()
    text, html = bodies(parse(row))
    assert ("  Updated on the registry on 25 July 2026:\n  - Now recruiting: you can ask the "
            "study team about joining\n") in text
    assert ('<p style="margin:0 0 4px 0;font-size:13px;color:#52606d;">Updated on the '
            "registry on 25 July 2026:</p>") in html
    today = utcnow()
    assert f"{today.day} {today:%B %Y}" not in text.split("--\n")[0]  # nowhere but the footer


def test_registry_dates_are_listed_once_each_oldest_first() -> None:
    def change(posted: str | None) -> ChangeEvent:
        return ChangeEvent(sync_run_id=1, nct_id=DM, kind="status", field="", summary="",
                           detected_at=datetime(2026, 12, 3, 6, 0, tzinfo=UTC),
                           last_update_posted=posted)

    assert render.registry_dates([change("2026-11-21")]) == \
        "Updated on the registry on 21 November 2026"
    assert render.registry_dates([change("2026-11-21"), change("2026-11-04"),
                                  change("2026-11-21"), change(None)]) == (
        "Updated on the registry on 4 November 2026, 21 November 2026 and 3 December 2026")
    assert render.registry_dates([]) == ""


# --- the footer: how fresh the data is --------------------------------------------------------

def test_the_footer_states_the_data_timestamp_and_the_last_successful_sync(
        world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(set_status(IMNM, "RECRUITING"))
    last = runs.last_sync(world.store.db, RunStatus.OK)
    assert last is not None and last.finished_at is not None

    world.digests()

    [row] = world.queued()
    text, html = bodies(parse(row))
    footer = (f"Data from ClinicalTrials.gov as of 2026-11-21 09:00 UTC; last successful "
              f"update {last.finished_at:%Y-%m-%d %H:%M} UTC.")
    assert footer in text and footer in html
    assert "T09:00" not in text  # no raw timestamp for a reader
    assert "failed" not in text.lower() and "warning" not in html.lower()


def test_the_footer_says_plainly_when_the_last_sync_failed(world: World) -> None:
    world.subscribe("pat@example.org")
    world.sync(set_status(IMNM, "RECRUITING"))
    last = runs.last_sync(world.store.db, RunStatus.OK)
    assert last is not None and last.finished_at is not None
    world.registry.data_timestamp = "2026-11-25T09:00:05"
    world.registry.fail(status=503, times=99)
    with pytest.raises(RetriesExhausted):
        sync(world.settings, world.store, world.client)

    world.digests()

    [row] = world.queued()
    text, html = bodies(parse(row))
    warning = ("the most recent attempt to update from ClinicalTrials.gov failed, so this "
               "digest may miss the newest changes.")
    assert f"\nWARNING: {warning}\n" in text
    assert f">Warning: {warning}</p>" in html
    # The data is still described as of the last sync that worked.
    assert (f"as of 2026-11-21 09:00 UTC; last successful update "
            f"{last.finished_at:%Y-%m-%d %H:%M} UTC.") in text


# --- headers: unsubscribe and Message-ID ------------------------------------------------------

def test_list_unsubscribe_carries_a_signed_token_for_that_subscriber(world: World) -> None:
    pat = world.subscribe("pat@example.org")
    dr = world.subscribe("dr@example.org", changes="all")
    world.sync(set_status(IMNM, "RECRUITING"))

    world.digests()

    rows = {row.recipient: row for row in world.queued()}
    assert set(rows) == {"pat@example.org", "dr@example.org"}
    for subscriber in (pat, dr):
        message = parse(rows[subscriber.email])
        found = re.fullmatch(r"<([^<>\s]+)>, <mailto:news@trials\.example\.org\?subject="
                             r"unsubscribe>", message["List-Unsubscribe"])
        assert found, message["List-Unsubscribe"]
        url = found.group(1)
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{PUBLIC_URL}/unsubscribe"
        [token] = parse_qs(parts.query)["token"]
        read = tokens.read(SECRET, "unsubscribe", token, tokens.UNSUBSCRIBE_MAX_AGE)
        assert (read.purpose, read.subscriber_id, read.email) == (
            "unsubscribe", subscriber.id, subscriber.email)
        with pytest.raises(BadToken):
            tokens.read(SECRET, "confirm", token, 3600)  # not a confirmation link
        with pytest.raises(BadToken):
            tokens.read("another-secret-0123456789", "unsubscribe", token, 3600)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = bodies(message)
        assert f"\nUnsubscribe: {url}\n" in text + "\n"
        assert f'<a href="{url}"' in html


def test_a_digest_is_keyed_by_its_window_so_it_is_queued_once_under_a_random_message_id(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    pat = world.subscribe("pat@example.org")
    world.sync(set_status(IMNM, "RECRUITING"))
    assert pat.id is not None
    seen_by_a_second_run = subscribers.listing(world.store.db)  # read before the first queues

    world.digests()

    [row] = world.queued()
    window_end = world.newest_event()
    key = render.message_key(MessageKind.DIGEST, pat.id, pat.last_event_id, window_end)
    assert key == f"digest.{pat.id}.{pat.last_event_id}.{window_end}"
    assert row.key == key and row.window_end == window_end
    # The Message-ID says nothing about rows: random, at the sender's domain.
    assert re.fullmatch(r"<[0-9a-f]{32}@trials\.example\.org>", row.message_id)
    assert parse(row)["Message-ID"] == row.message_id
    fresh = render.new_message_id(world.settings)
    assert fresh != row.message_id and fresh != render.new_message_id(world.settings)

    # The same digest queued again, even under a new Message-ID, is refused by its key...
    again = outbox.Draft(kind=MessageKind.DIGEST, key=key, recipient=row.recipient,
                         subject=row.subject, message_id=fresh, message=row.message,
                         subscriber_id=row.subscriber_id, events=row.events,
                         window_end=row.window_end)
    assert outbox.queue(world.store.db, again) is None
    assert outbox.has(world.store.db, key)
    assert len(outbox.messages(world.store.db)) == 1

    # ...and a run that planned it from the same window queues nothing either.
    monkeypatch.setattr(subscribers, "listing",
                        lambda db, include_ended=False: seen_by_a_second_run)
    second = world.digests()
    assert second.planned == []
    assert second.errors == ["pat@example.org's digest was queued by another run."]
    assert len(outbox.messages(world.store.db)) == 1


# --- what is sent, and when ---------------------------------------------------------------------

MONDAY = datetime(2026, 11, 30, 7, tzinfo=UTC)  # the default weekly day, in the default zone

def test_nothing_new_means_no_digest_and_the_window_moves_past_unmatched_changes(
        world: World) -> None:
    ibm = world.subscribe("ibm@example.org", subtypes=("ibm",), changes="all")
    world.sync(set_status(IMNM, "RECRUITING"))  # not IBM
    unmatched = world.newest_event()

    result = world.digests(MONDAY)

    assert (result.planned, result.nothing_new) == ([], 1)
    assert outbox.messages(world.store.db) == []
    after = subscribers.find(world.store.db, ibm.email)
    assert after.last_event_id == unmatched
    assert after.last_digest_at is None  # nothing was sent...
    assert after.served_at == MONDAY  # ...but this week's turn is taken

    world.sync(add_site(IBM, TAIPEI))
    assert world.digests(MONDAY + timedelta(days=1)).planned == []  # waits for its day
    result = world.digests(MONDAY + timedelta(days=7))

    [planned] = result.planned
    assert (planned.changes, planned.trials) == (1, 1)
    [row] = world.queued()
    text, _ = bodies(parse(row))
    assert IBM in text and IMNM not in text
    assert "  - A new site opened in Taipei, Taiwan\n" in text


def test_a_dry_run_queues_nothing_and_moves_no_window(world: World, tmp_path: Path) -> None:
    pat = world.subscribe("pat@example.org")
    ibm = world.subscribe("ibm@example.org", subtypes=("ibm",))
    world.sync(set_status(IMNM, "RECRUITING"))
    folder = tmp_path / "digests"
    env = {"CTGOV_BASE_URL": world.settings.base_url,
           "TRACKER_DATABASE_URL": world.settings.database_url,
           "TRACKER_SECRET_KEY": SECRET, "TRACKER_PUBLIC_URL": PUBLIC_URL,
           "TRACKER_MAIL_FROM": MAIL_FROM, "TRACKER_SMTP_HOST": "",
           "TRACKER_DIGEST_DIR": str(folder)}

    dry = CliRunner().invoke(cli, ["digest", "--dry-run"], env=env, catch_exceptions=False)

    assert dry.exit_code == 0, dry.output
    subject = ("Myositis trials: 1 update on 1 trial: Efgartigimod in Immune-Mediated "
               "Necrotizing Myopa…")
    assert f"Digest would get pat@example.org: 1 change(s) on 1 trial(s): {subject}\n" \
        in dry.output
    assert f"Operator digest would get operator: 1 change(s) on 1 trial(s): {subject}\n" \
        in dry.output
    assert "ibm@example.org" not in dry.output
    assert dry.output.endswith("2 digest(s) planned; 1 subscriber(s) had nothing new; 0 not "
                               "due. Dry run: nothing was queued or sent.\n")
    assert outbox.messages(world.store.db) == []
    assert not folder.exists()
    for before in (pat, ibm):
        after = subscribers.find(world.store.db, before.email)
        assert (after.last_event_id, after.last_digest_at) == (before.last_event_id, None)

    real = CliRunner().invoke(cli, ["digest"], env=env, catch_exceptions=False)

    assert real.exit_code == 0, real.output
    assert "2 digest(s) queued; 1 subscriber(s) had nothing new; 0 not due; 2 written" \
        in real.output
    assert {row.kind for row in outbox.messages(world.store.db)} == {"digest", "operator"}
    assert len(list(folder.glob("*.eml"))) == 2
    assert subscribers.find(world.store.db, ibm.email).last_event_id == world.newest_event()


def test_the_operator_digest_covers_every_change(world: World) -> None:
    world.subscribe("pat@example.org")  # patients' changes only
    world.sync(set_status(IMNM, "RECRUITING"), add_criterion(DM, "No prior JAK inhibitor"),
               set_site_status(DM, 2, "COMPLETED"))
    changes = world.store.changes()
    assert len(changes) == 3

    result = world.digests(operator=True)

    assert [(p.kind, p.changes) for p in result.planned] == [("digest", 1), ("operator", 3)]
    [row] = world.queued("operator")
    assert (row.recipient, row.events, row.window_end) == ("operator", 3, world.newest_event())
    message = parse(row)
    assert message["To"] == "news@trials.example.org"
    assert message["List-Unsubscribe"] is None
    text, html = bodies(message)
    assert text.startswith("All changes to tracked myositis trials\n")
    for change in changes:
        assert f"  - {change.plain}\n" in text
        assert f"({change.kind}: {change.summary})" in text
    assert "Who can take part has changed" in html

    assert world.digests(operator=True).planned == []  # covered already
    world.sync(set_status(DM, "ACTIVE_NOT_RECRUITING"))
    result = world.digests(operator=True)
    assert [(p.kind, p.changes) for p in result.planned] == [("operator", 1)]


@pytest.mark.parametrize(("cadence", "too_soon", "due"), [
    ("weekly", timedelta(days=3), timedelta(days=7)),
    ("daily", timedelta(hours=12), timedelta(hours=24)),
])
def test_a_subscriber_gets_a_digest_once_per_cadence(world: World, cadence: str,
                                                     too_soon: timedelta,
                                                     due: timedelta) -> None:
    start = MONDAY
    world.subscribe("pat@example.org", cadence=cadence, now=start)
    world.sync(set_status(IMNM, "RECRUITING"))
    assert len(world.digests(start).planned) == 1
    world.sync(add_site(DM, LYON))

    early = world.digests(start + too_soon)

    assert (early.planned, early.not_due) == ([], 1)
    assert len(world.queued()) == 1

    later = world.digests(start + due)

    [planned] = later.planned
    assert planned.changes == 1  # only what came after the first digest
    first, second = world.queued()
    assert "Lyon, France" in second.text_body and "Lyon" not in first.text_body
    assert subscribers.find(world.store.db, "pat@example.org").last_digest_at == start + due


def test_unconfirmed_or_unsubscribed_subscribers_get_nothing(world: World) -> None:
    world.subscribe("confirmed@example.org")
    world.subscribe("pending@example.org", confirmed=False)
    gone = world.subscribe("gone@example.org")
    assert gone.id is not None
    assert subscribers.unsubscribe(world.store.db, gone.id, utcnow())
    world.sync(set_status(IMNM, "RECRUITING"))

    result = world.digests()

    assert [p.recipient for p in result.planned] == ["confirmed@example.org"]
    assert [row.recipient for row in outbox.messages(world.store.db)] == ["confirmed@example.org"]
    assert result.not_due == 0


def test_a_new_subscriber_does_not_receive_the_backlog(world: World) -> None:
    world.sync(set_status(IMNM, "RECRUITING"))
    world.sync(add_site(DM, LYON))
    world.subscribe("late@example.org")

    assert world.digests(MONDAY).planned == []
    assert outbox.messages(world.store.db) == []

    world.sync(set_status(ASS, "TERMINATED", why="Sponsor decision"))
    [planned] = world.digests(MONDAY + timedelta(days=7)).planned

    assert (planned.changes, planned.trials) == (1, 1)
    [row] = world.queued()
    assert ASS in row.text_body and IMNM not in row.text_body and DM not in row.text_body


def test_resubscribing_after_unsubscribing_skips_what_happened_in_between(
        world: World) -> None:
    pat = world.subscribe("pat@example.org")
    assert pat.id is not None
    subscribers.unsubscribe(world.store.db, pat.id, utcnow())
    world.sync(set_status(IMNM, "RECRUITING"))
    world.subscribe("pat@example.org")

    assert world.digests(MONDAY).planned == []

    world.sync(add_site(DM, LYON))
    [planned] = world.digests(MONDAY + timedelta(days=7)).planned
    assert planned.changes == 1
    [row] = world.queued()
    assert DM in row.text_body and IMNM not in row.text_body
    assert row.events == 1


# --- many subscribers at once -------------------------------------------------------------------

BOUNDARY = re.compile(rb"={15}\d+==")
TOKEN = re.compile(rb"token=[\w.-]+")  # signed links carry the second they were made


def same_apart_from_chance(message: bytes) -> bytes:
    """A message with what differs by chance or clock masked: the MIME boundary (random, as
    the Message-ID) and the signing time inside each link's token."""
    return TOKEN.sub(b"token=T", BOUNDARY.sub(b"B", message))


def one_by_one(world: World, subscriber: Subscriber, row: OutboxMessage,
               now: datetime) -> tuple[bytes, str, str]:
    """The digest the straightforward path makes for `subscriber` alone (their own window's
    events and studies, read for them), under `row`'s Message-ID: its bytes and bodies."""
    store, settings = world.store, world.settings
    events = store.events_after(subscriber.last_event_id)
    digest = render.plan(subscriber, events, store.studies(e.nct_id for e in events))
    assert digest is not None and subscriber.id is not None
    make = tokens.make
    unsubscribe_url = render.link(settings, "unsubscribe", make(
        SECRET, tokens.Purpose.UNSUBSCRIBE, subscriber.id, subscriber.email))
    manage_url = render.link(settings, "manage", make(
        SECRET, tokens.Purpose.MANAGE, subscriber.id, subscriber.email))
    text, html = render.Renderer(settings).digest(digest, notify.freshness(store, now),
                                                  unsubscribe_url, manage_url=manage_url)
    message = render.message(settings, recipient=subscriber.email,
                             subject_line=render.subject(digest), text=text, html=html,
                             message_id=row.message_id, now=now,
                             unsubscribe_url=unsubscribe_url)
    return message.as_bytes(), text, html


def test_a_run_for_many_subscribers_queues_byte_for_byte_what_each_would_get_alone(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "SERVE_BATCH", 2)  # several batches, and a partial last one
    early = [world.subscribe("all@example.org", changes="all", cadence="daily"),
             world.subscribe("ibm@example.org", subtypes=("ibm",), changes="all")]
    world.sync(set_status(IMNM, "RECRUITING"), add_site(IBM, TAIPEI))
    late = [world.subscribe("dm@example.org", subtypes=("dermatomyositis",), changes="all"),
            world.subscribe("lyon@example.org", near=(45.75, 4.85), radius_km=300.0,
                            changes="all"),
            world.subscribe("taiwan@example.org", countries=("Taiwan",), changes="all"),
            world.subscribe("patients@example.org")]
    world.sync(add_site(DM, LYON), set_status(DM, "ACTIVE_NOT_RECRUITING"),
               set_title(IBM, "Arimoclomol in inclusion body myositis, extended"))
    before = {s.email: subscribers.find(world.store.db, s.email) for s in early + late}

    result = world.digests(MONDAY)

    rows = {row.recipient: row for row in world.queued()}
    assert sorted(rows) == sorted(p.recipient for p in result.planned)
    assert {"all@example.org", "ibm@example.org", "dm@example.org",
            "lyon@example.org", "taiwan@example.org"} <= set(rows)
    for email_address, row in rows.items():
        expected, text, html = one_by_one(world, before[email_address], row, MONDAY)
        assert same_apart_from_chance(row.message) == same_apart_from_chance(expected), \
            email_address
        bodies_read = (row.text_body.rstrip("\n"), row.html_body.rstrip("\n"))
        assert tuple(same_apart_from_chance(b.encode()) for b in bodies_read) == \
            tuple(same_apart_from_chance(b.rstrip("\n").encode()) for b in (text, html))
    newest = world.newest_event()
    for subscriber in early + late:  # every window moved to the end, digest or not
        assert subscribers.find(world.store.db, subscriber.email).last_event_id == newest
    assert world.digests(MONDAY).planned == []  # and nothing is queued twice


def test_sent_messages_are_pruned_after_the_retention_period_at_the_end_of_a_run(
        world: World) -> None:
    world.subscribe("pat@example.org", changes="all", cadence="daily")
    world.sync(set_status(IMNM, "RECRUITING"))
    world.digests(MONDAY, operator=True)
    [digest_row] = world.queued()
    [operator_row] = world.queued("operator")
    for row in (digest_row, operator_row):
        assert row.id is not None
        outbox.mark(world.store.db, row.id, MessageStatus.SENT, now=MONDAY)
    world.sync(set_status(DM, "COMPLETED"))
    days = world.settings.outbox_retention_days

    world.digests(MONDAY + timedelta(days=days - 1))
    assert {m.id for m in outbox.messages(world.store.db)} >= {digest_row.id, operator_row.id}

    world.digests(MONDAY + timedelta(days=days + 1))
    left = outbox.messages(world.store.db)
    assert digest_row.id not in {m.id for m in left}  # sent longer ago than the retention
    # Kept: the unsent, and the newest operator digest, which marks where the next starts.
    assert [(m.kind, m.status) for m in left] == [("operator", "sent"), ("digest", "queued")]
    world.sync(set_status(ASS, "COMPLETED"))
    world.digests(MONDAY + timedelta(days=days + 2), operator=True)
    [newest] = world.queued("operator")  # the old one goes now: a newer one marks the window
    # It covers the changes after the old operator digest's window, not every change again.
    assert newest.events == len(world.store.events_after(operator_row.window_end)) == 2
