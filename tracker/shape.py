"""The shape a study record must have before anything reads it, and its text made safe to store.

The readers (`record`, `tags`, `diff`, `plain`) trust the types they read; a record whose shape
is off (`locations` an object, a site's latitude a string) would crash them. So a record is
checked once, when it arrives: `problems` says in short phrases what is wrong, and a record
with problems is set aside instead of read. `clean` removes the control characters and lone
surrogates that a database text column or a UTF-8 file refuses. Both are pure.

SHAPE is checked twice over, from one definition: as msgspec types (`_FAST`), which check a
sound record in C, and by a walk in Python that names every problem, run only when msgspec
refuses the record. msgspec is at least as strict as the walk (tests/test_shape.py holds them
to the same verdict), so a record it accepts has no problems.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from tracker.record import Record


@dataclass(frozen=True)
class Kind:
    """What a leaf must be: `says` completes "<field> is not ...", `test` checks a value,
    `type` is the same check as a msgspec type (strict: no bool for a number, no float for
    a whole number)."""

    says: str
    test: Callable[[object], bool]
    type: Any


@dataclass(frozen=True)
class Required:
    """A field that must be present and not null wherever the object holding it is present
    (elsewhere null counts as missing)."""

    shape: Shape


# A Kind for a leaf, [item shape] for a list, {key: shape} for an object ("*": any other key).
Shape = Kind | Required | list["Shape"] | dict[str, "Shape"]
Path = tuple[str | int, ...]


def _matching(says: str, pattern: str) -> Kind:
    """Text that matches `pattern` whole. msgspec searches, hence the anchors (\\Z, not $,
    which would let a final newline through)."""
    compiled = re.compile(pattern)
    return Kind(says, lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None,
                Annotated[str, msgspec.Meta(pattern=rf"^(?:{pattern})\Z")])


TEXT = Kind("text", lambda v: isinstance(v, str), str)
NUMBER = Kind("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool),
              int | float)
COUNT = Kind("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool), int)
FLAG = Kind("true or false", lambda v: isinstance(v, bool), bool)
OBJECT = Kind("an object", lambda v: isinstance(v, dict), dict)
NCT_NUMBER = _matching("an NCT number such as NCT01234567", r"NCT[0-9]{8}")
# The schema's formats, checked where a reader parses the text (dates are spoken, ages counted).
DATE = _matching("a date such as 2026, 2026-11 or 2026-11-05",
                 r"[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")
AGE = _matching('an age such as "18 Years"', r"[0-9]+ (Year|Month|Week|Day|Hour|Minute)s?")

TEXTS: Shape = [TEXT]
DATE_STRUCT: Shape = {"date": DATE, "type": TEXT}
SPONSOR: Shape = {"name": TEXT, "class": TEXT}
CONTACT: Shape = {"name": TEXT, "role": TEXT, "phone": TEXT, "phoneExt": TEXT, "email": TEXT}
OUTCOMES: Shape = [{"measure": TEXT, "description": TEXT, "timeFrame": TEXT}]
MESHES: Shape = [{"id": TEXT, "term": TEXT}]
BROWSE: Shape = {"meshes": MESHES, "ancestors": MESHES}
DATE_STRUCTS = ("startDateStruct", "primaryCompletionDateStruct", "completionDateStruct",
                "studyFirstPostDateStruct", "resultsFirstPostDateStruct",
                "lastUpdatePostDateStruct")

# Every field a reader touches, with its type from openapi-v2.yaml. Fields not listed are
# never read one by one, so any value will do (diff and content_hash only compare them).
SHAPE: Shape = {
    "protocolSection": Required({
        "*": OBJECT,  # diff compares every module, known or not, key by key
        "identificationModule": Required({"nctId": Required(NCT_NUMBER), "briefTitle": TEXT,
                                          "officialTitle": TEXT, "acronym": TEXT}),
        "statusModule": {"overallStatus": TEXT, "lastKnownStatus": TEXT, "whyStopped": TEXT,
                         "statusVerifiedDate": DATE, "studyFirstSubmitDate": DATE,
                         **dict.fromkeys(DATE_STRUCTS, DATE_STRUCT)},
        "sponsorCollaboratorsModule": {"leadSponsor": SPONSOR, "collaborators": [SPONSOR],
                                       "responsibleParty": OBJECT},
        "descriptionModule": {"briefSummary": TEXT},
        "conditionsModule": {"conditions": TEXTS, "keywords": TEXTS},
        "designModule": {"studyType": TEXT, "phases": TEXTS,
                         "enrollmentInfo": {"count": COUNT, "type": TEXT}},
        "armsInterventionsModule": {
            "armGroups": [{"label": TEXT, "type": TEXT, "description": TEXT,
                           "interventionNames": TEXTS}],
            "interventions": [{"type": TEXT, "name": TEXT, "description": TEXT,
                               "armGroupLabels": TEXTS, "otherNames": TEXTS}],
        },
        "outcomesModule": {"primaryOutcomes": OUTCOMES, "secondaryOutcomes": OUTCOMES,
                           "otherOutcomes": OUTCOMES},
        "eligibilityModule": {"eligibilityCriteria": TEXT, "healthyVolunteers": FLAG,
                              "sex": TEXT, "minimumAge": AGE, "maximumAge": AGE,
                              "stdAges": TEXTS},
        "contactsLocationsModule": {
            "centralContacts": [CONTACT],
            "overallOfficials": [{"name": TEXT, "affiliation": TEXT, "role": TEXT}],
            "locations": [{
                "facility": TEXT, "status": TEXT, "city": TEXT, "state": TEXT, "zip": TEXT,
                "country": TEXT, "contacts": [CONTACT],
                "geoPoint": {"lat": Required(NUMBER), "lon": Required(NUMBER)},
            }],
        },
    }),
    "resultsSection": OBJECT,
    "annotationSection": OBJECT,
    "documentSection": OBJECT,
    "derivedSection": {"miscInfoModule": {"versionHolder": TEXT},
                       "conditionBrowseModule": BROWSE, "interventionBrowseModule": BROWSE},
    "hasResults": FLAG,
}


def problems(record: object) -> list[str]:
    """What is wrong with the record's shape, one short phrase per field, such as
    "locations[2].geoPoint.lat is not a number"; [] when every reader can take it.

    A field that is absent or null is fine (the readers take both as "not given"), except the
    NCT ID and the sections holding it, without which the record cannot be filed, and the
    latitude and longitude of a site's geoPoint. A list item may not be null. Never raises,
    whatever `record` is: it looks only as deep as SHAPE goes, and only tests types and
    patterns."""
    if isinstance(record, dict) and has_shape(record):
        return []
    return every_problem(record)


def every_problem(record: object) -> list[str]:
    """`problems`, found by a walk in Python over every field SHAPE names: slower than
    `has_shape`, but it names each problem."""
    if not isinstance(record, dict):
        return ["the record is not an object"]
    found: list[str] = []
    _walk(record, SHAPE, (), found)
    return found


def has_shape(record: Record) -> bool:
    """Whether `every_problem(record)` is [], checked by msgspec (in C) and, for the "*" keys
    msgspec cannot express, by a loop over those objects' values. Never raises."""
    try:
        msgspec.convert(record, _FAST)
    except (msgspec.ValidationError, TypeError, ValueError, OverflowError):
        return False
    for path, other in _STARS:
        node: Any = record
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and not all(
                value is None or other.test(value) for key, value in node.items()
                if key not in _NAMED[path]):
            return False
    return True


def _fast_type(shape: Shape, path: Path = ()) -> Any:
    """SHAPE as msgspec types: an object as a Struct of its named keys (others ignored),
    a list as a list of non-null items, a leaf as its Kind's type; optional fields nullable."""
    if isinstance(shape, Required):
        return _fast_type(shape.shape, path)
    if isinstance(shape, Kind):
        return shape.type
    if isinstance(shape, list):
        return list[_fast_type(shape[0], path)]  # type: ignore[misc]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for number, (key, inner) in enumerate((k, v) for k, v in shape.items() if k != "*"):
        kind = _fast_type(inner, (*path, key))
        fields.append((f"f{number}", kind) if isinstance(inner, Required)
                      else (f"f{number}", kind | None, None))
    if "*" in shape:
        star = shape["*"]
        if not isinstance(star, Kind):
            raise TypeError("a '*' key may only take a Kind")
        _STARS.append((path, star))
        _NAMED[path] = frozenset(shape)
    names = [key for key in shape if key != "*"]
    # Instances are thrown away at once and hold no cycles: the garbage collector need not
    # track (or count) them.
    return msgspec.defstruct("Shape_" + "_".join(map(str, path)), fields, gc=False,
                             rename={f"f{n}": key for n, key in enumerate(names)})


_STARS: list[tuple[Path, Kind]] = []  # where "*" stands in SHAPE, and what it takes
_NAMED: dict[Path, frozenset[str]] = {}  # the keys named beside it
_FAST = _fast_type(SHAPE)


def _walk(value: object, shape: Shape, path: Path, found: list[str]) -> None:
    if isinstance(shape, Required):
        if value is None:
            found.append(f"{_name(path)} is missing")
        else:
            _walk(value, shape.shape, path, found)
    elif value is None:
        return
    elif isinstance(shape, Kind):
        if not shape.test(value):
            found.append(f"{_name(path)} is not {shape.says}")
    elif isinstance(shape, list):
        if not isinstance(value, list):
            found.append(f"{_name(path)} is not a list")
            return
        for index, item in enumerate(value):
            if item is None:
                found.append(f"{_name((*path, index))} is not {_says(shape[0])}")
            else:
                _walk(item, shape[0], (*path, index), found)
    elif not isinstance(value, dict):
        found.append(f"{_name(path)} is not an object")
    else:
        for key, inner in shape.items():
            if key != "*":
                _walk(value.get(key), inner, (*path, key), found)
        if "*" in shape:
            for key, item in value.items():
                if key not in shape:
                    _walk(item, shape["*"], (*path, key), found)


def _says(shape: Shape) -> str:
    if isinstance(shape, Required):
        return _says(shape.shape)
    if isinstance(shape, Kind):
        return shape.says
    return "a list" if isinstance(shape, list) else "an object"


def _name(path: Path) -> str:
    """A field as an operator knows it: "locations[2].geoPoint.lat", without the section and
    the protocol module it sits in (derived modules keep theirs: condition or intervention)."""
    parts = list(path)
    if len(parts) > 1 and str(parts[0]).endswith("Section"):
        parts = parts[2:] if parts[0] == "protocolSection" and len(parts) > 2 else parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


# C0 controls but tab, newline and carriage return (PostgreSQL text refuses NUL), and lone
# surrogates (UTF-8 cannot encode them).
UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def clean(record: Record) -> Record:
    """The record with every string, keys included, rid of UNSAFE characters; everything else,
    and the structure, as it was. A record that needs no cleaning comes back itself, uncopied;
    a changed one shares every part that did not change. Of two keys that clean to the same
    text, the later one's value is kept."""
    cleaned: Record = _clean(record)
    return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return UNSAFE.sub("", value) if UNSAFE.search(value) else value
    if isinstance(value, list):
        items = [_clean(item) for item in value]
        return value if all(map(_same, items, value)) else items
    if isinstance(value, dict):
        keys, items = [_clean(k) for k in value], [_clean(v) for v in value.values()]
        unchanged = all(map(_same, keys, value)) and all(map(_same, items, value.values()))
        return value if unchanged else dict(zip(keys, items, strict=True))
    return value


def _same(a: object, b: object) -> bool:
    return a is b
