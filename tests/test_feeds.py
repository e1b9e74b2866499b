"""Specification of `tracker.feeds`: the Atom feeds of changes beside the weekly report.

Studies carry the titles of the real (myositis-edited) records in tests/data/studies/, and
change events the sentences the tracker really writes. Every feed is checked twice, by two
independent readers: `check_atom` below, which enforces RFC 4287's rules on the parsed XML
(cardinalities, constructs, dates, ids, links, the author rule), and `feedparser`, the
feed library most readers are built on, which must read it as Atom 1.0 without complaint.
`check_atom` is itself shown to reject documents that break those rules.
"""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import feedparser
import pytest

from tests.conftest import load_study
from tracker.feeds import atom_feed, events_for_subtype
from tracker.models import ChangeEvent, Study

ATOM = "http://www.w3.org/2005/Atom"
A = f"{{{ATOM}}}"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
STUDY_LINK = re.compile(r"^https://clinicaltrials\.gov/study/NCT\d{8}$")
SITE = "https://trials.example.org/report"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

IBM = "NCT02803307"  # Arimoclomol in Inclusion Body Myositis
DM = "NCT04078230"  # Tofacitinib in Refractory Dermatomyositis
JDM = "NCT02248896"  # Juvenile Dermatomyositis Registry
ASS = "NCT00874328"  # Rituximab in Antisynthetase Syndrome Interstitial Lung Disease
SUBTYPES = {IBM: "ibm|iim", DM: "dermatomyositis|iim", JDM: "jdm|dermatomyositis",
            ASS: "ass|ild|iim"}


def registry_title(nct_id: str) -> str:
    return load_study(nct_id)["protocolSection"]["identificationModule"]["briefTitle"]


def study(nct_id: str, *, title: str | None = None, subtypes: str | None = None) -> Study:
    return Study(nct_id=nct_id, brief_title=registry_title(nct_id) if title is None else title,
                 subtypes=SUBTYPES.get(nct_id) if subtypes is None else subtypes,
                 content_hash="x", first_seen_at=NOW - timedelta(days=400),
                 last_changed_at=NOW - timedelta(days=3))


def event(event_id: int | None, nct_id: str, at: datetime, *,
          plain: str | None = "Now recruiting",
          summary: str = "Status: Not yet recruiting -> Recruiting", kind: str = "status",
          posted: str | None = "2026-11-18") -> ChangeEvent:
    return ChangeEvent(id=event_id, sync_run_id=7, nct_id=nct_id, kind=kind, field=kind,
                       summary=summary, plain=plain, detected_at=at, last_update_posted=posted)


def studies(*items: Study) -> dict[str, Study]:
    chosen = items or tuple(study(n) for n in SUBTYPES)
    return {s.nct_id: s for s in chosen}


def week_of_changes() -> list[ChangeEvent]:
    """Five changes over a week, as `store.changes` hands them over (not in time order), each
    seen at the sync after the registry posted it (the last one the same day)."""
    day = datetime(2026, 11, 16, 5, 30, tzinfo=UTC)
    return [
        event(11, DM, day, plain="A new site opened in Lyon, France",
              summary="Site added: Hôpital Edouard Herriot, Lyon, France", kind="site_added",
              posted="2026-11-13"),
        event(14, IBM, day + timedelta(days=3), plain="Results were posted",
              summary="Results first posted 2026-11-18", kind="results_posted",
              posted="2026-11-18"),
        event(12, JDM, day + timedelta(days=1), posted="2026-11-16"),
        event(15, ASS, day + timedelta(days=4), plain="Stopped early: sponsor decision",
              summary="Status: Recruiting -> Terminated (why stopped: sponsor decision)",
              posted="2026-11-20"),
        event(13, DM, day + timedelta(days=2), plain=None,
              summary="Primary completion 2026-03 -> 2026-11", kind="dates",
              posted="2026-11-17"),
    ]


def build(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "feed_id": f"{SITE}/feed.atom", "title": "Myositis clinical trials: all changes",
        "self_url": f"{SITE}/feed.atom", "alternate_url": f"{SITE}/index.html",
        "events": week_of_changes(), "studies": studies(), "updated": NOW,
    }
    arguments.update(overrides)
    return atom_feed(**arguments)


def parse(document: str) -> ET.Element:
    """The document as a reader gets it: the UTF-8 bytes of the written file."""
    assert document.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(document.encode("utf-8"))


def entries(root: ET.Element) -> list[ET.Element]:
    return root.findall(f"{A}entry")


def text(element: ET.Element, name: str) -> str:
    found = element.find(f"{A}{name}")
    assert found is not None, f"no atom:{name}"
    return found.text or ""


# --- RFC 4287, as a checker -------------------------------------------------------------

FEED_ONCE = {"id", "title", "updated"}
FEED_AT_MOST_ONCE = {"generator", "icon", "logo", "rights", "subtitle"}
FEED_MANY = {"author", "category", "contributor", "link"}
ENTRY_ONCE = {"id", "title", "updated"}
ENTRY_AT_MOST_ONCE = {"content", "published", "rights", "source", "summary"}
ENTRY_MANY = {"author", "category", "contributor", "link"}
TEXT_CONSTRUCTS = {"title", "subtitle", "rights", "summary"}
DATE_CONSTRUCTS = {"updated", "published"}


def check_atom(document: str) -> ET.Element:
    """Parse `document` and assert the rules of RFC 4287 it must follow; return its root."""
    root = parse(document)
    assert root.tag == f"{A}feed", root.tag
    check_children(root, "feed", FEED_ONCE, FEED_AT_MOST_ONCE, FEED_MANY | {"entry"})
    kinds = [child.tag for child in root]
    if f"{A}entry" in kinds:  # atomFeed: the feed's metadata, then its entries
        first = kinds.index(f"{A}entry")
        assert all(tag == f"{A}entry" for tag in kinds[first:]), "metadata after an entry"
    check_common(root)
    self_links = [link for link in root.findall(f"{A}link") if link.get("rel") == "self"]
    assert len(self_links) == 1, "a feed SHOULD link to itself (once)"
    feed_has_author = root.find(f"{A}author") is not None
    ids = []
    for entry in entries(root):
        check_children(entry, "entry", ENTRY_ONCE, ENTRY_AT_MOST_ONCE, ENTRY_MANY)
        check_common(entry)
        assert feed_has_author or entry.find(f"{A}author") is not None, "entry has no author"
        content = entry.find(f"{A}content")
        alternates = [x for x in entry.findall(f"{A}link") if x.get("rel", "alternate")
                      == "alternate"]
        assert content is not None or alternates, "an entry without content needs a link"
        if content is not None:
            kind = content.get("type", "text")
            assert kind in {"text", "html", "xhtml"} or "/" in kind, kind
            if content.get("src") is not None or kind not in {"text", "html", "xhtml"}:
                assert entry.find(f"{A}summary") is not None, "such content needs a summary"
            if kind in {"text", "html"}:
                assert len(content) == 0, "text content has no child elements"
        ids.append(text(entry, "id"))
    assert len(ids) == len(set(ids)), f"entry ids repeat: {ids}"
    return root


def check_children(element: ET.Element, name: str, once: set[str], at_most_once: set[str],
                   many: set[str]) -> None:
    counts: dict[str, int] = {}
    for child in element:
        if child.tag.startswith(A):
            local = child.tag[len(A):]
            assert local in once | at_most_once | many, f"atom:{local} in atom:{name}"
            counts[local] = counts.get(local, 0) + 1
        else:
            assert child.tag.startswith("{"), f"unqualified {child.tag} in atom:{name}"
    for local in once:
        assert counts.get(local) == 1, f"atom:{name} must have one atom:{local}"
    for local in at_most_once:
        assert counts.get(local, 0) <= 1, f"atom:{name} has several atom:{local}"


def check_common(element: ET.Element) -> None:
    """The constructs the feed and each entry share: id, text, date, person, link, category."""
    identifier = text(element, "id").strip()
    assert identifier == text(element, "id"), "an id has surrounding whitespace"
    assert urlsplit(identifier).scheme and not re.search(r"\s", identifier), \
        f"id {identifier!r} is not an absolute IRI"
    for child in element:
        local = child.tag[len(A):] if child.tag.startswith(A) else ""
        if local in TEXT_CONSTRUCTS:
            kind = child.get("type", "text")
            assert kind in {"text", "html", "xhtml"}, kind
            if kind != "xhtml":
                assert len(child) == 0, f"atom:{local} of type {kind} holds elements"
        if local in DATE_CONSTRUCTS:
            stamp = child.text or ""
            assert RFC3339.match(stamp), f"{stamp!r} is not an RFC 3339 date-time"
            assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
        if local in {"author", "contributor"}:
            assert len(child.findall(f"{A}name")) == 1, "a person has exactly one name"
            assert len(child.findall(f"{A}uri")) <= 1 and len(child.findall(f"{A}email")) <= 1
        if local == "link":
            assert child.get("href"), "a link has an href"
        if local == "category":
            assert child.get("term"), "a category has a term"
        if local == "generator":
            assert len(child) == 0
    alternates = [(x.get("type"), x.get("hreflang")) for x in element.findall(f"{A}link")
                  if x.get("rel", "alternate") == "alternate"]
    assert len(alternates) == len(set(alternates)), "two alternate links of one type"


def check_feedparser(document: str) -> Any:
    parsed = feedparser.parse(document.encode("utf-8"))
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


GOOD = f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="{ATOM}"><id>https://a.example/f</id><title>t</title>
<updated>2026-11-20T08:15:00Z</updated><link rel="self" href="https://a.example/f"/>
<author><name>n</name></author>
<entry><id>tag:a,2026:1</id><title>e</title><updated>2026-11-20T08:15:00Z</updated>
<link href="https://clinicaltrials.gov/study/NCT02803307"/></entry>
</feed>"""

BROKEN = {  # fault: (document, what the checker says)
    "not Atom's namespace": (GOOD.replace(ATOM, "http://purl.org/atom/ns#"), "purl.org"),
    "feed without id": (GOOD.replace("<id>https://a.example/f</id>", ""),
                        "must have one atom:id"),
    "date without zone": (GOOD.replace('08:15:00Z</updated><link rel="self"',
                                       '08:15:00</updated><link rel="self"'), "RFC 3339"),
    "two feed titles": (GOOD.replace("<title>t</title>", "<title>t</title><title>u</title>"),
                        "must have one atom:title"),
    "no author anywhere": (GOOD.replace("<author><name>n</name></author>", ""), "no author"),
    "entry without link or content": (GOOD.replace(
        '<link href="https://clinicaltrials.gov/study/NCT02803307"/>', ""), "needs a link"),
    "repeated entry id": (GOOD.replace("</feed>", GOOD[GOOD.index("<entry>"):]),
                          "entry ids repeat"),
    "relative id": (GOOD.replace("tag:a,2026:1", "change-1"), "not an absolute IRI"),
    "unknown Atom element": (GOOD.replace("<title>e</title>", "<title>e</title><headline/>"),
                             "atom:headline"),
    "markup in a text title": (GOOD.replace("<title>e</title>", "<title><b>e</b></title>"),
                               "holds elements"),
    "metadata after an entry": (GOOD.replace("</feed>", "<subtitle>late</subtitle></feed>"),
                                "metadata after an entry"),
    "category without term": (GOOD.replace("<title>e</title>",
                                           '<title>e</title><category scheme="s"/>'),
                              "has a term"),
    "no self link": (GOOD.replace('<link rel="self" href="https://a.example/f"/>', ""),
                     "link to itself"),
    "control character": (GOOD.replace("<title>e</title>", "<title>e&#7;</title>"), None),
}


def test_the_checker_accepts_a_minimal_valid_feed() -> None:
    assert len(entries(check_atom(GOOD))) == 1


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_the_checker_rejects_a_feed_that_breaks_rfc_4287(fault: str) -> None:
    document, reason = BROKEN[fault]
    if reason is None:  # not even well-formed XML
        with pytest.raises(ET.ParseError):
            check_atom(document)
        return
    with pytest.raises(AssertionError, match=re.escape(reason)):
        check_atom(document)


# --- The feed -------------------------------------------------------------------------


def test_a_week_of_changes_is_a_valid_atom_feed_with_one_entry_per_change() -> None:
    document = build()
    root = check_atom(document)
    assert len(entries(root)) == 5
    parsed = check_feedparser(document)
    assert len(parsed.entries) == 5
    assert parsed.feed.title == "Myositis clinical trials: all changes"


def test_the_feed_names_itself_its_pages_its_author_and_its_generator() -> None:
    root = check_atom(build(subtitle="Every change to myositis trials on ClinicalTrials.gov"))
    assert text(root, "id") == f"{SITE}/feed.atom"
    assert text(root, "title") == "Myositis clinical trials: all changes"
    assert text(root, "subtitle") == "Every change to myositis trials on ClinicalTrials.gov"
    links = {x.get("rel"): (x.get("href"), x.get("type")) for x in root.findall(f"{A}link")}
    assert links == {"self": (f"{SITE}/feed.atom", "application/atom+xml"),
                     "alternate": (f"{SITE}/index.html", "text/html")}
    assert [a.findtext(f"{A}name") for a in root.findall(f"{A}author")] == \
        ["Myositis trials tracker"]
    generator = root.find(f"{A}generator")
    assert generator is not None and (generator.text or "").strip()
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"


def test_without_a_subtitle_there_is_no_subtitle_element() -> None:
    assert check_atom(build()).find(f"{A}subtitle") is None


def test_each_entry_says_which_trial_changed_and_how_in_plain_words() -> None:
    root = check_atom(build(events=week_of_changes()[1:2]))
    (entry,) = entries(root)
    assert text(entry, "title") == "Arimoclomol in Inclusion Body Myositis — Results were posted"
    assert text(entry, "updated") == text(entry, "published") == "2026-11-18T00:00:00Z"
    content = entry.find(f"{A}content")
    assert content is not None and content.get("type") in {"text", "html"}
    body = content.text or ""
    assert "Results were posted" in body
    assert "Results first posted 2026-11-18" in body  # the technical form
    assert IBM in body and "Arimoclomol in Inclusion Body Myositis" in body
    assert "Registry update posted: 2026-11-18\nSeen by the tracker: 2026-11-19 05:30 UTC\n" \
        in body


def test_without_a_patient_sentence_the_technical_summary_stands_in() -> None:
    root = check_atom(build(events=week_of_changes()[4:5]))
    (entry,) = entries(root)
    assert text(entry, "title") == \
        "Tofacitinib in Refractory Dermatomyositis — Primary completion 2026-03 -> 2026-11"
    assert "Primary completion 2026-03 -> 2026-11" in text(entry, "content")


def test_an_entry_id_is_a_stable_tag_uri_shared_by_every_feed() -> None:
    everything = build()
    ibm_only = build(events=events_for_subtype(week_of_changes(), studies(), "ibm"),
                     feed_id=f"{SITE}/feeds/ibm.atom", self_url=f"{SITE}/feeds/ibm.atom")
    ids = [text(e, "id") for e in entries(check_atom(everything))]
    assert ids == [f"tag:tracker,2026:change/{n}" for n in (15, 14, 13, 12, 11)]
    assert [text(e, "id") for e in entries(check_atom(ibm_only))] == \
        ["tag:tracker,2026:change/14"]
    assert build() == everything  # the same changes give the same document


def test_entries_are_newest_first_whatever_order_they_come_in() -> None:
    shuffled = week_of_changes()
    random.Random(4287).shuffle(shuffled)
    root = check_atom(build(events=shuffled))
    stamps = [text(e, "updated") for e in entries(root)]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == 5
    assert stamps[0] == "2026-11-20T00:00:00Z"
    parsed = check_feedparser(build(events=shuffled))
    assert [e.id for e in parsed.entries] == [f"tag:tracker,2026:change/{n}"
                                              for n in (15, 14, 13, 12, 11)]


def test_entries_are_dated_and_ordered_by_the_registry_not_by_when_they_were_seen() -> None:
    late = event(30, IBM, datetime(2026, 12, 3, 6, 0, tzinfo=UTC), posted="2026-11-21")
    prompt = event(20, DM, datetime(2026, 11, 26, 6, 0, tzinfo=UTC), posted="2026-11-25")
    same_day = event(25, JDM, datetime(2026, 11, 25, 23, 0, tzinfo=UTC), posted="2026-11-25")
    root = check_atom(build(events=[late, prompt, same_day], updated=datetime(2026, 11, 1)))

    found = {text(e, "id").rsplit("/", 1)[1]: e for e in entries(root)}
    assert list(found) == ["25", "20", "30"]  # newest registry date, then newest event
    assert [(text(e, "updated"), text(e, "published")) for e in found.values()] == [
        ("2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z"),
        ("2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z"),
        ("2026-11-21T00:00:00Z", "2026-11-21T00:00:00Z")]
    assert text(root, "updated") == "2026-11-25T00:00:00Z"  # the newest entry's date
    assert "Seen by the tracker: 2026-12-03 06:00 UTC" in text(found["30"], "content")
    assert "Seen by the tracker" not in text(found["25"], "content")  # seen that same day
    parsed = check_feedparser(build(events=[late, prompt, same_day]))
    assert tuple(parsed.entries[2].published_parsed)[:3] == (2026, 11, 21)


def test_a_change_without_a_registry_date_is_dated_by_the_day_it_was_seen() -> None:
    undated = event(1, IBM, datetime(2026, 11, 22, 7, 15, tzinfo=UTC), posted=None)
    (entry,) = entries(check_atom(build(events=[undated])))
    assert text(entry, "updated") == "2026-11-22T00:00:00Z"
    body = text(entry, "content")
    assert "Registry update posted" not in body and "Seen by the tracker" not in body


def test_changes_seen_by_the_same_sync_list_the_later_recorded_first() -> None:
    at = datetime(2026, 11, 18, 5, 30, tzinfo=UTC)
    same_sync = [event(21, DM, at), event(23, IBM, at), event(22, JDM, at)]
    root = check_atom(build(events=same_sync))
    assert [text(e, "id").rsplit("/", 1)[1] for e in entries(root)] == ["23", "22", "21"]


def test_limit_keeps_only_the_newest_changes() -> None:
    root = check_atom(build(limit=2))
    assert [text(e, "id") for e in entries(root)] == \
        ["tag:tracker,2026:change/15", "tag:tracker,2026:change/14"]
    assert len(entries(check_atom(build(limit=5)))) == 5
    assert len(entries(check_atom(build(limit=50)))) == 5


def test_a_default_limit_bounds_a_long_history() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    many = [event(n, IBM, start + timedelta(hours=n)) for n in range(1, 251)]
    root = check_atom(build(events=many))
    assert len(entries(root)) == 200
    assert text(entries(root)[0], "id") == "tag:tracker,2026:change/250"


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        build(limit=-1)


@pytest.mark.parametrize("events", [[], "limit0"], ids=["no changes", "limit 0"])
def test_an_empty_feed_is_still_valid_atom(events: list[ChangeEvent] | str) -> None:
    document = build(limit=0) if events == "limit0" else build(events=[])
    root = check_atom(document)
    assert entries(root) == []
    assert text(root, "updated") == "2026-11-23T06:00:00Z"
    parsed = check_feedparser(document)
    assert parsed.entries == [] and parsed.feed.id == f"{SITE}/feed.atom"


def test_the_feed_is_never_older_than_its_newest_entry() -> None:
    root = check_atom(build(updated=datetime(2026, 11, 1, tzinfo=UTC)))
    assert text(root, "updated") == "2026-11-20T00:00:00Z"
    assert text(check_atom(build()), "updated") == "2026-11-23T06:00:00Z"


def test_times_are_rfc_3339_in_utc_and_stored_naive_times_are_utc() -> None:
    paris = timezone(timedelta(hours=2))
    moments = [event(1, IBM, datetime(2026, 6, 1, 1, 0, tzinfo=paris), posted=None),
               event(2, DM, datetime(2026, 6, 2, 9, 45, 30, 123456),  # as SQLite returns it
                     posted="2026-05-29")]
    root = check_atom(build(events=moments, updated=datetime(2026, 6, 3, 12, 0)))
    first, second = entries(root)
    assert [text(e, "updated") for e in (first, second)] == \
        ["2026-05-31T00:00:00Z", "2026-05-29T00:00:00Z"]  # 1 June in Paris: 31 May in UTC
    assert "Seen by the tracker: 2026-06-02 09:45 UTC" in text(second, "content")
    assert text(root, "updated") == "2026-06-03T12:00:00Z"
    parsed = check_feedparser(build(events=moments, updated=datetime(2026, 6, 3, 12, 0)))
    assert tuple(parsed.entries[1].updated_parsed)[:5] == (2026, 5, 29, 0, 0)


def test_every_entry_links_to_its_study_on_clinicaltrials_gov() -> None:
    document = build()
    root = check_atom(document)
    expected = [ASS, IBM, DM, JDM, DM]
    for entry, nct_id in zip(entries(root), expected, strict=True):
        links = entry.findall(f"{A}link")
        assert [(x.get("rel"), x.get("href")) for x in links] == \
            [("alternate", f"https://clinicaltrials.gov/study/{nct_id}")]
    feed_links = {f"{SITE}/feed.atom", f"{SITE}/index.html"}
    for link in root.iter(f"{A}link"):
        href = link.get("href") or ""
        assert href in feed_links or STUDY_LINK.match(href), href
    parsed = check_feedparser(document)
    assert [e.link for e in parsed.entries] == \
        [f"https://clinicaltrials.gov/study/{n}" for n in expected]


def test_a_malformed_nct_id_cannot_lead_a_link_off_the_study_path() -> None:
    hostile = "NCT0/../../evil?x=<1>&y"
    root = check_atom(build(events=[event(1, hostile, NOW)], studies={}))
    (entry,) = entries(root)
    link = entry.find(f"{A}link")
    assert link is not None
    parts = urlsplit(link.get("href") or "")
    assert (parts.scheme, parts.netloc) == ("https", "clinicaltrials.gov")
    assert parts.path.startswith("/study/") and "/" not in parts.path[len("/study/"):]
    assert not parts.query and not parts.fragment


HOSTILE = ('Arimoclomol in Inclusion Body Myositis <script>alert("x")</script> & '
           "'IBM' \x07trial ]]> &amp;")
HOSTILE_CLEAN = ('Arimoclomol in Inclusion Body Myositis <script>alert("x")</script> & '
                 "'IBM' trial ]]> &amp;")


def test_hostile_registry_text_is_escaped_and_round_trips_as_text() -> None:
    hostile_study = study(IBM, title=HOSTILE)
    change = event(1, IBM, NOW, plain='Now <b>recruiting</b> & "open"\x07',
                   summary="Status: <i>A</i> -> B & C\x1b[31m")
    document = build(events=[change], studies=studies(hostile_study))
    assert "<script" not in document and "<b>" not in document and "<i>" not in document
    assert "\x07" not in document and "\x1b" not in document
    (entry,) = entries(check_atom(document))
    title = text(entry, "title")
    assert title == f'{HOSTILE_CLEAN} — Now <b>recruiting</b> & "open"'
    body = text(entry, "content")
    assert 'Now <b>recruiting</b> & "open"' in body
    assert "Status: <i>A</i> -> B & C[31m" in body
    parsed = check_feedparser(document)
    assert parsed.entries[0].title == title


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1f",
                                 "\x7f", "\x85", "\x9f", "\ud800", "\udfff", "\ufffe",
                                 "\uffff"],
                         ids=lambda c: f"U+{ord(c):04X}")
def test_characters_xml_cannot_carry_are_stripped_wherever_they_come_from(bad: str) -> None:
    change = event(1, DM, NOW, plain=f"Now{bad} recruiting", summary=f"Status{bad}: A -> B",
                   posted=f"2026-11-18{bad}")
    document = build(events=[change],
                     studies=studies(study(DM, title=f"Tofacitinib{bad} in Dermatomyositis",
                                           subtypes=f"dermatomyositis{bad}|iim")),
                     title=f"All{bad} changes", subtitle=f"Every{bad} change",
                     self_url=f"{SITE}/feed.atom?x={bad}")
    assert bad not in document
    document.encode("utf-8")  # a lone surrogate would not even encode
    root = check_atom(document)
    (entry,) = entries(root)
    assert text(entry, "title") == "Tofacitinib in Dermatomyositis — Now recruiting"
    assert "Status: A -> B" in text(entry, "content")
    check_feedparser(document)


def test_any_registry_text_makes_well_formed_atom() -> None:
    generator = random.Random(20261123)
    alphabet = ([chr(c) for c in range(0x00, 0x100)] + list("<>&\"'—éü中\u2028\ufeff")
                + ["\ud83d", "\U0001f9ea", "\ufffe", "]]>", "&amp;", "<![CDATA["])
    for _ in range(60):
        def noise() -> str:
            return "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 40)))
        change = event(generator.randint(1, 10**6), IBM, NOW, plain=noise(), summary=noise())
        document = build(events=[change], studies=studies(study(IBM, title=noise(),
                                                                subtypes=noise())))
        root = check_atom(document)
        assert len(entries(root)) == 1
        check_feedparser(document)


def test_line_breaks_stay_in_content_but_titles_are_one_line() -> None:
    change = event(1, IBM, NOW, plain="Now recruiting", summary="Eligibility:\n- age\t18+")
    document = build(events=[change], studies=studies(study(
        IBM, title="Arimoclomol in\nInclusion   Body\r\nMyositis")))
    (entry,) = entries(check_atom(document))
    assert text(entry, "title") == "Arimoclomol in Inclusion Body Myositis — Now recruiting"
    assert "Eligibility:\n- age\t18+" in text(entry, "content")


def test_very_long_titles_are_shortened_in_the_entry_title_only() -> None:
    long_title = "Arimoclomol in Inclusion Body Myositis " + "and more words " * 20
    document = build(events=[event(1, IBM, NOW)],
                     studies=studies(study(IBM, title=long_title)))
    (entry,) = entries(check_atom(document))
    name, sentence = text(entry, "title").split(" — ")
    assert sentence == "Now recruiting"
    assert len(name) <= 100 and name.endswith("…") and name.startswith("Arimoclomol in")
    assert " ".join(long_title.split()) in text(entry, "content")


def test_quotes_and_ampersands_in_attributes_round_trip() -> None:
    self_url = f'{SITE}/feed.atom?week=2026-W47&kind="all"'
    odd = study(IBM, subtypes='ibm|a"b&c<d>')
    document = build(events=[event(1, IBM, NOW)], studies=studies(odd), self_url=self_url,
                     labels={"ibm": 'Inclusion body myositis "sIBM" & co'})
    root = check_atom(document)
    self_link = [x for x in root.findall(f"{A}link") if x.get("rel") == "self"]
    assert self_link[0].get("href") == self_url
    categories = entries(root)[0].findall(f"{A}category")
    assert [c.get("term") for c in categories] == ["ibm", 'a"b&c<d>']
    assert categories[0].get("label") == 'Inclusion body myositis "sIBM" & co'


def test_each_subtype_of_the_study_is_a_category() -> None:
    root = check_atom(build())
    by_id = {text(e, "id").rsplit("/", 1)[1]: e for e in entries(root)}
    terms = {n: [c.get("term") for c in e.findall(f"{A}category")] for n, e in by_id.items()}
    assert terms == {"15": ["ass", "ild", "iim"], "14": ["ibm", "iim"],
                     "13": ["dermatomyositis", "iim"], "12": ["jdm", "dermatomyositis"],
                     "11": ["dermatomyositis", "iim"]}
    schemes = {c.get("scheme") for c in root.iter(f"{A}category")}
    assert len(schemes) == 1 and urlsplit(schemes.pop() or "").scheme
    parsed = check_feedparser(build())
    assert [t.term for t in parsed.entries[1].tags] == ["ibm", "iim"]


def test_a_blank_or_repeated_tag_gives_no_empty_or_duplicate_category() -> None:
    messy = study(IBM, subtypes=" |\x07|ibm|iim|ibm\x07")
    root = check_atom(build(events=[event(1, IBM, NOW)], studies=studies(messy)))
    assert [c.get("term") for c in root.iter(f"{A}category")] == ["ibm", "iim"]


def test_a_study_without_subtypes_or_unknown_to_the_feed_gets_no_category() -> None:
    untagged = study(DM, subtypes="")
    changes = [event(1, DM, NOW), event(2, "NCT09999999", NOW + timedelta(minutes=1))]
    root = check_atom(build(events=changes, studies=studies(untagged)))
    unknown, plain = entries(root)
    assert unknown.findall(f"{A}category") == [] and plain.findall(f"{A}category") == []
    assert text(unknown, "title") == "NCT09999999 — Now recruiting"
    assert text(plain, "title") == "Tofacitinib in Refractory Dermatomyositis — Now recruiting"


def test_a_change_without_an_id_is_refused_and_a_repeated_one_is_listed_once() -> None:
    with pytest.raises(ValueError):
        build(events=[event(None, IBM, NOW)])
    twice = [event(5, IBM, NOW), event(5, IBM, NOW), event(6, DM, NOW)]
    root = check_atom(build(events=twice))
    assert [text(e, "id") for e in entries(root)] == \
        ["tag:tracker,2026:change/6", "tag:tracker,2026:change/5"]


@pytest.mark.parametrize("field", ["feed_id", "title", "self_url", "alternate_url"])
def test_a_feed_without_its_id_title_or_urls_is_refused(field: str) -> None:
    with pytest.raises(ValueError):
        build(**{field: " \x07 "})


def test_events_for_subtype_keeps_exactly_that_tag_in_order() -> None:
    changes = week_of_changes()
    known = studies()
    assert [e.id for e in events_for_subtype(changes, known, "dermatomyositis")] == \
        [11, 12, 13]
    assert [e.id for e in events_for_subtype(changes, known, "iim")] == [11, 14, 15, 13]
    assert [e.id for e in events_for_subtype(changes, known, "jdm")] == [12]
    # A tag name inside another one ("dm" in "jdm") is not that tag.
    assert events_for_subtype(changes, known, "dm") == []
    # A change whose study is unknown belongs to no subtype.
    without_ibm = {n: s for n, s in known.items() if n != IBM}
    assert 14 not in [e.id for e in events_for_subtype(changes, without_ibm, "iim")]


def test_a_subtype_feed_holds_only_that_subtypes_changes() -> None:
    chosen: Sequence[ChangeEvent] = events_for_subtype(week_of_changes(), studies(), "iim")
    document = build(events=chosen, feed_id=f"{SITE}/feeds/iim.atom",
                     self_url=f"{SITE}/feeds/iim.atom",
                     title="Myositis clinical trials: Idiopathic inflammatory myopathies")
    root = check_atom(document)
    assert len(entries(root)) == 4
    for entry in entries(root):
        assert "iim" in [c.get("term") for c in entry.findall(f"{A}category")]
    assert text(root, "id") == f"{SITE}/feeds/iim.atom"
    check_feedparser(document)


def test_non_ascii_text_survives_the_utf8_file() -> None:
    change = event(1, DM, NOW, plain="A new site opened in Lyon, France",
                   summary="Site added: Hôpital Edouard Herriot, Lyon, France")
    document = build(events=[change], title="Essais cliniques — myosites")
    raw = document.encode("utf-8")
    root = ET.fromstring(raw)
    assert text(root, "title") == "Essais cliniques — myosites"
    assert "Hôpital Edouard Herriot" in text(entries(root)[0], "content")
    assert check_feedparser(document).feed.title == "Essais cliniques — myosites"
