"""Normalise a raw API study record: strip noise, hash it, and pull out the fields people use.

All functions are pure. A record is exactly what the API returns for one study; nothing here
invents values: a missing field stays None, and partial dates keep their precision.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

import msgspec

from tracker.text import join_list

Record = dict[str, Any]  # one study as the API returns it (a `models.Study` is its table row)

STATUS_LABELS = {
    "ACTIVE_NOT_RECRUITING": "Active, not recruiting",
    "COMPLETED": "Completed",
    "ENROLLING_BY_INVITATION": "Enrolling by invitation",
    "NOT_YET_RECRUITING": "Not yet recruiting",
    "RECRUITING": "Recruiting",
    "SUSPENDED": "Suspended",
    "TERMINATED": "Terminated",
    "WITHDRAWN": "Withdrawn",
    "AVAILABLE": "Available",
    "NO_LONGER_AVAILABLE": "No longer available",
    "TEMPORARILY_NOT_AVAILABLE": "Temporarily not available",
    "APPROVED_FOR_MARKETING": "Approved for marketing",
    "WITHHELD": "Withheld",
    "UNKNOWN": "Unknown status",
}
# A status as a patient reads it: what the trial (or one of its sites) is now, in a few
# words, and what that means for joining. The registry's own words above stay for the
# technical summaries; these are for digests, the site and the patient sentences.
PLAIN_STATUS = {
    "RECRUITING": ("Recruiting", "you can ask the study team about joining"),
    "NOT_YET_RECRUITING": ("Not recruiting yet",
                           "the trial is expected to open, but nobody can join yet"),
    "ACTIVE_NOT_RECRUITING": ("Active, not recruiting",
                              "the trial goes on with the people already taking part, and "
                              "nobody new can join"),
    "ENROLLING_BY_INVITATION": ("Enrolling by invitation only",
                                "the study team invites people; you cannot ask to join"),
    "COMPLETED": ("Finished", "nobody new can join"),
    "TERMINATED": ("Stopped early", "nobody new can join"),
    "SUSPENDED": ("Paused", "nobody new can join for now"),
    "WITHDRAWN": ("Withdrawn", "it was called off before anyone took part"),
    "UNKNOWN": ("Status unknown",
                "the sponsor has not confirmed it recently, so it may not be open"),
    # Expanded access: a way to get a treatment outside a trial, asked for by a doctor.
    "AVAILABLE": ("Available outside a trial (expanded access)",
                  "a doctor can ask for this treatment for a patient who cannot join a trial"),
    "NO_LONGER_AVAILABLE": ("No longer available outside a trial (expanded access)",
                            "doctors can no longer ask for this treatment this way"),
    "TEMPORARILY_NOT_AVAILABLE": ("Not available outside a trial for now (expanded access)",
                                  "doctors cannot ask for this treatment this way at the "
                                  "moment"),
    # Approved by the FDA for some use: never to be read as approved for myositis.
    "APPROVED_FOR_MARKETING": ("Approved for sale, not necessarily for myositis",
                               "the US medicines agency (FDA) approved this treatment for "
                               "sale for some illness; this does not mean it is approved for "
                               "myositis"),
    "WITHHELD": ("Status withheld", "the sponsor has not made it public"),
}
PHASE_LABELS = {
    "NA": "Not Applicable",
    "EARLY_PHASE1": "Early Phase 1",
    "PHASE1": "Phase 1",
    "PHASE2": "Phase 2",
    "PHASE3": "Phase 3",
    "PHASE4": "Phase 4",
}


def get(record: Any, path: str, default: Any = None) -> Any:
    """`record["a"]["b"]["c"]` for path "a.b.c", or `default` if any step is missing."""
    node = record
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def without_noise(study: Record) -> Record:
    """The record minus fields that move on every registry refresh (versionHolder)."""
    if get(study, "derivedSection.miscInfoModule.versionHolder") is None:
        return study
    clean = copy.copy(study)
    derived = dict(clean["derivedSection"])
    misc = {k: v for k, v in derived["miscInfoModule"].items() if k != "versionHolder"}
    if misc:
        derived["miscInfoModule"] = misc
    else:
        del derived["miscInfoModule"]
    clean["derivedSection"] = derived
    return clean


# msgspec writes the same bytes as the standard library's canonical form below except for
# floats under 1e-4 or from 1e16 ("0.00001", "1e16" for "1e-05", "1e+16") and NaN/infinity
# ("null" for "NaN"). Output that might hold one of those is made again by the standard library,
# so the hash of every record stays what it was (tests/test_record_codec.py proves it); a
# false alarm (these bytes inside a text) only costs the slower path.
_SORTED = msgspec.json.Encoder(order="sorted")
_COMPACT = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()
# A digit before an exponent, found as "0e" once every digit reads 0, e and E read e and
# every other byte a space: bytes.translate and a substring search run at memory speed, where
# the regular expression r"\d[eE]" crawled (and the search is quicker in a text of spaces).
_DIGIT_E = bytes(ord("0") if chr(b).isdigit() and b < 128 else ord("e") if b in b"eE"
                 else ord(" ") for b in range(256))


def may_differ_from_stdlib(fast: bytes) -> bool:
    """Whether msgspec's bytes might differ from the standard library's: a number with an
    exponent (a digit then e or E), a float under 1e-4 ("0.0000") or a "null"."""
    if b"null" in fast or b"0.0000" in fast:
        return True
    return b"0e" in fast.translate(_DIGIT_E)


def canonical_json(value: Any) -> bytes:
    """`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` as
    UTF-8, byte for byte (the form every stored content hash was made from), only faster."""
    try:
        fast = _SORTED.encode(value)
    except (TypeError, ValueError, OverflowError):  # what msgspec cannot write: let json say
        fast = b"null"
    if not may_differ_from_stdlib(fast):
        return fast
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def compact_json(value: Any) -> bytes:
    """Compact JSON as UTF-8 for storage; `loads` reads it back equal (keys in their order)."""
    try:
        fast = _COMPACT.encode(value)
    except (TypeError, ValueError, OverflowError):
        fast = b"null"
    if b"null" not in fast:  # NaN and infinity would come out as null: keep them as json does
        return fast
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def loads(raw: bytes | bytearray | memoryview | msgspec.Raw) -> Any:
    """`json.loads(raw)`, faster. JSON that msgspec refuses but the standard library reads
    (NaN, lone surrogates, numbers out of float range) is read by the standard library, so
    whatever was accepted before still is, as the same values."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError:
        return json.loads(raw if isinstance(raw, bytes) else bytes(raw))


def content_hash(study: Record) -> str:
    """A stable fingerprint of the meaningful content: equal hashes mean nothing changed.

    It is the SHA-256 of `canonical_json` and must never change for a record: every stored
    study would look changed after an upgrade."""
    return hashlib.sha256(canonical_json(without_noise(study))).hexdigest()


# The one field content_hash leaves out, as it appears in a record's JSON: its key, its colon
# and the quote opening its (text) value, with nothing between them.
_KEY = b'"versionHolder":'
_NOISE = _KEY + b'"'
_NOISE_VALUE = re.compile(rb"[\x20\x21\x23-\x5b\x5d-\x7e]*")  # printable ASCII, no " or \


def _noise_span(data: bytes) -> tuple[int, int] | None:
    """Where the value of a versionHolder key lies in the JSON, if it can be found without
    reading the record: one key is spelled "versionHolder" (a text can hold those letters, but
    not a quote after them and then a colon: its quotes are escaped), and its value is plain
    text. None otherwise."""
    at = data.find(_NOISE)
    if at < 0 or data.count(_KEY) != 1:
        return None
    start = at + len(_NOISE)
    end = data.find(b'"', start)
    if end < 0 or not _NOISE_VALUE.fullmatch(data, start, end):
        return None
    return start, end


def received_hash(raw: bytes, study: Record | None = None) -> str | None:
    """A fingerprint of a record's JSON exactly as received, except the value of its
    versionHolder (which the registry moves on every refresh) when `_noise_span` finds it.

    Equal fingerprints mean equal JSON but for that value, so equal content hashes: a sync
    that receives a study's bytes with the fingerprint stored beside its content hash need
    not read them. So a fingerprint to store is asked for with `study`, the record the bytes
    decode to, and given only if the value cut out is that record's
    derivedSection.miscInfoModule.versionHolder: the record has one, and no escape in the
    JSON could spell a second versionHolder key (the one cut out would then be another
    field, which the content hash counts; a letter can only be escaped as \\u00XX). JSON
    equal to it outside the value cut out passes the same test, so a fingerprint computed
    without `study` matches a stored one only if the content is the same."""
    span = _noise_span(raw)
    holder = None if study is None else get(study, "derivedSection.miscInfoModule.versionHolder")
    digest = hashlib.sha256()
    if span is None:
        if holder is not None:
            return None  # a fingerprint of every byte would change with every refresh
        digest.update(b"whole\0")
        digest.update(raw)
    else:
        if study is not None and (b"\\u00" in raw or holder is None):
            return None
        start, end = span
        view = memoryview(raw)
        # The offset is hashed too, so that the JSON before and after the value must each be
        # the same, not merely their concatenation.
        digest.update(b"cut\0" + start.to_bytes(8, "big"))
        digest.update(view[:start])
        digest.update(view[end:])
    return digest.hexdigest()


def last_update_posted(study: Record) -> str | None:
    return get(study, "protocolSection.statusModule.lastUpdatePostDateStruct.date")


def status_label(status: str | None) -> str:
    if not status:
        return "No status"
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def status_words(status: str | None) -> str:
    """The status in a patient's few words ("Paused"); an unknown code as its label."""
    plain = PLAIN_STATUS.get(status or "")
    return plain[0] if plain else status_label(status)


def status_meaning(status: str | None) -> str:
    """What the status means for joining ("nobody new can join for now"); "" if unknown."""
    plain = PLAIN_STATUS.get(status or "")
    return plain[1] if plain else ""


def status_explained(status: str | None) -> str:
    """Words and meaning in one line: "Paused: nobody new can join for now"."""
    meaning = status_meaning(status)
    return f"{status_words(status)}: {meaning}" if meaning else status_words(status)


def phases_label(phases: list[str] | None) -> str:
    if not phases:
        return "No phase"
    return "/".join(PHASE_LABELS.get(p, p) for p in phases)


def site_key(site: dict[str, Any]) -> str:
    """Identity of a site across versions: facility and place, case- and space-folded."""
    parts = [site.get(k) or "" for k in ("facility", "city", "state", "country")]
    return "|".join(" ".join(str(p).split()).casefold() for p in parts)


def site_place(site: dict[str, Any]) -> str:
    place = ", ".join(" ".join(str(p).split()) for p in (site.get("city"), site.get("country"))
                      if p)
    facility = " ".join(str(site.get("facility") or "").split())
    if facility and place:
        return f"{place} ({facility})"
    return place or facility or "unnamed site"


def summarise(study: Record) -> dict[str, Any]:
    """The columns the snapshot keeps for filtering, listing and export."""
    p = study.get("protocolSection", {})
    locations = get(p, "contactsLocationsModule.locations", []) or []
    countries = sorted({loc["country"].strip() for loc in locations if loc.get("country")})
    interventions = get(p, "armsInterventionsModule.interventions", []) or []
    return {
        "nct_id": get(p, "identificationModule.nctId"),
        "brief_title": get(p, "identificationModule.briefTitle") or "",
        "official_title": get(p, "identificationModule.officialTitle"),
        "acronym": get(p, "identificationModule.acronym"),
        "overall_status": get(p, "statusModule.overallStatus"),
        "last_known_status": get(p, "statusModule.lastKnownStatus"),
        "why_stopped": get(p, "statusModule.whyStopped"),
        "study_type": get(p, "designModule.studyType"),
        "phases": join_list(get(p, "designModule.phases", []) or []),
        "conditions": join_list(get(p, "conditionsModule.conditions", []) or []),
        "interventions": join_list(
            str(i.get("name")) for i in interventions if i.get("name")
        ),
        "lead_sponsor": get(p, "sponsorCollaboratorsModule.leadSponsor.name"),
        "sponsor_class": get(p, "sponsorCollaboratorsModule.leadSponsor.class"),
        "enrollment": get(p, "designModule.enrollmentInfo.count"),
        "enrollment_type": get(p, "designModule.enrollmentInfo.type"),
        "start_date": get(p, "statusModule.startDateStruct.date"),
        "start_date_type": get(p, "statusModule.startDateStruct.type"),
        "primary_completion_date": get(p, "statusModule.primaryCompletionDateStruct.date"),
        "completion_date": get(p, "statusModule.completionDateStruct.date"),
        "first_posted": get(p, "statusModule.studyFirstPostDateStruct.date"),
        "first_submitted": get(p, "statusModule.studyFirstSubmitDate"),
        "status_verified": get(p, "statusModule.statusVerifiedDate"),
        "last_update_posted": get(p, "statusModule.lastUpdatePostDateStruct.date"),
        "results_first_posted": get(p, "statusModule.resultsFirstPostDateStruct.date"),
        "has_results": bool(study.get("hasResults")),
        "minimum_age": get(p, "eligibilityModule.minimumAge"),
        "maximum_age": get(p, "eligibilityModule.maximumAge"),
        "sex": get(p, "eligibilityModule.sex"),
        "countries": join_list(countries),
        "site_count": len(locations),
    }
