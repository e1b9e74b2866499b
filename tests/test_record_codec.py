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
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.record import (
    canonical_json,
    compact_json,
    content_hash,
    loads,
    may_differ_from_stdlib,
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
