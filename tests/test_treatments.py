"""Specification of `tracker.treatments`: which treatment classes a study tests, from which
words, and which of its interventions are not the tested treatment.

Every study is a deep copy of a real record from tests/data/studies/ whose arms,
interventions, summary or intervention MeSH terms are replaced by values in the API's own
shapes (armGroups with type and interventionNames "Drug: X"; interventions with type,
armGroupLabels, otherNames, description; derivedSection.interventionBrowseModule with meshes,
ancestors, browseLeaves and relevance).
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_study
from tracker import treatments
from tracker.models import Study as StudyRow
from tracker.record import summarise
from tracker.tags import Tagger, columns
from tracker.treatments import Assessment, TreatmentTagger, shipped_rules
from tracker.views import study_lines
from tracker.vocabulary import OTHER_THERAPY, Evidence, load_vocabulary

Study = dict[str, Any]

VOCABULARY = load_vocabulary()
TAGGER = TreatmentTagger(VOCABULARY)
BASE = "NCT04078230"  # a real record (edited into a tofacitinib DM trial), two arms
TYPE_LABELS = {"DRUG": "Drug", "BIOLOGICAL": "Biological", "PROCEDURE": "Procedure",
               "BEHAVIORAL": "Behavioral", "DEVICE": "Device", "GENETIC": "Genetic",
               "DIETARY_SUPPLEMENT": "Dietary Supplement", "OTHER": "Other",
               "DIAGNOSTIC_TEST": "Diagnostic Test"}
NEUTRAL_SUMMARY = "This study tests whether the study drug improves muscle strength."
# Real MeSH shapes: a mapped drug, its ancestors, and browse leaves with their relevance.
JAK_ANCESTORS = [{"id": "D000097802", "term": "Janus Kinase Inhibitors"},
                 {"id": "D047428", "term": "Protein Kinase Inhibitors"},
                 {"id": "D004791", "term": "Enzyme Inhibitors"}]


# --- building records -------------------------------------------------------------------------

def given(name: str, *other_names: str, kind: str = "DRUG", description: str | None = None,
          arms: tuple[str, ...] = ("Treatment",)) -> dict[str, Any]:
    """An intervention as the API writes it, given in `arms`."""
    item: dict[str, Any] = {"type": kind, "name": name, "armGroupLabels": list(arms)}
    if description:
        item["description"] = description
    if other_names:
        item["otherNames"] = list(other_names)
    return item


def arm(label: str, kind: str = "EXPERIMENTAL", description: str | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"label": label, "type": kind}
    if description:
        group["description"] = description
    return group


def trial(*items: dict[str, Any], arms: list[dict[str, Any]] | None = None,
          summary: str = NEUTRAL_SUMMARY, browse: dict[str, Any] | None = None) -> Study:
    """A copy of a real record testing `items` in `arms` (one EXPERIMENTAL arm by default);
    each arm lists its interventions as "Type: name", as the registry does."""
    s = copy.deepcopy(load_study(BASE))
    groups = copy.deepcopy(arms) if arms is not None else [arm("Treatment")]
    for group in groups:
        group["interventionNames"] = [f"{TYPE_LABELS[i['type']]}: {i['name']}" for i in items
                                      if group["label"] in i["armGroupLabels"]]
    s["protocolSection"]["armsInterventionsModule"] = {"armGroups": groups,
                                                       "interventions": list(items)}
    s["protocolSection"]["descriptionModule"]["briefSummary"] = summary
    s["derivedSection"].pop("interventionBrowseModule", None)
    if browse is not None:
        s["derivedSection"]["interventionBrowseModule"] = browse
    return s


def placebo_controlled(drug: dict[str, Any], *background: dict[str, Any]) -> Study:
    """`drug` against a placebo, with `background` given in both arms."""
    drug = {**drug, "armGroupLabels": ["Drug"]}
    both = [{**b, "armGroupLabels": ["Drug", "Placebo"]} for b in background]
    return trial(drug, given("Placebo", arms=("Placebo",)), *both,
                 arms=[arm("Drug"), arm("Placebo", "PLACEBO_COMPARATOR")])


def classes(s: Study, tagger: TreatmentTagger = TAGGER) -> list[str]:
    return list(tagger.tag(s))


def evidence(s: Study, tag: str) -> list[tuple[str, str]]:
    return [(e.source, e.text) for e in TAGGER.tag(s).get(tag, [])]


def ignored(s: Study) -> list[tuple[str, str]]:
    return [(e.source, e.text) for e in TAGGER.assess(s).ignored]


# --- names, brands and codes ------------------------------------------------------------------

@pytest.mark.parametrize(("name", "tag"), [
    ("Privigen", "ivig"), ("Gamunex-C", "ivig"), ("Hizentra", "ivig"), ("Cuvitru", "ivig"),
    ("HyQvia", "ivig"), ("Panzyga", "ivig"), ("Kiovig", "ivig"), ("Gammagard Liquid", "ivig"),
    ("Opzelura", "jak"), ("Ruxolitinib cream 1.5%", "jak"), ("Deucravacitinib", "jak"),
    ("Upadacitinib 15 mg", "jak"),
])
def test_immunoglobulin_and_topical_jak_brands_give_their_class(name: str, tag: str) -> None:
    assert classes(trial(given(name))) == [tag]


@pytest.mark.parametrize(("name", "tag"), [
    ("ARGX-113", "fcrn"), ("IMVT-1401", "fcrn"), ("UCB7665", "fcrn"), ("Nipocalimab", "fcrn"),
    ("ALXN1720", "complement"), ("RA101495", "complement"), ("Pozelimab", "complement"),
    ("Cemdisiran", "complement"), ("Iptacopan", "complement"),
    ("KYV-101", "cell-therapy"), ("CABA-201", "cell-therapy"), ("Descartes-08", "cell-therapy"),
    ("Obecabtagene autoleucel", "cell-therapy"), ("obe-cel", "cell-therapy"),
    ("PF-06823859", "interferon"), ("Dazukibart", "interferon"),
])
def test_development_codes_of_complement_fcrn_car_t_and_interferon_drugs(name: str,
                                                                          tag: str) -> None:
    assert classes(trial(given(name, kind="BIOLOGICAL"))) == [tag]


@pytest.mark.parametrize(("name", "tag"), [
    ("Umbilical cord mesenchymal stem cells", "cell-therapy"),
    ("Autologous regulatory T cells", "cell-therapy"),
    ("Autologous HSCT", "cell-therapy"),
    ("Bimagrumab", "muscle"), ("BYM338", "muscle"), ("Follistatin gene therapy", "muscle"),
    ("Arimoclomol", "muscle"),
    ("Immunoadsorption", "plasma-exchange"), ("Therapeutic apheresis", "plasma-exchange"),
    ("Double filtration plasmapheresis", "plasma-exchange"),
])
def test_cell_products_muscle_directed_drugs_and_apheresis_wording(name: str, tag: str) -> None:
    assert classes(trial(given(name, kind="BIOLOGICAL"))) == [tag]


@pytest.mark.parametrize("name", ["MTX", "MMF", "AZA", "CsA", "TAC", "CYC", "CellCept",
                                  "Cyclosporine", "Leflunomide", "Sirolimus"])
def test_abbreviations_of_conventional_immunosuppressants(name: str) -> None:
    assert classes(trial(given(name))) == ["immunosuppressants"]


def test_an_unlisted_drug_name_ending_in_a_jak_stem_is_a_jak_inhibitor() -> None:
    s = trial(given("Lorpucitinib"))
    assert classes(s) == ["jak"]
    assert evidence(s, "jak") == [("intervention name", "lorpucitinib (-citinib)")]


# --- singular, plural and general words -------------------------------------------------------

@pytest.mark.parametrize(("name", "tag"), [
    ("Steroid", "glucocorticoids"), ("Steroids", "glucocorticoids"),
    ("Glucocorticoid", "glucocorticoids"),
    ("JAK inhibitors", "jak"), ("JAK inhibitor", "jak"),
    ("Immunosuppressants", "immunosuppressants"),
    ("Immunosuppressive agents", "immunosuppressants"), ("DMARDs", "immunosuppressants"),
    ("Disease-modifying anti-rheumatic drugs", "immunosuppressants"),
    ("Biologics", "biologics"), ("Biological therapies", "biologics"),
    ("Antibody therapy", "biologics"),
    ("Bisphosphonates", "bone-health"), ("Calcium and vitamin D", "bone-health"),
    ("Alendronate", "bone-health"), ("Zoledronic acid", "bone-health"),
    ("Sunscreen", "skin-care"), ("Photoprotection", "skin-care"),
])
def test_singular_plural_and_general_words_from_patient_pages(name: str, tag: str) -> None:
    assert classes(trial(given(name))) == [tag]


def test_a_class_word_gives_way_to_a_specific_one() -> None:
    s = trial(given("Anti-FcRn monoclonal antibody", kind="BIOLOGICAL"))
    assert classes(s) == ["fcrn"]


def test_the_new_classes_have_patient_labels_and_come_before_other() -> None:
    assert VOCABULARY.label("bone-health") == \
        "Bone protection (bisphosphonates, calcium, vitamin D)"
    assert VOCABULARY.label("skin-care") == "Sun protection and skin care"
    assert VOCABULARY.label("muscle") == "Muscle-directed treatments"
    assert VOCABULARY.therapy_names[-4:] == ["bone-health", "skin-care", "muscle",
                                             OTHER_THERAPY]


@pytest.mark.parametrize("name", [
    "Resistance training", "Aerobic training", "Home-based training", "Strength training",
    "Blood flow restriction training", "Physiotherapy", "Rehabilitation program",
    "Endurance exercise", "Physical activity coaching",
])
def test_exercise_wording_beyond_the_word_exercise(name: str) -> None:
    assert classes(trial(given(name, kind="BEHAVIORAL"))) == ["exercise"]


# --- small molecules and other treatments -----------------------------------------------------

@pytest.mark.parametrize("name", ["Apremilast", "Lenabasum", "Sodium thiosulfate",
                                  "Hydroxychloroquine", "Nintedanib"])
def test_small_molecules_and_a_salt_are_other_not_biologics(name: str) -> None:
    assert classes(trial(given(name))) == [OTHER_THERAPY]


def test_an_oral_small_molecule_aimed_at_a_cytokine_is_not_a_biologic() -> None:
    s = trial(given("XYZ-4471", description="XYZ-4471 is an oral small-molecule IL-17 "
                                            "inhibitor taken once daily."))
    assert classes(s) == [OTHER_THERAPY]
    assert classes(trial(given("XYZ-4471", kind="BIOLOGICAL", description=(
        "XYZ-4471 is an IL-17 inhibitor given by infusion.")))) == ["biologics"]


# --- what the record says about an unknown code -----------------------------------------------

@pytest.mark.parametrize(("description", "tag"), [
    ("ABC-123 is an anti-FcRn monoclonal antibody given subcutaneously.", "fcrn"),
    ("A selective TYK2/JAK1 inhibitor.", "jak"),
    ("ABC-123, a C5 inhibitor, is given every 8 weeks.", "complement"),
    ("Autologous anti-CD19 CAR T cells, single infusion.", "cell-therapy"),
    ("A type I interferon receptor antibody.", "interferon"),
    ("A fully human antibody against activin type II receptors.", "muscle"),
    ("A humanized monoclonal antibody.", "biologics"),
])
def test_an_unknown_code_is_classed_by_the_mechanism_its_description_names(
        description: str, tag: str) -> None:
    s = trial(given("ABC-123", kind="BIOLOGICAL", description=description))
    assert classes(s) == [tag]
    assert all(source == "intervention description" for source, _ in evidence(s, tag))


def test_a_description_that_names_the_code_first_says_its_mechanism_later() -> None:
    s = trial(given("ABC-123", kind="BIOLOGICAL", description=(
        "ABC-123 10 mg/kg IV every 4 weeks (7 doses). It is a monoclonal antibody that "
        "blocks the neonatal Fc receptor.")))
    assert evidence(s, "fcrn") == [("intervention description", "neonatal fc receptor")]


def test_the_summary_classes_an_unknown_code_by_the_words_next_to_it() -> None:
    summary = ("Dermatomyositis is a rare disease. This study will evaluate the efficacy of "
               "ABC-123, an anti-FcRn antibody, in adults on stable glucocorticoids.")
    s = trial(given("ABC-123 300 mg SC", kind="BIOLOGICAL"), summary=summary)
    assert classes(s) == ["fcrn"]
    assert evidence(s, "fcrn") == [("summary", "anti fcrn")]


def test_summary_words_far_from_the_code_or_about_background_care_do_not_class_it() -> None:
    summary = ("Many patients need glucocorticoids and intravenous immunoglobulin for years, "
               "and steroid-sparing options are few. Part two starts in 2026. ABC-123 is given "
               "once a month on top of stable glucocorticoids. ABC-123 (Zorvex), a new "
               "medicine, is hoped to let glucocorticoids be tapered.")
    s = trial(given("ABC-123", kind="BIOLOGICAL"), summary=summary)
    assert classes(s) == [OTHER_THERAPY]


def test_background_words_in_an_unknown_code_description_are_set_aside() -> None:
    s = trial(given("ABC-123", description="ABC-123 is a JAK1 inhibitor given on top of "
                                           "stable glucocorticoids."))
    assert classes(s) == ["jak"]


def test_an_arm_description_names_what_its_code_is() -> None:
    s = trial(given("ABC-123"), arms=[arm("Treatment", description=(
        "Participants receive ABC-123 (a complement C5 inhibitor) every two weeks."))])
    assert evidence(s, "complement") == [("arm description", "complement c5")]


# --- the registry's MeSH terms ------------------------------------------------------------------

def test_an_unknown_code_is_classed_by_its_mesh_ancestors() -> None:
    browse = {"meshes": [{"id": "C000000001", "term": "abc 123"}], "ancestors": JAK_ANCESTORS}
    s = trial(given("ABC-123"), browse=browse)
    assert classes(s) == ["jak"]
    assert evidence(s, "jak") == [("MeSH ancestor", "Janus Kinase Inhibitors")]


def test_a_high_relevance_pharmacological_action_leaf_classes_an_unknown_code() -> None:
    leaves = [{"id": "M0000001", "name": "abc 123", "asFound": "ABC-123", "relevance": "HIGH"},
              {"id": "M000674", "name": "Janus Kinase Inhibitors", "relevance": "HIGH"},
              {"id": "M8919", "name": "Glucocorticoids", "relevance": "LOW"}]
    browse = {"browseLeaves": leaves,
              "browseBranches": [{"abbrev": "All", "name": "All Drugs and Chemicals"}]}
    s = trial(given("ABC-123"), browse=browse)
    assert classes(s) == ["jak"]  # a LOW leaf is only a mention somewhere in the record
    assert evidence(s, "jak") == [("MeSH action", "Janus Kinase Inhibitors")]


def test_a_mesh_term_for_immunoglobulin_classes_an_unnamed_infusion() -> None:
    browse = {"meshes": [{"id": "D016756", "term": "Immunoglobulins, Intravenous"}]}
    s = trial(given("Study infusion", kind="BIOLOGICAL"), browse=browse)
    assert evidence(s, "ivig") == [("MeSH", "Immunoglobulins, Intravenous")]


def test_mesh_terms_of_named_drugs_do_not_class_anything_else() -> None:
    browse = {"meshes": [{"id": "D011241", "term": "Prednisone"}],
              "ancestors": [{"id": "D005938", "term": "Glucocorticoids"},
                            {"id": "D007166", "term": "Immunosuppressive Agents"}]}
    s = trial(given("ABC-123"), given("Prednisone"), browse=browse)
    assert classes(s) == ["glucocorticoids", OTHER_THERAPY]


def test_mesh_of_background_care_does_not_class_the_tested_code() -> None:
    s = placebo_controlled(given("ABC-123"), given("Prednisone"))
    s["derivedSection"]["interventionBrowseModule"] = {
        "meshes": [{"id": "D011241", "term": "Prednisone"}],
        "ancestors": [{"id": "D005938", "term": "Glucocorticoids"}]}
    assert classes(s) == [OTHER_THERAPY]


def test_the_mesh_of_a_code_is_read_although_its_placebo_is_named_after_it() -> None:
    browse = {"meshes": [{"id": "C000000001", "term": "ABC-123"}], "ancestors": JAK_ANCESTORS}
    s = trial(given("ABC-123", arms=("Drug",)),
              given("Placebo to match ABC-123", arms=("Placebo",)),
              arms=[arm("Drug"), arm("Placebo", "PLACEBO_COMPARATOR")], browse=browse)
    assert classes(s) == ["jak"]


def test_a_class_word_of_the_mesh_counts_only_when_nothing_more_specific_does() -> None:
    browse = {"meshes": [{"id": "C000000002", "term": "abc 123"}],
              "ancestors": [{"id": "D000911", "term": "Antibodies, Monoclonal"},
                            {"id": "D007166", "term": "Immunosuppressive Agents"},
                            {"id": "D003167", "term": "Complement Inactivating Agents"}]}
    assert classes(trial(given("ABC-123"), browse=browse)) == ["complement"]
    browse["ancestors"] = browse["ancestors"][:2]
    assert classes(trial(given("ABC-123"), browse=browse)) == ["biologics"]


# --- what is not the tested treatment ---------------------------------------------------------

@pytest.mark.parametrize("name", ["Placebo", "Vehicle cream", "Vehicle", "Sham procedure",
                                  "Sham exercise", "Ruxolitinib cream vehicle",
                                  "Tofacitinib matching placebo", "Normal saline"])
def test_placebo_vehicle_and_sham_tag_nothing_not_even_other(name: str) -> None:
    s = trial(given(name))
    assert classes(s) == []
    assert ignored(s) == [("named as a control", name)]


def test_a_blinded_drug_or_placebo_is_the_drug() -> None:
    assert classes(trial(given("Tofacitinib or placebo"))) == ["jak"]


def test_an_intervention_given_only_in_placebo_or_sham_arms_is_no_treatment() -> None:
    s = trial(given("Brepocitinib", arms=("Drug",)),
              given("Saline infusion", arms=("Control",)),
              given("Stretching", kind="BEHAVIORAL", arms=("Sham",)),
              arms=[arm("Drug"), arm("Control", "PLACEBO_COMPARATOR"),
                    arm("Sham", "SHAM_COMPARATOR")])
    assert classes(s) == ["jak"]
    assert ignored(s) == [("given only in placebo or sham arms", "Saline infusion"),
                          ("given only in placebo or sham arms", "Stretching")]


def test_background_care_given_in_every_arm_is_not_the_tested_treatment() -> None:
    s = placebo_controlled(given("Efgartigimod", kind="BIOLOGICAL"),
                           given("Standard prednisone"), given("Methotrexate"))
    assert classes(s) == ["fcrn"]
    assert ignored(s) == [("named as a control", "Placebo"),
                          ("background care in every arm", "Standard prednisone"),
                          ("background care in every arm", "Methotrexate")]


def test_arms_that_list_their_interventions_by_name_alone_are_read_too() -> None:
    s = placebo_controlled(given("Efgartigimod", kind="BIOLOGICAL"), given("Prednisone"))
    for item in s["protocolSection"]["armsInterventionsModule"]["interventions"]:
        del item["armGroupLabels"]  # the arms' "Drug: Prednisone" still say who gets what
    assert classes(s) == ["fcrn"]
    assert ("background care in every arm", "Prednisone") in ignored(s)


def test_standard_of_care_prednisone_is_background_by_its_name() -> None:
    s = trial(given("IVIG", kind="BIOLOGICAL"), given("Standard of care prednisone"))
    assert classes(s) == ["ivig"]
    assert ignored(s) == [("background care", "Standard of care prednisone")]


def test_a_drug_in_every_arm_of_a_crossover_against_placebo_is_still_tested() -> None:
    s = trial(given("Tofacitinib", arms=("A then B", "B then A")),
              given("Placebo", arms=("A then B", "B then A")),
              arms=[arm("A then B"), arm("B then A")])
    assert classes(s) == ["jak"]


def test_a_single_arm_study_tests_everything_it_gives() -> None:
    s = trial(given("Rituximab", kind="BIOLOGICAL"), given("Prednisone"))
    assert classes(s) == ["glucocorticoids", "b-cell"]


def test_tests_and_questionnaires_are_not_treatments() -> None:
    s = trial(given("Tofacitinib"), given("Muscle biopsy", kind="PROCEDURE"),
              given("Nailfold capillaroscopy", kind="DIAGNOSTIC_TEST"))
    assert classes(s) == ["jak"]
    assert [source for source, _ in ignored(s)] == ["not a treatment (a test or assessment)"] * 2


# --- cell therapy ---------------------------------------------------------------------------------

def test_an_anti_cd19_car_t_is_cell_therapy_and_not_b_cell_depletion() -> None:
    s = trial(given("Anti-CD19 CAR T cells", kind="GENETIC"))
    assert classes(s) == ["cell-therapy"]


def test_a_car_t_beside_a_tested_b_cell_drug_keeps_both() -> None:
    s = trial(given("KYV-101", kind="BIOLOGICAL", arms=("CAR-T",)),
              given("Rituximab", kind="BIOLOGICAL", arms=("Rituximab",)),
              arms=[arm("CAR-T"), arm("Rituximab", "ACTIVE_COMPARATOR")])
    assert classes(s) == ["b-cell", "cell-therapy"]


def test_lymphodepleting_conditioning_before_car_t_is_not_the_tested_treatment() -> None:
    s = trial(given("Fludarabine"), given("Cyclophosphamide"),
              given("Leukapheresis", kind="PROCEDURE"),
              given("CD19 CAR-T", kind="BIOLOGICAL"))
    assert classes(s) == ["cell-therapy"]
    assert ignored(s) == [
        ("lymphodepleting conditioning before the cell therapy", "Fludarabine"),
        ("lymphodepleting conditioning before the cell therapy", "Cyclophosphamide"),
        ("cell collection for the cell therapy", "Leukapheresis")]


def test_conditioning_named_so_is_set_aside_and_cyclophosphamide_alone_is_a_treatment() -> None:
    s = trial(given("Lymphodepletion chemotherapy", description="Fludarabine and "
                    "cyclophosphamide on days -5 to -3"),
              given("ABC-19", kind="GENETIC", description="Autologous CD19-directed "
                    "chimeric antigen receptor T cells"))
    assert classes(s) == ["cell-therapy"]
    assert classes(trial(given("Cyclophosphamide"))) == ["immunosuppressants"]


# --- evidence ---------------------------------------------------------------------------------

def test_evidence_says_which_part_of_the_record_gave_each_class() -> None:
    s = trial(given("Efgartigimod PH20 SC", kind="BIOLOGICAL"),
              given("ABC-123", description="ABC-123 is a selective TYK2 inhibitor."),
              given("Study infusion", kind="BIOLOGICAL"),
              browse={"meshes": [{"id": "D016756", "term": "Immunoglobulins, Intravenous"}]})
    tags = TAGGER.tag(s)
    assert tags["fcrn"] == [Evidence("intervention name", "efgartigimod")]
    assert tags["jak"] == [Evidence("intervention description", "tyk2 inhibitor")]
    assert tags["ivig"] == [Evidence("MeSH", "Immunoglobulins, Intravenous")]


def test_assess_lists_the_classes_and_the_interventions_set_aside() -> None:
    s = placebo_controlled(given("Tofacitinib"), given("Prednisone"))
    assessment = TAGGER.assess(s)
    assert assessment == Assessment(
        {"jak": [Evidence("intervention name", "tofacitinib")]},
        [Evidence("named as a control", "Placebo"),
         Evidence("background care in every arm", "Prednisone")])
    assert Tagger(VOCABULARY).tag(s).therapies == assessment.classes


# --- the words themselves ---------------------------------------------------------------------

def test_every_class_the_rules_name_is_a_treatment_class() -> None:
    rules = shipped_rules()
    named = {*rules.mechanisms, *rules.general, *(t for t, _ in rules.stems.values()),
             *(t for t, _ in rules.mesh.values())}
    assert named <= set(VOCABULARY.therapy_names)
    with pytest.raises(ValueError, match="unknown classes: pills"):
        treatments.parse_rules({"therapies": {}, "rules": {
            **{k: [] for k in ("other", "other_abbreviations", "neutral")},
            **{k: {} for k in ("general", "stems", "general_stems", "mesh", "general_mesh",
                               "weak_mesh", "roles")},
            "mechanisms": {"pills": []}}})


def test_no_word_names_two_classes() -> None:
    twice = {term: tags for term, tags in TAGGER.names.by_term.items() if len(tags) > 1}
    assert twice == {}


def test_a_term_the_operator_gives_a_new_class_leaves_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.toml"
    path.write_text('[therapies.chaperones]\nterms = ["arimoclomol"]\n')
    tagger = TreatmentTagger(load_vocabulary(path))
    assert classes(trial(given("Arimoclomol")), tagger) == ["chaperones"]
    assert classes(trial(given("Bimagrumab")), tagger) == ["muscle"]


def test_show_names_what_was_not_counted_as_a_tested_treatment_and_why() -> None:
    record = load_study("NCT02210780")  # IVIG against placebo
    moment = datetime(2026, 11, 22, tzinfo=UTC)
    row = StudyRow(**summarise(record), **columns(Tagger(load_vocabulary()).tag(record), record),
                   content_hash="x", first_seen_at=moment, last_changed_at=moment)
    lines = dict(study_lines(row, load_vocabulary(), date(2026, 11, 22)))

    assert lines["Treatments"].startswith("Immunoglobulin (IVIG, SCIG) [ivig]")
    assert lines["Not counted as tested"] == "Placebo (named as a control)"
