"""The fast JSON paths (tracker.record: canonical_json, compact_json, loads) are the standard
library's, byte for byte and value for value: a content hash never changes on upgrade."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tracker.record import (
    canonical_json,
    compact_json,
    content_hash,
    loads,
    may_differ_from_stdlib,
    received_hash,
    without_noise,
)

ROOT = Path(__file__).resolve().parent
REAL_RECORDS = sorted([
    *(ROOT / "data" / "studies").glob("*.json"),
    *(ROOT / "data" / "real").glob("*.json"),
    *(ROOT / "heldout" / "records").glob("*.json"),
    *(ROOT.parent.parent / "shared" / "ctgov" / "studies").glob("*.json"),
])


def stdlib_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def stdlib_hash(study: dict[str, Any]) -> str:
    """content_hash as tracker 0.1 computed it."""
    return hashlib.sha256(stdlib_canonical(without_noise(study))).hexdigest()


def test_there_are_real_records_to_check() -> None:
    assert len(REAL_RECORDS) >= 100


@pytest.mark.parametrize("path", REAL_RECORDS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_real_record_hashes_as_before(path: Path) -> None:
    raw = path.read_bytes()
    study = json.loads(raw)
    assert canonical_json(study) == stdlib_canonical(study)
    assert content_hash(study) == stdlib_hash(study)
    assert loads(raw) == study
    assert loads(compact_json(study)) == study


EDGES: list[Any] = [
    1e-05, -1e-05, 1.5e-07, 0.0001, 1e15, 1e16, 1e17, 1.2345678901234568e16, 1e300, 5e-324,
    -0.0, 0.1, 2**63, 2**64, -(2**63) - 1, 10**30, float("nan"), float("inf"),
    {}, [], {"a": {}, "b": [[], {}]}, None, True, "",
    {"é": 1, "Z": 2, "z": [None, 1.0]}, "\u2028\u00e9\U0001f600\"\\\b\f\n\r\t\x7f",
    {"text": "1e5 cells, 0.00001 mg, null"},
]


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_edge_values_encode_as_the_standard_library_does(value: Any) -> None:
    assert canonical_json(value) == stdlib_canonical(value)
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert compact_json(value) == compact or json.loads(compact_json(value)) == value


@pytest.mark.parametrize("raw", [b"[NaN, Infinity]", b'["\\ud800 lone"]', b"[1e400]",
                                 b"[18446744073709551616]", b'{"a": 1, "a": 2}', b"[1.5e-7]"])
def test_loads_reads_what_the_standard_library_reads(raw: bytes) -> None:
    got, want = loads(raw), json.loads(raw)
    assert repr(got) == repr(want)  # repr: NaN is not equal to itself


@pytest.mark.parametrize("raw", [b"{", b'{"a": 1,}', b"\xff"])
def test_loads_refuses_what_the_standard_library_refuses(raw: bytes) -> None:
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        loads(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_any_value_encodes_as_the_standard_library_does(value: Any) -> None:
    try:
        want: bytes | type[BaseException] = stdlib_canonical(value)
    except UnicodeEncodeError:  # a lone surrogate: the standard library could not hash it
        want = UnicodeEncodeError
    if want is UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            canonical_json(value)
    else:
        assert canonical_json(value) == want


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_value_is_stored_and_read_back_equal(value: Any) -> None:
    try:
        stored = compact_json(value)
    except UnicodeEncodeError:  # a lone surrogate: never stored before either
        return
    assert repr(loads(stored)) == repr(json.loads(stored))
    back = loads(stored)
    if not (isinstance(value, float) and math.isnan(value)):
        assert repr(back) == repr(value)


@given(st.binary() | st.text().map(str.encode)
       | st.lists(st.sampled_from([b"1e5", b"2E", b"0.0000", b"null", b"nul", b"e", b"9", b"x"]))
       .map(b"".join))
def test_the_check_for_the_slower_path_is_the_regular_expression_it_replaced(raw: bytes) -> None:
    """Which records the standard library encodes again decides their hash: it must not move."""
    assert may_differ_from_stdlib(raw) == bool(re.search(rb"\d[eE]|0\.0000|null", raw))


# --- received_hash: the same JSON again is the same content, known without reading it -------

def as_received(study: dict[str, Any]) -> bytes:
    """A record's JSON as the registry sends it: compact, keys in the record's order."""
    return json.dumps(study, ensure_ascii=False, separators=(",", ":")).encode()


def with_holder(study: dict[str, Any], holder: Any) -> dict[str, Any]:
    """A copy of `study` whose derivedSection.miscInfoModule.versionHolder is `holder`."""
    changed = json.loads(json.dumps(study))
    derived = changed.get("derivedSection")
    derived = changed["derivedSection"] = derived if isinstance(derived, dict) else {}
    misc = derived.get("miscInfoModule")
    misc = derived["miscInfoModule"] = misc if isinstance(misc, dict) else {}
    misc["versionHolder"] = holder
    return changed


@pytest.mark.parametrize("path", REAL_RECORDS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_real_record_keeps_its_fingerprint_when_only_its_version_holder_moves(
        path: Path) -> None:
    study = with_holder(json.loads(path.read_bytes()), "2026-11-20")
    raw = as_received(study)
    moved = as_received(with_holder(study, "2026-11-21"))

    assert received_hash(raw, study) is not None
    assert received_hash(moved) == received_hash(raw) == received_hash(raw, study)
    assert content_hash(json.loads(moved)) == content_hash(study)


def test_any_other_change_to_the_json_changes_the_fingerprint() -> None:
    study = with_holder(json.loads(REAL_RECORDS[0].read_bytes()), "2026-11-20")
    raw = as_received(study)
    reformatted = json.dumps(study, ensure_ascii=False).encode()  # same content, spaced
    retitled = as_received({**study, "hasResults": not study.get("hasResults")})

    assert len({received_hash(raw), received_hash(reformatted), received_hash(retitled)}) == 3
    # the JSON before and after the value must each match, not merely joined
    assert received_hash(b'{"a":"xy","versionHolder":"1"}') != \
        received_hash(b'{"a":"x","versionHolder":"y1"}')


@pytest.mark.parametrize(("raw", "why"), [
    (b'{"derivedSection":{"miscInfoModule":{"versionHolder":"2026-11-20"}},'
     b'"protocolSection":{"x":{"versionHolder":"a"}}}', "two keys: which one is noise?"),
    (b'{"protocolSection":{"x":{"versionHolder":"a"}}}', "not the derived one: it counts"),
    (b'{"derivedSection":{"miscInfoModule":{"version\\u0048older":"2026-11-20"}},'
     b'"protocolSection":{"x":{"versionHolder":"a"}}}', "an escape spells the derived key"),
])
def test_a_fingerprint_that_could_hide_a_change_is_never_stored(raw: bytes, why: str) -> None:
    study = json.loads(raw)
    stored = received_hash(raw, study)

    if stored is not None:  # only the whole JSON, which any change to it would move
        other = raw.replace(b'"a"', b'"b"')
        assert received_hash(other) != stored, why


json_objects = st.dictionaries(st.sampled_from(["a", "versionHolder", "derivedSection"]),
                               json_values, max_size=3)
holders = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
# What the registry writes there ("2026-11-20"): plain text, nothing to escape.
plain_holders = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                      blacklist_characters='"\\'), max_size=12)


@settings(max_examples=500, deadline=None)
@given(json_objects, json_objects | json_objects.map(lambda o: {"derivedSection": o}),
       st.none() | holders, st.none() | holders)
def test_equal_fingerprints_mean_equal_content(first: dict[str, Any], second: dict[str, Any],
                                               holder: str | None, other: str | None) -> None:
    """Whatever two records are, if the fingerprint stored for one is the fingerprint of the
    other's JSON, their content hashes are equal."""
    records = [first if holder is None else with_holder(first, holder),
               second if other is None else with_holder(second, other)]
    try:
        raws = [as_received(record) for record in records]
    except UnicodeEncodeError:  # a lone surrogate: the registry sends UTF-8
        return
    stored = received_hash(raws[0], json.loads(raws[0]))
    if stored is not None and stored == received_hash(raws[1]):
        assert content_hash(json.loads(raws[1])) == content_hash(json.loads(raws[0]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "derivedSection"]), json_values, max_size=3),
       plain_holders, plain_holders)
@example({"a": ["versionHolder"]}, "", "0")  # the word as a text is not a second key
@example({"a": {"versionHolder": "x"}}, "", "0")  # a second key: no fingerprint is kept
def test_a_moved_version_holder_keeps_any_stored_fingerprint(record: dict[str, Any],
                                                             holder: str, other: str) -> None:
    try:
        raw = as_received(with_holder(record, holder))
        moved = as_received(with_holder(record, other))
    except UnicodeEncodeError:
        return
    stored = received_hash(raw, json.loads(raw))

    assert stored is None or received_hash(moved) == stored
    if b"\\u00" not in raw and raw.count(b'"versionHolder":') == 1:
        assert stored is not None  # the one key so spelled is surely the derived one
