"""Atom feeds of recorded changes: one document for every change, one per myositis subtype.

Everything here is pure: change events and studies in, a complete Atom 1.0 (RFC 4287)
document out, as a string to be written UTF-8 encoded.

- One `<entry>` per change event, newest first (by the registry's date for it, then event
  id), at most `limit` of them. Its id is a tag URI built from the event id alone
  (`tag:tracker,2026:change/<id>`), so the same change keeps the same id in every feed and
  in every rebuild. Its `updated` and `published` are the registry's date (midnight UTC),
  not when the tracker saw it. Its title is the study's short title, " — ", then the patient
  sentence (the technical summary when there is none); its only link is the study's page on
  ClinicalTrials.gov; its content (plain text) carries the sentence, the technical form, the
  registry's date and, when the tracker saw it on another day, that time; its categories are
  the study's subtype tags.
- The feed carries its id, title, optional subtitle, `updated`, its `self` and `alternate`
  links, the author ("Myositis trials tracker") whom every entry inherits, and a generator.

Registry text is untrusted. The document is built with `xml.etree.ElementTree`, which
escapes `<`, `&`, `>` (and quotes in attributes), and every string is first cleared of the
characters XML 1.0 cannot carry at all (control characters other than tab, newline and
carriage return, lone surrogates, U+FFFE and U+FFFF), together with DEL and the C1 controls,
which it discourages. In one-line fields (titles, terms, URLs) they become spaces instead,
and every run of whitespace is collapsed to a single space.

`atom_feed` does not filter: a per-subtype feed is `atom_feed` over the events that
`events_for_subtype` keeps.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time

from tracker import __version__
from tracker.models import ChangeEvent, Study
from tracker.text import one_line, shorten, split_list, study_url
from tracker.times import as_utc, utc_day, utc_time

ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
AUTHOR_NAME = "Myositis trials tracker"
GENERATOR_NAME = "tracker"
ENTRY_ID_PREFIX = "tag:tracker,2026:change/"
SUBTYPE_SCHEME = "tag:tracker,2026:subtype"
TITLE_LIMIT = 100
SEPARATOR = " — "

# Characters outside XML 1.0's Char production, plus DEL and the C1 controls.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str | None) -> str:
    """`text` with every character XML 1.0 cannot carry (and DEL, C1 controls) removed."""
    return _NOT_XML.sub("", text or "")


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC as an RFC 3339 date-time to the second; naive times are taken as UTC
    (SQLite hands stored times back without their zone)."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_id(event: ChangeEvent) -> str:
    """The entry's permanent id: a tag URI of the event id."""
    if event.id is None:
        raise ValueError("a change event without an id has no stable Atom entry id")
    return f"{ENTRY_ID_PREFIX}{event.id}"


def events_for_subtype(events: Iterable[ChangeEvent], studies: Mapping[str, Study],
                       subtype: str) -> list[ChangeEvent]:
    """The events (in their order) of studies tagged with exactly `subtype`; events of
    studies missing from `studies` are left out."""
    kept = []
    for event in events:
        study = studies.get(event.nct_id)
        if study is not None and subtype in split_list(study.subtypes):
            kept.append(event)
    return kept


def newest_first(events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    """Events by registry date then id, newest first; an id seen twice is kept once."""
    unique: dict[str, ChangeEvent] = {}
    for event in events:
        unique.setdefault(entry_id(event), event)
    return sorted(unique.values(), key=lambda e: (e.posted_on, e.id or 0), reverse=True)


def posted_at(event: ChangeEvent) -> datetime:
    """The registry's date for the change, as a time: midnight UTC of that day."""
    return datetime.combine(event.posted_on, time(), tzinfo=UTC)


def atom_feed(*, feed_id: str, title: str, self_url: str, alternate_url: str,
              events: Sequence[ChangeEvent], studies: Mapping[str, Study], updated: datetime,
              subtitle: str | None = None, limit: int = 200,
              labels: Mapping[str, str] | None = None) -> str:
    """A complete Atom 1.0 document of `events`, newest first, at most `limit` entries.

    feed_id       the feed's permanent IRI (its URL will do)
    self_url      where the feed itself is published; alternate_url the page it sits beside
    studies       the studies by NCT id, for entry titles and categories (an event whose
                  study is missing gets its NCT id as title and no category)
    updated       the feed's `updated`; the newest entry's (registry) date if that is later
    labels        optional human labels of subtype tags, for the categories' `label`

    Raises ValueError for a negative limit, an empty id, title or URL, or an event without
    an id. Registry text is escaped and cleared of characters XML cannot carry.
    """
    if limit < 0:
        raise ValueError(f"limit must be zero or more, not {limit}")
    for name, value in (("feed_id", feed_id), ("title", title), ("self_url", self_url),
                        ("alternate_url", alternate_url)):
        if not one_line(value):
            raise ValueError(f"{name} must not be empty")
    chosen = newest_first(events)[:limit]
    feed_updated = max([_utc(updated), *(posted_at(e) for e in chosen)])

    # Elements are built unqualified under a literal default namespace declaration: the
    # serializer's own namespace handling rejects unqualified attributes such as `rel`.
    feed = ET.Element("feed", {"xmlns": ATOM_NS, XML_LANG: "en"})
    _child(feed, "id", one_line(feed_id))
    _child(feed, "title", one_line(title), type="text")
    if subtitle and one_line(subtitle):
        _child(feed, "subtitle", one_line(subtitle), type="text")
    _child(feed, "updated", rfc3339(feed_updated))
    _child(feed, "link", rel="self", type="application/atom+xml", href=one_line(self_url))
    _child(feed, "link", rel="alternate", type="text/html", href=one_line(alternate_url))
    author = _child(feed, "author")
    _child(author, "name", AUTHOR_NAME)
    _child(feed, "generator", GENERATOR_NAME, version=__version__)
    for event in chosen:
        _entry(feed, event, studies.get(event.nct_id), labels or {})

    ET.indent(feed, space="  ")  # whitespace between elements only; text stays as built
    body = ET.tostring(feed, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def _entry(feed: ET.Element, event: ChangeEvent, study: Study | None,
           labels: Mapping[str, str]) -> None:
    sentence = one_line(event.plain) or one_line(event.summary)
    name = shorten(study.brief_title, TITLE_LIMIT) if study is not None else ""
    entry = _child(feed, "entry")
    _child(entry, "id", entry_id(event))
    _child(entry, "title", f"{name or one_line(event.nct_id)}{SEPARATOR}{sentence}",
           type="text")
    _child(entry, "updated", rfc3339(posted_at(event)))
    _child(entry, "published", rfc3339(posted_at(event)))
    _child(entry, "link", rel="alternate", type="text/html", href=study_url(event.nct_id))
    terms: dict[str, str] = {}  # cleaned term -> tag, once each, none empty
    for tag in split_list(study.subtypes if study is not None else None):
        terms.setdefault(one_line(tag), tag)
    terms.pop("", None)
    for term, tag in terms.items():
        attributes = {"term": term, "scheme": SUBTYPE_SCHEME}
        if labels.get(tag):
            attributes["label"] = one_line(labels[tag])
        _child(entry, "category", **attributes)
    _child(entry, "content", _content(event, study), type="text")


def _content(event: ChangeEvent, study: Study | None) -> str:
    lines = [xml_text(event.plain or event.summary).strip()]
    if event.plain and event.summary and event.plain.strip() != event.summary.strip():
        lines.append(f"Technical: {xml_text(event.summary).strip()}")
    trial = one_line(study.brief_title) if study is not None else ""
    lines.append(f"Trial: {trial} ({one_line(event.nct_id)})" if trial
                 else f"Trial: {one_line(event.nct_id)}")
    if event.last_update_posted:
        lines.append(f"Registry update posted: {one_line(event.last_update_posted)}")
    if utc_day(event.detected_at) != event.posted_on:
        lines.append(f"Seen by the tracker: {utc_time(event.detected_at)}")
    lines.append(f"Study page: {study_url(event.nct_id)}")
    return "\n".join(lines)


def _utc(moment: datetime) -> datetime:
    return as_utc(moment).astimezone(UTC)


def _child(parent: ET.Element, name: str, text: str | None = None,
           **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, name, attributes)
    if text is not None:
        element.text = text
    return element
