"""Specification of `tracker.tags`: which myositis subtypes and treatment classes a study gets,
why (the evidence), how the vocabulary is extended, and the patient facts beside the tags.
The subtype rules themselves are specified in test_subtypes.py.

Every study here is a real (myositis-edited) record from tests/data/studies/, or a deep copy of
one with only the fields a sponsor writes (conditions, keywords, titles, summary, criteria,
interventions, ages, sites, status) or the registry derives (MeSH terms) replaced. Field names
and shapes are the API's own, copied from those records.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_study
from tests.records import about
from tracker.errors import ConfigError
from tracker.tags import Tagger, age_in_years, columns, recruiting_sites, results_overdue
from tracker.vocabulary import OTHER_THERAPY, Evidence, Vocabulary, load_vocabulary, normalise

Study = dict[str, Any]

TOFACITINIB_DM = "NCT04078230"  # recruiting, 13 sites in China and the US, 2 without geoPoint
EFGARTIGIMOD_IMNM = "NCT07725679"
ARIMOCLOMOL_IBM = "NCT02803307"  # results posted
PLASMA_EXCHANGE_PM = "NCT00987428"  # terminated, one site without a status
JDM_REGISTRY = "NCT02248896"  # observational, MeSH says Dermatomyositis, no sites
RITUXIMAB_ASS_ILD = "NCT00874328"  # UNKNOWN status
IVIG_DM_PM = "NCT02210780"  # results posted, 42 sites without a status

VOCABULARY = load_vocabulary()
TAGGER = Tagger(VOCABULARY)



# --- helpers for editing copies of real records -----------------------------------------------

def study(nct_id: str) -> Study:
    return copy.deepcopy(load_study(nct_id))


def trial_of(*interventions: dict[str, Any]) -> Study:
    """A copy of the tofacitinib trial testing `interventions` instead (no intervention MeSH)."""
    s = study(TOFACITINIB_DM)
    s["protocolSection"]["armsInterventionsModule"]["interventions"] = list(interventions)
    s["derivedSection"].pop("interventionBrowseModule", None)
    return s


def drug(name: str, *other_names: str, kind: str = "DRUG") -> dict[str, Any]:
    intervention: dict[str, Any] = {"type": kind, "name": name, "armGroupLabels": ["Arm A"]}
    if other_names:
        intervention["otherNames"] = list(other_names)
    return intervention


def subtypes(s: Study, tagger: Tagger = TAGGER) -> list[str]:
    return list(tagger.tag(s).subtypes)


def therapies(s: Study, tagger: Tagger = TAGGER) -> list[str]:
    return list(tagger.tag(s).therapies)


def evidence(s: Study, tag: str) -> list[tuple[str, str]]:
    tags = TAGGER.tag(s)
    found = tags.subtypes.get(tag) or tags.therapies.get(tag) or []
    return [(e.source, e.text) for e in found]


# --- every real record ------------------------------------------------------------------------

@pytest.mark.parametrize(("nct_id", "expected_subtypes", "expected_therapies"), [
    (TOFACITINIB_DM, ["dermatomyositis"], ["jak"]),
    (EFGARTIGIMOD_IMNM, ["imnm"], ["fcrn"]),
    (ARIMOCLOMOL_IBM, ["ibm"], ["muscle"]),
    (PLASMA_EXCHANGE_PM, ["polymyositis"], ["plasma-exchange"]),
    (JDM_REGISTRY, ["jdm"], ["glucocorticoids", "immunosuppressants", "ivig", "b-cell"]),
    (RITUXIMAB_ASS_ILD, ["ass", "ild"], ["glucocorticoids", "immunosuppressants", "b-cell"]),
    (IVIG_DM_PM, ["dermatomyositis", "polymyositis"], ["ivig"]),
])
def test_each_real_record_gets_its_subtypes_and_therapy_classes_in_vocabulary_order(
        nct_id: str, expected_subtypes: list[str], expected_therapies: list[str]) -> None:
    s = load_study(nct_id)
    assert subtypes(s) == expected_subtypes
    assert therapies(s) == expected_therapies


def test_a_tagger_prepared_in_the_background_tags_as_one_built_at_first_use() -> None:
    prepared = Tagger(VOCABULARY)
    prepared.prepare()  # compiles in another thread; tagging now waits for it
    records = [load_study(nct_id) for nct_id in (TOFACITINIB_DM, JDM_REGISTRY, IVIG_DM_PM)]

    assert [prepared.tag(s) for s in records] == [Tagger(VOCABULARY).tag(s) for s in records]
    prepared.prepare()  # once built, nothing more to do


def test_a_tagger_that_has_read_many_studies_tags_each_as_a_new_one_would() -> None:
    """Short texts (conditions, MeSH terms, intervention names) are read once per tagger and
    their mentions kept; what was kept from one study must not change another's tags."""
    records = [load_study(nct_id) for nct_id in (
        TOFACITINIB_DM, EFGARTIGIMOD_IMNM, ARIMOCLOMOL_IBM, PLASMA_EXCHANGE_PM, JDM_REGISTRY,
        RITUXIMAB_ASS_ILD, IVIG_DM_PM)]
    negated = study(TOFACITINIB_DM)  # the same short texts, one of them now ruled out
    negated["protocolSection"]["conditionsModule"]["conditions"] = ["Not dermatomyositis"]
    records += [negated, trial_of(drug("Placebo"), drug("Tofacitinib"))]
    shared = Tagger(VOCABULARY)

    for order in (records, records[::-1]):
        assert [shared.tag(s) for s in order] == [Tagger(VOCABULARY).tag(s) for s in order]


def test_a_short_text_is_read_once_per_tagger() -> None:
    tagger = Tagger(VOCABULARY)
    matcher = tagger.subtypes.subtypes
    first = matcher.hits("Juvenile Dermatomyositis")

    assert [h.tag for h in first] == ["jdm"]
    assert matcher.hits("Juvenile Dermatomyositis") is first
    long_text = "Juvenile dermatomyositis in children, " * 3
    assert matcher.hits(long_text) == matcher.hits(long_text)
    assert matcher.hits(long_text) is not matcher.hits(long_text)  # long texts: read each time


def intervention_names(s: Study) -> list[str]:
    return [i["name"] for i in s["protocolSection"]["armsInterventionsModule"]["interventions"]]


def test_placebo_and_standard_care_arms_of_real_records_are_not_treatments() -> None:
    ivig = load_study(IVIG_DM_PM)
    assert "Placebo" in intervention_names(ivig)
    assert OTHER_THERAPY not in therapies(ivig)
    plasma = load_study(PLASMA_EXCHANGE_PM)
    assert "Standard care" in intervention_names(plasma)
    assert therapies(plasma) == ["plasma-exchange"]


# --- therapies --------------------------------------------------------------------------------

@pytest.mark.parametrize(("intervention", "tag"), [
    (drug("Tofacitinib"), "jak"),
    (drug("Xeljanz"), "jak"),
    (drug("CP-690550"), "jak"),
    (drug("CP690550"), "jak"),
    (drug("Brepocitinib", "PF-06700841"), "jak"),
    (drug("Efgartigimod PH20 SC", kind="BIOLOGICAL"), "fcrn"),
    (drug("Vyvgart", kind="BIOLOGICAL"), "fcrn"),
    (drug("ARGX-113", kind="BIOLOGICAL"), "fcrn"),
    (drug("IVIG", kind="BIOLOGICAL"), "ivig"),
    (drug("Octagam", kind="BIOLOGICAL"), "ivig"),
    (drug("Rituximab", kind="BIOLOGICAL"), "b-cell"),
    (drug("Rituxan", kind="BIOLOGICAL"), "b-cell"),
    (drug("Anifrolumab", kind="BIOLOGICAL"), "interferon"),
    (drug("KYV-101", kind="BIOLOGICAL"), "cell-therapy"),
    (drug("CD19 CAR-T cells", kind="GENETIC"), "cell-therapy"),
    (drug("Abatacept", kind="BIOLOGICAL"), "biologics"),
    (drug("Plasmapheresis", kind="PROCEDURE"), "plasma-exchange"),
    (drug("Resistance exercise", kind="BEHAVIORAL"), "exercise"),
    (drug("Prednisone"), "glucocorticoids"),
    (drug("Mycophenolate Mofetil"), "immunosuppressants"),
])
def test_generic_brand_and_code_names_give_the_therapy_class(
        intervention: dict[str, Any], tag: str) -> None:
    assert therapies(trial_of(intervention)) == [tag]


@pytest.mark.parametrize("name", ["Tofacitinib 5 mg", "Tofacitinib 5mg twice daily",
                                  "PF 06700841 30 mg"])
def test_a_dose_or_spaced_code_in_the_name_does_not_hide_the_drug(name: str) -> None:
    assert therapies(trial_of(drug(name))) == ["jak"]


def test_a_dose_after_a_brand_name_does_not_hide_it() -> None:
    assert therapies(trial_of(drug("Octagam 10%", kind="BIOLOGICAL"))) == ["ivig"]


def test_other_names_are_read() -> None:
    s = trial_of(drug("Study drug", "Xeljanz"))
    assert therapies(s) == ["jak"]
    assert evidence(s, "jak") == [("intervention other name", "xeljanz")]


@pytest.mark.parametrize("name", ["Placebo", "Matching placebo", "Placebo Oral Tablet",
                                  "Standard of care", "Sham procedure"])
def test_placebo_and_its_kin_are_ignored_not_other(name: str) -> None:
    assert therapies(trial_of(drug("Tofacitinib"), drug(name))) == ["jak"]
    assert therapies(trial_of(drug(name))) == []


def test_an_unknown_drug_is_other() -> None:
    s = trial_of(drug("Creatine monohydrate", kind="DIETARY_SUPPLEMENT"))
    assert therapies(s) == [OTHER_THERAPY]
    assert evidence(s, OTHER_THERAPY) == [("intervention name", "Creatine monohydrate")]
    assert VOCABULARY.label(OTHER_THERAPY) == "Other treatments"


def test_other_comes_after_every_named_class() -> None:
    s = trial_of(drug("Creatine"), drug("Prednisone"), drug("Tofacitinib"))
    assert therapies(s) == ["glucocorticoids", "jak", OTHER_THERAPY]
    assert VOCABULARY.therapy_names[-1] == OTHER_THERAPY


def test_one_intervention_can_name_two_classes_and_is_then_not_other() -> None:
    s = trial_of(drug("Rituximab plus methotrexate"))
    assert therapies(s) == ["immunosuppressants", "b-cell"]


def test_intervention_mesh_terms_are_read() -> None:
    s = trial_of(drug("Study infusion", kind="BIOLOGICAL"))
    s["derivedSection"]["interventionBrowseModule"] = {
        "meshes": [{"id": "D016756", "term": "Immunoglobulins, Intravenous"}]}
    assert evidence(s, "ivig") == [("MeSH", "Immunoglobulins, Intravenous")]


# --- evidence ---------------------------------------------------------------------------------

def test_each_therapy_records_the_intervention_and_the_words() -> None:
    assert evidence(load_study(IVIG_DM_PM), "ivig") == [
        ("intervention name", "immune globulin"),
        ("intervention name", "IVIG"),
    ]


def test_columns_carry_the_tags_and_their_evidence() -> None:
    s = load_study(RITUXIMAB_ASS_ILD)
    tags = TAGGER.tag(s)
    cols = columns(tags, s)
    assert cols["subtypes"] == "ass|ild"
    assert cols["therapies"] == "glucocorticoids|immunosuppressants|b-cell"
    recorded = json.loads(cols["tag_evidence"])
    assert recorded["subtypes"]["ild"][0] == ["conditions", "interstitial lung disease"]
    assert ["keywords", "ILD"] in recorded["subtypes"]["ild"]
    assert recorded["therapies"]["b-cell"] == [["intervention name", "rituximab"]]
    assert tags.subtypes["ass"][0] == Evidence("conditions", "antisynthetase syndrome")


def test_a_study_without_tags_has_empty_tag_columns() -> None:
    s = about(["Healthy Volunteers"])
    s["protocolSection"]["armsInterventionsModule"]["interventions"] = [drug("Placebo")]
    cols = columns(TAGGER.tag(s), s)
    assert cols["subtypes"] is None
    assert cols["therapies"] is None
    assert json.loads(cols["tag_evidence"]) == {
        "subtypes": {}, "therapies": {},
        "not_tested": [["named as a control", "Placebo"]]}  # why it is not a treatment


# --- extending the vocabulary -----------------------------------------------------------------

EXTRA = """
[therapies.jak]
terms = ["jaktinib"]

[subtypes.focal]
label = "Focal myositis"
terms = ["focal myositis"]

[ignore]
terms = ["health education"]
"""


@pytest.fixture
def extended(tmp_path: Path) -> Vocabulary:
    path = tmp_path / "vocabulary.toml"
    path.write_text(EXTRA)
    return load_vocabulary(path)


def test_extra_file_adds_a_term_to_an_existing_therapy_class(extended: Vocabulary) -> None:
    assert therapies(trial_of(drug("Jaktinib"))) == [OTHER_THERAPY]
    tagger = Tagger(extended)
    assert therapies(trial_of(drug("Jaktinib")), tagger) == ["jak"]
    assert therapies(trial_of(drug("Tofacitinib")), tagger) == ["jak"]  # added, not replaced
    assert extended.label("jak") == "JAK inhibitors"


def test_extra_file_adds_a_new_subtype_tag(extended: Vocabulary) -> None:
    s = about(["Focal Myositis"])
    assert subtypes(s) == ["iim"]
    assert subtypes(s, Tagger(extended)) == ["focal"]  # longest match beats "myositis"
    assert extended.label("focal") == "Focal myositis"
    assert list(extended.subtypes)[-1] == "focal"
    assert "focal" not in VOCABULARY.subtypes


def test_extra_file_extends_the_ignore_list(extended: Vocabulary) -> None:
    s = trial_of(drug("Health education", kind="BEHAVIORAL"))
    assert therapies(s) == [OTHER_THERAPY]
    assert therapies(s, Tagger(extended)) == []
    assert "placebo" in extended.ignore


def test_a_new_tag_without_a_label_is_labelled_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.toml"
    path.write_text('[therapies.chaperones]\nterms = ["arimoclomol"]\n')
    vocabulary = load_vocabulary(path)
    assert vocabulary.label("chaperones") == "chaperones"
    assert vocabulary.therapy_names[-2:] == ["chaperones", OTHER_THERAPY]
    assert therapies(load_study(ARIMOCLOMOL_IBM), Tagger(vocabulary)) == ["chaperones"]


def test_digest_changes_when_the_extra_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.toml"
    path.write_text(EXTRA)
    first = load_vocabulary(path).digest
    assert load_vocabulary(path).digest == first
    assert first != VOCABULARY.digest
    assert load_vocabulary().digest == VOCABULARY.digest
    path.write_text(EXTRA.replace("jaktinib", "ivarmacitinib"))
    assert load_vocabulary(path).digest != first


@pytest.mark.parametrize(("text", "message"), [
    ("[therapies.jak\nterms = [", "is not a valid vocabulary"),
    ('[drugs.jak]\nterms = ["ivarmacitinib"]\n', "unknown section [drugs]"),
    ('[therapies.jak]\nsynonyms = ["ivarmacitinib"]\n', "unknown keys: synonyms"),
    ('[ignore]\nwords = ["vehicle"]\n', "[ignore] takes only terms"),
    ('[therapies.other]\nterms = ["arimoclomol"]\n', "may not define a therapy named 'other'"),
    ('[subtypes.Focal_Myositis]\nterms = ["focal myositis"]\n', "must be lower-case letters"),
    ('[therapies.jak]\nterms = "ivarmacitinib"\n', "terms must be a list of strings"),
    ('[therapies.jak]\nterms = [1]\n', "terms must be a list of strings"),
    ('[therapies.jak]\nlabel = ["JAK"]\n', "label must be a string"),
    ('[subtypes.focal]\nterms = ["focal myositis"]\nneeds_context = "no"\n',
     "needs_context must be true or false"),
    ('[subtypes]\nfocal = "focal myositis"\n', "subtypes.focal must be a table"),
    ('ignore = ["vehicle"]\n', "ignore must be a table"),
])
def test_an_invalid_extra_file_is_a_config_error_naming_file_and_fault(
        tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "vocabulary.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_vocabulary(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_a_missing_extra_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="cannot be read") as raised:
        load_vocabulary(path)
    assert str(path) in str(raised.value)


# --- normalise --------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [
    ("PF-06700841", "PF06700841"),
    ("PF-06700841", "pf 06700841"),
    ("Inclusion-Body  Myositis", "inclusion body myositis"),
    ("ANTI\u2013JO-1", "anti jo1"),  # en dash
    ("  Immune\u2010mediated   necrotizing myopathy ", "immune mediated necrotizing myopathy"),
])
def test_normalise_ignores_case_hyphens_and_spacing(a: str, b: str) -> None:
    assert normalise(a) == normalise(b)


def test_normalise_result() -> None:
    assert normalise("PF-06700841") == "pf06700841"
    assert normalise(" Myositis,  Inclusion-Body ") == "myositis, inclusion body"


def test_normalise_keeps_different_words_apart() -> None:
    assert normalise("polymyositis") != normalise("poly myositis")
    assert normalise("IBM") != normalise("I B M")


# --- patient facts ----------------------------------------------------------------------------

def facts(s: Study) -> dict[str, Any]:
    return columns(TAGGER.tag(s), s)


def test_recruiting_study_facts() -> None:
    cols = facts(load_study(TOFACITINIB_DM))
    assert cols["recruiting"] is True
    assert cols["children"] is False
    assert (cols["min_age_years"], cols["max_age_years"]) == (18.0, 80.0)
    assert cols["recruiting_countries"] == "China|United States"
    sites = json.loads(cols["recruiting_sites"])
    assert len(sites) == 13
    assert sites[0] == {"facility": "The Johns Hopkins Hospital", "city": "Baltimore",
                        "state": "Maryland", "country": "United States",
                        "lat": 39.29038, "lon": -76.61219}


def test_sites_without_a_geo_point_have_no_coordinates() -> None:
    sites = recruiting_sites(load_study(TOFACITINIB_DM))
    hangzhou = [site for site in sites if site["city"] == "Hanzhou"]
    assert len(hangzhou) == 2
    assert all("lat" not in site and "lon" not in site for site in hangzhou)
    assert all("lat" in site for site in sites if site["city"] != "Hanzhou")


def test_not_recruiting_study_facts() -> None:
    cols = facts(load_study(EFGARTIGIMOD_IMNM))
    assert cols["recruiting"] is False
    assert (cols["min_age_years"], cols["max_age_years"]) == (18.0, 29.0)
    assert cols["recruiting_countries"] is None
    assert cols["recruiting_sites"] is None


def test_only_sites_marked_recruiting_are_recruiting_sites() -> None:
    s = study(TOFACITINIB_DM)
    locations = s["protocolSection"]["contactsLocationsModule"]["locations"]
    for location in locations:
        if location["country"] == "China":
            location["status"] = "NOT_YET_RECRUITING"
    locations[1]["status"] = "COMPLETED"
    locations[2]["status"] = "RECRUITING"
    cols = facts(s)
    assert cols["recruiting_countries"] == "China|United States"
    assert [site["city"] for site in json.loads(cols["recruiting_sites"])] == [
        "Baltimore", "Beijing"]
    locations[2]["status"] = "WITHDRAWN"
    assert facts(s)["recruiting_countries"] == "United States"


def test_when_no_site_has_a_status_every_site_of_a_recruiting_study_is_recruiting() -> None:
    s = study(IVIG_DM_PM)
    assert facts(s)["recruiting_sites"] is None  # COMPLETED
    s["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    cols = facts(s)
    assert cols["recruiting"] is True
    assert cols["recruiting_countries"] == "United States"
    sites = json.loads(cols["recruiting_sites"])
    assert len(sites) == 42
    assert sites[0] == {"city": "Birmingham", "state": "Alabama", "country": "United States",
                        "lat": 33.52066, "lon": -86.80249}


def test_a_site_without_status_in_a_terminated_study_is_not_recruiting() -> None:
    assert recruiting_sites(load_study(PLASMA_EXCHANGE_PM)) == []


@pytest.mark.parametrize(("std_ages", "minimum", "children"), [
    (["CHILD", "ADULT"], "12 Years", True),
    (["CHILD"], "6 Months", True),
    (["ADULT", "OLDER_ADULT"], "18 Years", False),
    (["ADULT", "OLDER_ADULT"], None, False),  # stdAges, when present, decide
    (None, "12 Years", True),
    (None, "17 Years", True),
    (None, "18 Years", False),
    (None, "6 Months", True),
    (None, None, True),  # no lower age limit
])
def test_children_from_std_ages_or_else_minimum_age(
        std_ages: list[str] | None, minimum: str | None, children: bool) -> None:
    s = study(TOFACITINIB_DM)
    eligibility = s["protocolSection"]["eligibilityModule"]
    eligibility.pop("stdAges")
    eligibility.pop("minimumAge")
    if std_ages is not None:
        eligibility["stdAges"] = std_ages
    if minimum is not None:
        eligibility["minimumAge"] = minimum
    assert facts(s)["children"] is children


def test_ages_in_years_from_the_record() -> None:
    s = study(JDM_REGISTRY)
    eligibility = s["protocolSection"]["eligibilityModule"]
    eligibility.update(minimumAge="6 Months", maximumAge="17 Years", stdAges=["CHILD"])
    cols = facts(s)
    assert (cols["min_age_years"], cols["max_age_years"]) == (0.5, 17.0)
    assert cols["children"] is True
    assert facts(load_study(RITUXIMAB_ASS_ILD))["max_age_years"] is None  # no maximumAge


@pytest.mark.parametrize(("text", "years"), [
    ("6 Months", 0.5),
    ("18 Years", 18.0),
    ("1 Year", 1.0),
    ("2 Weeks", 0.038),
    ("30 Days", 0.082),
    ("N/A", None),
    ("", None),
    (None, None),
])
def test_age_in_years(text: str | None, years: float | None) -> None:
    assert age_in_years(text) == years


# --- results overdue --------------------------------------------------------------------------

@pytest.mark.parametrize(("primary", "completion", "today", "overdue"), [
    ("2025-03", None, date(2026, 4, 1), True),
    ("2025-03", None, date(2026, 3, 31), False),  # counted from the end of March 2025
    ("2025-03-15", None, date(2026, 3, 16), True),
    ("2025-03-15", None, date(2026, 3, 15), False),
    ("2024-12", None, date(2026, 1, 1), True),
    ("2024-12", None, date(2025, 12, 31), False),
    ("2024", None, date(2026, 1, 1), True),
    ("2024", None, date(2025, 12, 31), False),
    ("2024-02", None, date(2025, 3, 1), True),  # 29 Feb 2024 + 12 months = 28 Feb 2025
    ("2024-02-29", None, date(2025, 2, 28), False),
    (None, "2025-03", date(2026, 4, 1), True),  # no primary completion: the completion date
    ("2025-03", "2026-06", date(2026, 4, 1), True),  # primary completion wins
    ("2026-03", "2024-01", date(2026, 4, 1), False),
    (None, None, date(2030, 1, 1), False),
    ("not a date", None, date(2030, 1, 1), False),
])
def test_completed_study_results_are_overdue_12_months_after_the_end_of_its_date(
        primary: str | None, completion: str | None, today: date, overdue: bool) -> None:
    assert results_overdue("COMPLETED", False, primary, completion, today) is overdue


def test_results_are_not_overdue_once_posted() -> None:
    assert results_overdue("COMPLETED", True, "2015-09-15", None, date(2026, 1, 1)) is False


@pytest.mark.parametrize("status", ["TERMINATED", "ACTIVE_NOT_RECRUITING", "RECRUITING",
                                    "UNKNOWN", "WITHDRAWN", None])
def test_results_are_overdue_only_for_completed_studies(status: str | None) -> None:
    assert results_overdue(status, False, "2015-09", None, date(2026, 1, 1)) is False


@pytest.mark.parametrize(("nct_id", "overdue"), [
    (JDM_REGISTRY, True),  # completed 2011-03, no results
    (ARIMOCLOMOL_IBM, False),  # results posted
    (IVIG_DM_PM, False),  # results posted
    (PLASMA_EXCHANGE_PM, False),  # terminated
    (TOFACITINIB_DM, False),  # recruiting
])
def test_results_overdue_for_the_real_records(nct_id: str, overdue: bool) -> None:
    s = load_study(nct_id)
    status = s["protocolSection"]["statusModule"]
    assert results_overdue(
        status["overallStatus"], s["hasResults"],
        (status.get("primaryCompletionDateStruct") or {}).get("date"),
        (status.get("completionDateStruct") or {}).get("date"),
        date(2026, 11, 22)) is overdue


# --- clause-bound negation, control arms, context from the words themselves ---------------------


def test_a_placebo_matched_to_a_drug_is_not_that_drug() -> None:
    s = trial_of(drug("Tofacitinib"), drug("Placebo to match tofacitinib"),
                 drug("Sham exercise", kind="BEHAVIORAL"))
    assert therapies(s) == ["jak"]
    assert evidence(s, "jak") == [("intervention name", "tofacitinib")]


def test_standard_of_care_beside_a_drug_keeps_the_drug() -> None:
    assert therapies(trial_of(drug("Rituximab + standard of care"))) == ["b-cell"]


def test_a_stale_recruiting_site_in_a_closed_study_is_not_recruiting() -> None:
    s = study(RITUXIMAB_ASS_ILD)  # UNKNOWN status, its one site still says RECRUITING
    assert s["protocolSection"]["contactsLocationsModule"]["locations"][0]["status"] == \
        "RECRUITING"
    facts = columns(TAGGER.tag(s), s)
    assert facts["recruiting"] is False
    assert facts["recruiting_countries"] is None and facts["recruiting_sites"] is None


def test_an_observational_study_is_never_overdue_with_results() -> None:
    args = ("COMPLETED", False, "2020-01", None, date(2026, 11, 22))
    assert results_overdue(*args) is True
    assert results_overdue(*args, study_type="OBSERVATIONAL") is False
