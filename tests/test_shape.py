"""Specification of `tracker.shape`: which record shapes the readers can take, what an operator
is told about the others, and registry text made safe to store.

Records are the real ones in tests/data, or deep copies of them with one field replaced. The
property tests hold the contract between `problems` and the readers: whatever record `problems`
accepts, once `clean`ed, goes through every reader without an exception.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tests.conftest import all_studies, load_study, updated
from tracker.diff import diff, new_study
from tracker.plain import explain
from tracker.record import content_hash, summarise
from tracker.shape import clean, every_problem, has_shape, problems
from tracker.tags import Tagger, columns, results_overdue
from tracker.vocabulary import load_vocabulary

Study = dict[str, Any]

DATA = Path(__file__).parent / "data"
# Hypothesis keeps a cache in ./.hypothesis, filled by its pytest plugin while collecting, so
# it is sent to the temporary folder here, on import: the checkout stays as it was.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tracker-hypothesis")
BASE = "NCT00874328"  # 3 interventions, 2 conditions, 1 site with a geoPoint, MeSH terms
DELETED = object()
TAGGER = Tagger(load_vocabulary())


def real_records() -> Iterator[tuple[str, Any]]:
    """Every real record in tests/data: studies/, real/, and the studies inside responses/
    (some of those carry only the fields a request asked for)."""
    for path in sorted([*(DATA / "studies").glob("*.json"), *(DATA / "real").glob("*.json")]):
        yield f"{path.parent.name}/{path.stem}", json.loads(path.read_text())
    for path in sorted((DATA / "responses").glob("*.json")):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and "studies" in body:
            for number, study in enumerate(body["studies"]):
                yield f"responses/{path.stem}[{number}]", study


def edited(study: Study, path: str, value: Any) -> Study:
    """A copy of `study` with the value at dotted `path` (digits index lists) set to `value`,
    or removed if `value` is DELETED."""
    copied = copy.deepcopy(study)
    *steps, last = [int(step) if step.isdigit() else step for step in path.split(".")]
    node: Any = copied
    for step in steps:
        node = node[step]
    if value is DELETED:
        del node[last]
    else:
        node[last] = value
    return copied


# --- problems ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "record"), list(real_records()),
                         ids=[name for name, _ in real_records()])
def test_every_real_record_has_no_problems(name: str, record: Any) -> None:
    assert problems(record) == []
    assert has_shape(record)  # cleared in C, without the walk


SITE = "protocolSection.contactsLocationsModule.locations"
INTERVENTIONS = "protocolSection.armsInterventionsModule.interventions"
STATUS = "protocolSection.statusModule"


@pytest.mark.parametrize(("path", "value", "phrase"), [
    (SITE, {"facility": "Asan Medical Center"}, "locations is not a list"),
    (SITE + ".0", None, "locations[0] is not an object"),
    (SITE + ".0.geoPoint.lat", "37.566", "locations[0].geoPoint.lat is not a number"),
    (SITE + ".0.geoPoint.lat", True, "locations[0].geoPoint.lat is not a number"),
    (SITE + ".0.geoPoint.lon", DELETED, "locations[0].geoPoint.lon is missing"),
    (SITE + ".0.geoPoint", [37.566, 126.9784], "locations[0].geoPoint is not an object"),
    (SITE + ".0.country", ["South Korea"], "locations[0].country is not text"),
    (SITE + ".0.contacts.0.name", 7, "locations[0].contacts[0].name is not text"),
    (INTERVENTIONS, "Fluorouracil", "interventions is not a list"),
    (INTERVENTIONS + ".2.name", 5, "interventions[2].name is not text"),
    (INTERVENTIONS + ".0.otherNames", "5-FU", "interventions[0].otherNames is not a list"),
    (STATUS + ".overallStatus", 1, "overallStatus is not text"),
    (STATUS + ".lastKnownStatus", {"status": "RECRUITING"}, "lastKnownStatus is not text"),
    (STATUS + ".whyStopped", False, "whyStopped is not text"),
    (STATUS + ".startDateStruct", "2009-04", "startDateStruct is not an object"),
    (STATUS + ".startDateStruct.date", 2009, "startDateStruct.date is not a date such as "
                                             "2026, 2026-11 or 2026-11-05"),
    (STATUS + ".startDateStruct.date", "April 2009", "startDateStruct.date is not a date "
                                                     "such as 2026, 2026-11 or 2026-11-05"),
    (STATUS + ".startDateStruct.date", "2009-13", "startDateStruct.date is not a date such "
                                                  "as 2026, 2026-11 or 2026-11-05"),
    (STATUS + ".startDateStruct.date", "2009-04\n", "startDateStruct.date is not a date "
                                                    "such as 2026, 2026-11 or 2026-11-05"),
    (STATUS + ".completionDateStruct.type", ["ACTUAL"], "completionDateStruct.type is not "
                                                        "text"),
    (STATUS + ".startDateStruct.type", 1, "startDateStruct.type is not text"),
    (STATUS + ".statusVerifiedDate", 201007, "statusVerifiedDate is not a date such as 2026, "
                                             "2026-11 or 2026-11-05"),
    (STATUS + ".studyFirstSubmitDate", "December 24, 2008", "studyFirstSubmitDate is not a "
                                                            "date such as 2026, 2026-11 or "
                                                            "2026-11-05"),
    ("protocolSection.sponsorCollaboratorsModule.leadSponsor.class", ["OTHER_GOV"],
     "leadSponsor.class is not text"),
    ("protocolSection.identificationModule.nctId", DELETED, "nctId is missing"),
    ("protocolSection.identificationModule.nctId", "NCT0087432",
     "nctId is not an NCT number such as NCT01234567"),
    ("protocolSection.identificationModule", None, "identificationModule is missing"),
    ("protocolSection", DELETED, "protocolSection is missing"),
    ("protocolSection.identificationModule.briefTitle", ["A", "B"], "briefTitle is not text"),
    ("protocolSection.conditionsModule.conditions.1", 42, "conditions[1] is not text"),
    ("protocolSection.conditionsModule.keywords", "myositis", "keywords is not a list"),
    ("protocolSection.designModule.phases", "PHASE2", "phases is not a list"),
    ("protocolSection.designModule.enrollmentInfo.count", "74",
     "enrollmentInfo.count is not a whole number"),
    ("protocolSection.designModule.enrollmentInfo.count", True,
     "enrollmentInfo.count is not a whole number"),
    ("protocolSection.designModule.enrollmentInfo.count", 74.0,
     "enrollmentInfo.count is not a whole number"),
    ("protocolSection.designModule.enrollmentInfo", 74, "enrollmentInfo is not an object"),
    ("protocolSection.eligibilityModule.minimumAge", "18", 'minimumAge is not an age such as '
                                                           '"18 Years"'),
    # Regular expressions ignoring case take the Turkish capital İ for an i: the age reader
    # would then look up the unit "mi̇nute" and fail.
    ("protocolSection.eligibilityModule.maximumAge", "1 M\u0130NUTE",
     'maximumAge is not an age such as "18 Years"'),
    ("protocolSection.eligibilityModule.stdAges", "ADULT", "stdAges is not a list"),
    ("protocolSection.eligibilityModule.healthyVolunteers", "No",
     "healthyVolunteers is not true or false"),
    ("protocolSection.sponsorCollaboratorsModule.leadSponsor.name", None, None),
    ("protocolSection.sponsorCollaboratorsModule.collaborators.0", "Jeil", "collaborators[0] "
                                                                           "is not an object"),
    ("protocolSection.contactsLocationsModule.centralContacts", {}, "centralContacts is not a "
                                                                    "list"),
    ("protocolSection.outcomesModule.primaryOutcomes.0.measure", 3, "primaryOutcomes[0]."
                                                                    "measure is not text"),
    ("protocolSection.descriptionModule.briefSummary", 0, "briefSummary is not text"),
    ("protocolSection.oversightModule", "none", "oversightModule is not an object"),
    ("protocolSection.newModule", ["a"], "newModule is not an object"),
    ("protocolSection.descriptionModule", "A summary", "descriptionModule is not an object"),
    ("derivedSection.conditionBrowseModule.meshes.0.id", 9220,
     "conditionBrowseModule.meshes[0].id is not text"),
    ("derivedSection.conditionBrowseModule.ancestors", "D009220",
     "conditionBrowseModule.ancestors is not a list"),
    ("derivedSection.interventionBrowseModule.meshes.0", "Fluorouracil",
     "interventionBrowseModule.meshes[0] is not an object"),
    ("derivedSection.miscInfoModule.versionHolder", 20260807,
     "miscInfoModule.versionHolder is not text"),
    ("hasResults", "false", "hasResults is not true or false"),
    ("resultsSection", ["results"], "resultsSection is not an object"),
])
def test_each_malformed_field_is_named_in_one_phrase(path: str, value: Any,
                                                     phrase: str | None) -> None:
    study = edited(load_study(BASE), path, value)

    assert problems(study) == ([phrase] if phrase else [])
    assert has_shape(study) is (phrase is None)


@pytest.mark.parametrize("path", [
    STATUS + ".overallStatus", STATUS + ".startDateStruct", SITE + ".0.geoPoint", SITE,
    "protocolSection.conditionsModule", "protocolSection.eligibilityModule.minimumAge",
    "derivedSection", "hasResults",
])
def test_a_missing_or_null_field_is_no_problem(path: str) -> None:
    assert problems(edited(load_study(BASE), path, DELETED)) == []
    assert problems(edited(load_study(BASE), path, None)) == []


def test_every_malformed_field_is_reported() -> None:
    study = edited(load_study(BASE), INTERVENTIONS + ".0.name", 1)
    study = edited(study, INTERVENTIONS + ".1.name", 2)
    study = edited(study, STATUS + ".overallStatus", 3)

    assert problems(study) == ["overallStatus is not text", "interventions[0].name is not text",
                               "interventions[1].name is not text"]


@pytest.mark.parametrize("value", [None, [], "NCT00874328", 3, 2.5, True, {}, {"hasResults": 1},
                                   {"protocolSection": []}, {1: 2}, [{"protocolSection": {}}]])
def test_problems_never_raises_whatever_it_is_given(value: Any) -> None:
    found = problems(value)

    assert found and all(isinstance(phrase, str) for phrase in found)


def test_a_record_that_is_not_an_object_is_one_problem() -> None:
    assert problems([load_study(BASE)]) == ["the record is not an object"]


# --- clean ---------------------------------------------------------------------------------

def test_clean_removes_nul_and_control_characters_from_nested_strings_and_keys() -> None:
    study = edited(load_study(BASE), "protocolSection.identificationModule.briefTitle",
                   "Tofa\x00citinib\x1b[31m in\x07 dermatomyositis")
    study = edited(study, SITE + ".0.city", "Se\x0boul\x0c")
    study["protocolSection"]["descriptionModule"]["key\x00with\x7fDEL"] = ["a\x01b", 5, None]

    cleaned = clean(study)

    protocol = cleaned["protocolSection"]
    assert protocol["identificationModule"]["briefTitle"] == "Tofacitinib[31m in dermatomyositis"
    assert protocol["contactsLocationsModule"]["locations"][0]["city"] == "Seoul"
    assert protocol["descriptionModule"]["keywith\x7fDEL"] == ["ab", 5, None]
    assert "key\x00with\x7fDEL" not in protocol["descriptionModule"]


def test_clean_keeps_tabs_newlines_and_carriage_returns() -> None:
    text = "Inclusion Criteria:\r\n\n* Age \t>= 18"
    study = edited(load_study(BASE), "protocolSection.eligibilityModule.eligibilityCriteria",
                   text)

    assert clean(study)["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] == text


def test_clean_removes_lone_surrogates_so_the_record_can_be_written_as_utf8() -> None:
    study = edited(load_study(BASE), "protocolSection.conditionsModule.conditions.0",
                   "Myositis \ud83d and \udc00 \U0001f600")

    cleaned = clean(study)

    assert cleaned["protocolSection"]["conditionsModule"]["conditions"][0] == \
        "Myositis  and  \U0001f600"
    content_hash(cleaned)  # encodes as UTF-8


def test_clean_leaves_everything_else_as_it_was() -> None:
    study = edited(load_study(BASE), "protocolSection.statusModule.whyStopped", "Stopped\x00")
    original = copy.deepcopy(study)

    cleaned = clean(study)

    assert study == original  # the input is not changed
    assert cleaned == edited(original, "protocolSection.statusModule.whyStopped", "Stopped")
    assert cleaned["derivedSection"] is study["derivedSection"]  # untouched parts are shared


@pytest.mark.parametrize(("name", "record"), list(real_records()),
                         ids=[name for name, _ in real_records()])
def test_a_clean_record_comes_back_itself(name: str, record: Any) -> None:
    assert clean(record) is record


# --- the readers take whatever problems() accepts -------------------------------------------


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


STUDIES = all_studies()
KEYS = sorted({key for study in STUDIES.values() for key in _keys(study)})
# Values the readers look for, so that a replaced value often reaches their deeper branches.
PLAUSIBLE = ["RECRUITING", "COMPLETED", "TERMINATED", "UNKNOWN", "ACTUAL", "ESTIMATED", "NA",
             "PHASE2", "CHILD", "FEMALE", "2026", "2026-11", "2026-11-05", "18 Years",
             "6 Months", "NCT01234567", "D003882", "D009220", "Dermatomyositis", "tofacitinib",
             "IVIG", "Placebo", "France", "", " "]
TEXT = st.text(st.characters() | st.sampled_from("\x00\x01\x0b\x1b\t\n\r\ud800\udfff"),
               max_size=12) | st.sampled_from(PLAUSIBLE)
SCALARS = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | TEXT)  # what JSON can hold
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=3),
                    max_leaves=8)


@st.composite
def changed_records(draw: st.DrawFn) -> tuple[Study, Study]:
    """(a real record, its next version with one value anywhere replaced by any JSON value, or
    a plausible key added to one of its objects)."""
    original = STUDIES[draw(st.sampled_from(sorted(STUDIES)))]
    changed = updated(original)  # a new lastUpdatePostDate, so that diff reads every field
    node: Any = changed
    while True:
        if isinstance(node, dict):
            key: Any = draw(st.sampled_from(sorted(node)) | st.sampled_from(KEYS))
            child = node.get(key)
        else:
            key = draw(st.integers(0, len(node) - 1))
            child = node[key]
        if isinstance(child, dict | list) and child and draw(st.integers(0, 4)):
            node = child  # go deeper four times in five
            continue
        node[key] = draw(JSON)
        return original, changed


@settings(max_examples=300, deadline=None, database=None)
@given(changed_records())
def test_the_readers_take_every_record_problems_accepts(pair: tuple[Study, Study]) -> None:
    original, changed = pair
    if problems(changed):
        return
    changed = clean(changed)

    summarise(changed)
    content_hash(changed)
    columns(TAGGER.tag(changed), changed)
    new_study(changed)
    for old, new in ((original, changed), (changed, original)):
        for change in diff(old, new):
            explain(change, old, new)


@settings(max_examples=500, deadline=None, database=None)
@given(changed_records())
def test_the_check_in_c_and_the_walk_give_the_same_verdict(pair: tuple[Study, Study]) -> None:
    """has_shape (msgspec) is how problems() clears a sound record without walking it: it may
    never accept a record the walk would fault, nor fault one the walk accepts."""
    _, changed = pair

    assert has_shape(changed) is (every_problem(changed) == [])
    assert problems(changed) == every_problem(changed)


@settings(max_examples=300, deadline=None, database=None)
@given(JSON)
def test_problems_never_raises_on_any_json(value: Any) -> None:
    assert all(isinstance(phrase, str) for phrase in problems(value))


# Shapes the schema allows, so `problems` accepts them: the readers must take them too.

def test_a_condition_mesh_without_its_term_is_tagged() -> None:
    study = edited(load_study("NCT04078230"),  # conditions and MeSH say dermatomyositis
                   "derivedSection.conditionBrowseModule.meshes.0.term", DELETED)
    assert problems(study) == []  # openapi-v2.yaml: a Mesh requires neither id nor term

    assert "dermatomyositis" in TAGGER.tag(study).subtypes


@pytest.mark.parametrize("condition", ["Dermatomyos\u0131t\u0131s", "Dermatomyo\u017fitis"])
def test_a_condition_with_a_dotless_i_or_a_long_s_is_tagged(condition: str) -> None:
    study = edited(load_study(BASE), "protocolSection.conditionsModule.conditions",
                   [condition])
    assert problems(study) == []

    TAGGER.tag(study)


def test_results_are_not_overdue_for_a_completion_in_the_year_9999() -> None:
    study = edited(load_study(BASE), STATUS + ".primaryCompletionDateStruct.date", "9999-12-31")
    assert problems(study) == []

    assert not results_overdue("COMPLETED", False, "9999-12-31", None, date(2026, 12, 1))
