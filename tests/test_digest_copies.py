"""Digest e-mails for many subscribers are built once per distinct digest and copied
(`tracker.digest.Letters`): a copy must be, byte for byte, the e-mail built afresh for that
subscriber, but for the MIME boundary, or it is built afresh.

Each queued e-mail is compared with the one the plain path builds (`Renderer.digest` and
`message`) from the same subscriber, changes, links and Message-ID.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.test_digest import DM, IMNM, LYON, World, add_site, parse, set_status, world
from tracker import digest as render
from tracker import notify
from tracker.models import OutboxMessage, Subscriber
from tracker.subscribers import normalise_address
from tracker.times import utcnow

__all__ = ["world"]  # the fixture, shared with test_digest

BOUNDARY = re.compile(rb"={15}\d+==")


def afresh(world: World, subscriber: Subscriber, row: OutboxMessage, now: datetime) -> bytes:
    """The e-mail the plain path builds for `subscriber` with the links and Message-ID that
    `row` carries."""
    message = parse(row)
    unsubscribe = re.search(r"<(\S+/unsubscribe\?\S+)>", message["List-Unsubscribe"])
    assert unsubscribe
    text = message.get_body(("plain",))
    assert text is not None
    manage = re.search(r"(https://\S+/manage\?token=[A-Za-z0-9._-]+)", text.get_content())
    assert manage
    changes = notify.Changes.since(world.store, subscriber.last_event_id)
    digest = render.plan(subscriber, changes.events, changes.studies)
    assert digest is not None
    renderer = render.Renderer(world.settings)
    text, html = renderer.digest(digest, notify.freshness(world.store, now),
                                 unsubscribe.group(1), manage_url=manage.group(1))
    built = render.message(world.settings, recipient=subscriber.email,
                           subject_line=render.subject(digest), text=text, html=html,
                           message_id=row.message_id, now=now,
                           unsubscribe_url=unsubscribe.group(1))
    return built.as_bytes()


def same_but_boundary(copy: bytes, built: bytes) -> bool:
    return BOUNDARY.sub(b"BOUNDARY", copy) == BOUNDARY.sub(b"BOUNDARY", built)


LONG_PLACE = "Hospital district " * 60  # a line past 998 bytes: that body is encoded


def test_each_queued_digest_is_the_e_mail_built_afresh_but_for_its_boundary(
        world: World) -> None:
    lyon = (45.75, 4.85)
    people = [
        world.subscribe("pat@example.org", changes="all"),
        world.subscribe("pat+trials@example.org", changes="all"),  # the same digest: a copy
        world.subscribe("sam@example.org", changes="all", cadence="daily"),
        world.subscribe("o'brien@example.org", changes="all"),  # an address that is quoted
        world.subscribe(normalise_address("ana@bücher.example"), changes="all"),  # xn--
        world.subscribe("lea@example.org", near=lyon, near_label="Lyon"),
        world.subscribe("kim@example.org", near=lyon, near_label="St John's & St Mary's"),
        world.subscribe("zoe@example.org", near=lyon, near_label="Zürich"),  # makes HTML 8bit
        world.subscribe("max@example.org", near=lyon, near_label=LONG_PLACE),
    ]
    world.sync(set_status(IMNM, "RECRUITING"), add_site(DM, LYON))
    now = utcnow()

    world.digests(now)

    rows = {row.recipient: row for row in world.queued()}
    assert sorted(rows) == sorted(p.email for p in people)
    for person in people:
        row = rows[person.email]
        assert same_but_boundary(row.message, afresh(world, person, row, now)), person.email
    kim = parse(rows["kim@example.org"])
    assert "of St John's & St Mary's;" in kim.get_body(("plain",)).get_content()
    assert "of St John&#39;s &amp; St Mary&#39;s;" in kim.get_body(("html",)).get_content()
    assert b"Content-Transfer-Encoding: quoted-printable" in rows["max@example.org"].message


def test_subscribers_who_get_the_same_digest_share_one_build(world: World) -> None:
    people = [world.subscribe(f"reader{n}@example.org", changes="all") for n in range(30)]
    people += [world.subscribe(f"near{n}@example.org", changes="all", near=(45.75, 4.85),
                               near_label=f"Lyon {n}") for n in range(10)]
    world.sync(add_site(DM, LYON))
    now = utcnow()
    changes = notify.Changes.since(world.store, 0)
    renderer = render.Renderer(world.settings)
    letters = render.Letters(world.settings, renderer, notify.freshness(world.store, now), now)

    copies = []
    for n, person in enumerate(people):
        digest = render.plan(person, changes.events, changes.studies)
        assert digest is not None
        personal = render.Personal(person.email, f"<{n:032x}@trials.example.org>",
                                   f"unsubscribe-token.{n}", f"manage-token.{n}",
                                   renderer.choices(person))
        copies.append(letters.message(digest, render.subject(digest), personal))

    assert letters.built == 1  # the one with placeholders; every e-mail is a copy of it
    assert len(set(copies)) == len(people)
    for n, copy in enumerate(copies):
        assert f"To: {people[n].email}\r\n".encode() in copy
        assert f"manage?token=manage-token.{n}\r\n".encode() in copy
        assert letters.mark.encode() not in copy
    assert b"within 100 km of Lyon 7;" in copies[37]


def test_an_operators_own_digest_template_is_rendered_for_every_subscriber(
        world: World, tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text("For {{ filters|upper }}\n{{ unsubscribe_url }}\n"
                                         "{{ manage_url }}\n")
    world.settings = replace(world.settings, templates_dir=tmp_path)
    people = [world.subscribe(f"reader{n}@example.org", near=(45.75, 4.85),
                              near_label=f"Lyon {n}") for n in range(3)]
    world.sync(add_site(DM, LYON))
    now = utcnow()

    world.digests(now)

    rows = {row.recipient: row for row in world.queued()}
    for person in people:
        row = rows[person.email]
        assert same_but_boundary(row.message, afresh(world, person, row, now))
        assert f"WITHIN 100 KM OF {person.near_label.upper()}".encode() in row.message


def test_a_copy_keeps_its_own_links_and_tokens_readable(world: World) -> None:
    person = world.subscribe("pat@example.org", changes="all")
    world.sync(set_status(IMNM, "RECRUITING"))

    world.digests()

    [row] = world.queued()
    url = re.search(r"<(\S+)>", parse(row)["List-Unsubscribe"])
    assert url
    [token] = parse_qs(urlsplit(url.group(1)).query)["token"]
    from tracker import tokens
    read = tokens.read(world.settings.secret_key or "", tokens.Purpose.UNSUBSCRIBE, token,
                       max_age=3600)
    assert (read.subscriber_id, read.email) == (person.id, person.email)
