"""Specification of `tracker.subtypes`: which myositis subtypes a study concerns, which words
are read as look-alikes that are not myositis, and why; plus the tracked query that brings
those studies in, re-tagging after a vocabulary change, and `tracker show`'s explanations.

Every study here is a real (myositis-edited) record from tests/data/studies/, or a deep copy of
one with only the fields a sponsor writes (conditions, keywords, titles, summary, criteria) or
the registry derives (MeSH terms) replaced. Field names and shapes are the API's own, copied
from those records. Wordings follow how registrants write on ClinicalTrials.gov.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_study, updated
from tests.fakeapi import Registry
from tests.records import about
from tracker.config import DEFAULT_QUERY, Settings
from tracker.ctgov import CtGovClient
from tracker.digest import plan, plan_operator
from tracker.matching import wants
from tracker.models import Study as StudyRow
from tracker.models import Subscriber
from tracker.record import summarise
from tracker.store import Store, StudyFilter
from tracker.subscribers import Preferences
from tracker.sync import refresh_derived, sync
from tracker.tags import Tagger, columns
from tracker.views import study_lines
from tracker.vocabulary import load_vocabulary

Study = dict[str, Any]

TOFACITINIB_DM = "NCT04078230"
EFGARTIGIMOD_IMNM = "NCT07725679"
ARIMOCLOMOL_IBM = "NCT02803307"
JDM_REGISTRY = "NCT02248896"  # observational, MeSH says Dermatomyositis
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)

VOCABULARY = load_vocabulary()
TAGGER = Tagger(VOCABULARY)

# MeSH entries in the registry's own shape (id + term), as in the records' derivedSection.
MYOSITIS = {"id": "D009220", "term": "Myositis"}
DERMATOMYOSITIS = {"id": "D003882", "term": "Dermatomyositis"}
MYOSITIS_ANCESTORS = [
    {"id": "D009220", "term": "Myositis"},
    {"id": "D009135", "term": "Muscular Diseases"},
    {"id": "D009140", "term": "Musculoskeletal Diseases"},
    {"id": "D009468", "term": "Neuromuscular Diseases"},
    {"id": "D003240", "term": "Connective Tissue Diseases"},
]


# --- helpers for editing copies of real records -----------------------------------------------

def subtypes(s: Study, tagger: Tagger = TAGGER) -> list[str]:
    return list(tagger.tag(s).subtypes)


def evidence(s: Study, tag: str) -> list[tuple[str, str]]:
    return [(e.source, e.text) for e in TAGGER.tag(s).subtypes.get(tag, [])]


def look_alikes(s: Study) -> list[tuple[str, str]]:
    return [(n.source, n.text) for n in TAGGER.tag(s).not_myositis]


def ordered(*tags: str) -> list[str]:
    return sorted(tags, key=list(VOCABULARY.subtypes).index)


# --- the real records -------------------------------------------------------------------------

def test_juvenile_dm_registry_is_jdm_and_not_dermatomyositis_although_its_mesh_says_so() -> None:
    s = load_study(JDM_REGISTRY)
    assert s["derivedSection"]["conditionBrowseModule"]["meshes"] == [DERMATOMYOSITIS]
    tags = TAGGER.tag(s)
    assert "dermatomyositis" not in tags.subtypes
    assert all(e.source != "MeSH" for e in tags.subtypes["jdm"])


def test_imnm_trial_is_not_general_myositis_although_its_mesh_is_myositis() -> None:
    s = load_study(EFGARTIGIMOD_IMNM)
    assert s["derivedSection"]["conditionBrowseModule"]["meshes"] == [MYOSITIS]
    assert "iim" not in subtypes(s)


def test_mesh_names_the_subtype_when_the_words_name_none() -> None:
    s = about(["Muscle Weakness"], meshes=[DERMATOMYOSITIS], ancestors=MYOSITIS_ANCESTORS)
    assert subtypes(s) == ["dermatomyositis"]
    assert evidence(s, "dermatomyositis") == [("MeSH", "D003882 Dermatomyositis")]


# --- whole words, longest match ---------------------------------------------------------------

def test_dermatomyositis_slash_polymyositis_counts_for_both() -> None:
    s = about([], ["dermatomyositis/polymyositis"])
    assert subtypes(s) == ["dermatomyositis", "polymyositis"]
    assert evidence(s, "polymyositis") == [("keywords", "polymyositis")]


def test_juvenile_dermatomyositis_is_jdm_only() -> None:
    assert subtypes(about(["Juvenile Dermatomyositis"])) == ["jdm"]


def test_amyopathic_dermatomyositis_is_cadm_only() -> None:
    assert subtypes(about(["Clinically Amyopathic Dermatomyositis"])) == ["cadm"]


@pytest.mark.parametrize("words", ["Inclusion Body Myositis", "Inclusion-Body Myositis",
                                   "Sporadic Inclusion Body Myositis", "Myositis, Inclusion Body"])
def test_inclusion_body_myositis_is_ibm_not_general_myositis(words: str) -> None:
    assert subtypes(about([words])) == ["ibm"]


def test_plain_myositis_is_general_myositis() -> None:
    assert subtypes(about(["Myositis"])) == ["iim"]


def test_polymyositis_is_not_found_inside_another_word() -> None:
    assert subtypes(about(["Dermatopolymyositis"])) == ["dermatomyositis"]


def test_abbreviations_are_not_found_inside_other_words() -> None:
    s = about(["Myositis"], ["PMR", "T2DM", "IBMX", "DMARD"], acronym="PEPM")
    assert subtypes(s) == ["iim"]


def test_words_are_matched_whatever_their_case_and_hyphens() -> None:
    assert subtypes(about(["IMMUNE MEDIATED NECROTIZING MYOPATHY"])) == ["imnm"]
    assert subtypes(about(["anti\u2013synthetase syndrome"])) == ["ass"]  # an en dash


# --- context and negation ---------------------------------------------------------------------

def test_eligibility_criteria_are_never_read() -> None:
    criteria = ("Inclusion Criteria:\n\n* Adults with myositis\n\nExclusion Criteria:\n\n"
                "* Inclusion body myositis (IBM)\n* Juvenile dermatomyositis")
    s = about(["Myositis"], criteria=criteria)
    assert subtypes(s) == ["iim"]


def test_summary_naming_a_subtype_is_read_when_the_other_words_name_none() -> None:
    s = about(["Myositis"], summary="Adults with dermatomyositis receive the study drug.")
    assert subtypes(s) == ["dermatomyositis", "iim"]
    assert evidence(s, "dermatomyositis") == [("summary", "dermatomyositis")]


def test_summary_is_not_read_when_the_conditions_name_a_subtype() -> None:
    s = about(["Dermatomyositis"], summary="Patients with polymyositis may also take part.")
    assert subtypes(s) == ["dermatomyositis"]


def test_summary_of_a_dm_trial_saying_unlike_polymyositis_does_not_add_polymyositis() -> None:
    s = about(["Dermatomyositis"],
              summary="Dermatomyositis, unlike polymyositis, affects the skin and muscles.")
    assert subtypes(s) == ["dermatomyositis"]


def test_unlike_negates_the_term_it_precedes_in_a_summary_that_is_read() -> None:
    s = about(["Myositis"],
              summary="Dermatomyositis, unlike polymyositis, affects the skin and muscles.")
    assert subtypes(s) == ["dermatomyositis", "iim"]


def test_summary_is_not_read_in_a_study_not_about_myositis() -> None:
    s = about(["Healthy Volunteers"],
              summary="Samples will be kept for future research in dermatomyositis.")
    assert subtypes(s) == []


@pytest.mark.parametrize("summary", [
    "Patients with inclusion body myositis are excluded.",
    "IBM patients are not eligible.",
    "Adults with myositis, excluding inclusion body myositis, are enrolled.",
    "Adults with myositis other than IBM are enrolled.",
    "Adults with non-IBM myositis are enrolled.",
])
def test_a_summary_that_rules_ibm_out_does_not_tag_ibm(summary: str) -> None:
    s = about(["Myositis"], summary=summary)
    assert "ibm" not in subtypes(s)
    assert "iim" in subtypes(s)


def test_a_summary_that_rules_ibm_in_tags_ibm() -> None:
    s = about(["Myositis"], summary="Patients with inclusion body myositis are enrolled.")
    assert subtypes(s) == ["ibm", "iim"]


def test_non_ibm_does_not_count_as_ibm() -> None:
    assert subtypes(about(["Myositis"], ["non-IBM"])) == ["iim"]
    assert subtypes(about(["Non-inclusion body myositis"])) == []


def test_non_ibm_myositis_is_still_myositis() -> None:
    # "non-" negates the word it is attached to, not the rest of the phrase.
    assert subtypes(about(["Non-IBM Myositis"])) == ["iim"]
    assert subtypes(about(["Non-severe Dermatomyositis"])) == ["dermatomyositis"]


# --- abbreviations ----------------------------------------------------------------------------

@pytest.mark.parametrize(("abbreviation", "tag"), [
    ("DM", "dermatomyositis"), ("PM", "polymyositis"), ("IBM", "ibm"), ("IMNM", "imnm"),
    ("ASS", "ass"), ("JDM", "jdm"),
])
def test_abbreviation_counts_in_a_myositis_study(abbreviation: str, tag: str) -> None:
    s = about(["Myositis"], [abbreviation])
    assert subtypes(s) == sorted([tag, "iim"], key=list(VOCABULARY.subtypes).index)
    assert ("keywords", abbreviation) in evidence(s, tag)


def test_dm_and_ibm_keywords_tag_both_in_a_myositis_study() -> None:
    assert subtypes(about(["Myositis"], ["DM", "IBM"])) == ["dermatomyositis", "ibm", "iim"]


def test_myositis_mesh_ancestor_alone_is_enough_context_for_an_abbreviation() -> None:
    s = about(["Muscle Weakness"], ["DM"], ancestors=MYOSITIS_ANCESTORS)
    assert subtypes(s) == ["dermatomyositis"]


def test_dm_in_a_diabetes_study_tags_nothing() -> None:
    s = about(["Type 2 Diabetes"], ["DM", "T2DM", "insulin"],
              title="Glucose Control in Type 2 Diabetes (DM)",
              summary="Adults with DM on metformin.",
              meshes=[{"id": "D003924", "term": "Diabetes Mellitus, Type 2"}],
              ancestors=[{"id": "D003920", "term": "Diabetes Mellitus"},
                         {"id": "D044882", "term": "Glucose Metabolism Disorders"}])
    assert subtypes(s) == []


@pytest.mark.parametrize("keyword", ["dm", "ass", "ibm", "Dm", "jdm"])
def test_abbreviations_are_case_sensitive(keyword: str) -> None:
    assert subtypes(about(["Myositis"], [keyword])) == ["iim"]


# --- tags that need myositis context ----------------------------------------------------------

def test_interstitial_lung_disease_alone_is_not_tagged() -> None:
    s = about(["Interstitial Lung Disease"], ["ILD", "pulmonary fibrosis"],
              title="Nintedanib in Interstitial Lung Disease",
              meshes=[{"id": "D017563", "term": "Lung Diseases, Interstitial"}],
              ancestors=[{"id": "D008171", "term": "Lung Diseases"},
                         {"id": "D012140", "term": "Respiratory Tract Diseases"}])
    assert subtypes(s) == []


def test_anti_mda5_dermatomyositis_with_ild_is_dermatomyositis_and_ild() -> None:
    s = about(["Anti-MDA5 Dermatomyositis", "Rapidly Progressive Interstitial Lung Disease"])
    assert subtypes(s) == ["dermatomyositis", "ild"]
    assert evidence(s, "ild") == [("conditions", "anti mda5"),
                                  ("conditions", "rapidly progressive interstitial lung disease")]


def test_overlap_syndrome_counts_in_a_myositis_study() -> None:
    s = about(["Myositis", "Overlap Syndrome"], ["scleromyositis"])
    assert subtypes(s) == ["overlap", "iim"]


def test_overlap_syndrome_without_myositis_is_not_tagged() -> None:
    s = about(["Overlap Syndrome", "Systemic Lupus Erythematosus", "Systemic Sclerosis"],
              meshes=[{"id": "D008180", "term": "Lupus Erythematosus, Systemic"},
                      {"id": "D012595", "term": "Scleroderma, Systemic"}])
    assert subtypes(s) == []


@pytest.mark.parametrize("words", ["Immune Checkpoint Inhibitor Myositis", "ICI-myositis",
                                   "Checkpoint Inhibitor-Induced Myositis"])
def test_checkpoint_inhibitor_myositis_is_icim_not_general_myositis(words: str) -> None:
    assert subtypes(about([words, "Melanoma"])) == ["icim"]


def test_multi_disease_trial_is_tagged_with_its_myositis_part_only() -> None:
    s = about(["Dermatomyositis", "Systemic Lupus Erythematosus", "Systemic Sclerosis"],
              ["SLE", "SSc", "CAR-T"], title="CD19 CAR-T Cells in Refractory Autoimmune Disease",
              meshes=[DERMATOMYOSITIS,
                      {"id": "D008180", "term": "Lupus Erythematosus, Systemic"},
                      {"id": "D012595", "term": "Scleroderma, Systemic"}],
              ancestors=MYOSITIS_ANCESTORS)
    assert subtypes(s) == ["dermatomyositis"]


def test_a_negation_does_not_reach_past_a_comma() -> None:
    s = about(["Myositis"], summary="Unlike polymyositis, dermatomyositis affects the skin.")
    assert subtypes(s) == ["dermatomyositis", "iim"]



def test_no_treatment_in_a_title_does_not_negate_the_disease() -> None:
    s = about(["Muscle weakness"], title="IVIG Versus No Treatment in Dermatomyositis")
    assert subtypes(s) == ["dermatomyositis"]



def test_a_myositis_word_in_a_condition_is_context_enough() -> None:
    assert subtypes(about(["Overlap Myositis"])) == ["overlap"]



def test_mesh_names_a_subtype_beside_general_myositis_words() -> None:
    s = about(["Myositis"], meshes=[DERMATOMYOSITIS])
    assert subtypes(s) == ["dermatomyositis", "iim"]


# --- evidence ---------------------------------------------------------------------------------

def test_each_subtype_records_the_words_that_matched_and_where() -> None:
    assert evidence(load_study(JDM_REGISTRY), "jdm") == [
        ("conditions", "juvenile dermatomyositis"),
        ("title", "juvenile dermatomyositis"),
        ("official title", "juvenile dermatomyositis"),
        ("keywords", "JDM"),
    ]
    assert ("MeSH", "D018979 Myositis, Inclusion Body") in evidence(
        load_study(ARIMOCLOMOL_IBM), "ibm")


def test_evidence_is_listed_once_per_source_and_words() -> None:
    s = about(["Dermatomyositis", "dermatomyositis"], acronym="DM-TOFA")
    ev = evidence(s, "dermatomyositis")
    assert ev.count(("conditions", "dermatomyositis")) == 1
    assert ("acronym", "DM") in ev


# --- cause 1: myositis that is not an inflammatory myopathy -----------------------------------

@pytest.mark.parametrize(("conditions", "title", "words"), [
    (["Influenza", "Influenza-associated Myositis"], "Calf Pain in Children With Influenza",
     "influenza associated myositis"),
    (["Benign Acute Childhood Myositis"], "Creatine Kinase in Children With Calf Pain",
     "benign acute childhood myositis"),
    (["Viral Myositis"], "Muscle Pain After a Viral Illness", "viral myositis"),
    (["COVID-19", "Myositis"], "Myositis Due to COVID-19 in Hospitalised Adults",
     "myositis due to covid19"),
    (["Pyomyositis"], "Antibiotic Duration in Tropical Pyomyositis", "pyomyositis"),
    (["Myositis Ossificans"], "Indomethacin After Thigh Contusion", "myositis ossificans"),
    (["Fibrodysplasia Ossificans Progressiva"], "Palovarotene in FOP",
     "fibrodysplasia ossificans progressiva"),
    (["Orbital Myositis"], "Steroids in Idiopathic Orbital Inflammation", "orbital myositis"),
    (["Eosinophilic Myositis"], "Mepolizumab in Eosinophilic Disease", "eosinophilic myositis"),
    (["Eosinophilic Fasciitis"], "Sirolimus in Eosinophilic Fasciitis", "eosinophilic fasciitis"),
    (["Statin Myopathy"], "Coenzyme Q10 for Statin Myalgia", "statin myopathy"),
    (["Statin-associated Muscle Symptoms"], "Rechallenge After Statin Intolerance",
     "statin associated muscle symptoms"),
    (["Myositis"], "Drug-induced Myopathy in Older Adults", "drug induced myopathy"),
])
def test_a_study_whose_only_myositis_is_a_look_alike_gets_no_subtype(
        conditions: list[str], title: str, words: str) -> None:
    # The registry files such studies under Myositis, so its MeSH terms say so too.
    s = about(conditions, title=title, meshes=[MYOSITIS], ancestors=MYOSITIS_ANCESTORS)
    assert subtypes(s) == []
    assert words in [text for _, text in look_alikes(s)]


def test_a_look_alikes_mesh_term_names_no_subtype() -> None:
    s = about(["Eosinophilic Polymyositis"],
              meshes=[{"id": "D017285", "term": "Polymyositis"}], ancestors=MYOSITIS_ANCESTORS)
    assert subtypes(s) == []


def test_a_look_alikes_words_are_never_read_as_general_myositis() -> None:
    s = about(["Myositis Ossificans"], ["DM", "myositis ossificans"],
              meshes=[{"id": "D009221", "term": "Myositis Ossificans"}],
              ancestors=MYOSITIS_ANCESTORS)
    assert subtypes(s) == []  # nor is the keyword DM read, with no myositis to give context
    assert look_alikes(s) == [("conditions", "myositis ossificans"),
                              ("keywords", "myositis ossificans"),
                              ("MeSH", "myositis ossificans")]


def test_a_bare_myositis_condition_is_read_as_the_look_alike_the_title_names() -> None:
    s = about(["Myositis"], title="Oseltamivir in Children With Influenza-Associated Myositis")
    assert subtypes(s) == []


def test_a_myositis_trial_that_names_a_look_alike_keeps_its_subtypes() -> None:
    s = about(["Dermatomyositis", "Myositis", "Statin Myopathy"])
    assert subtypes(s) == ["dermatomyositis", "iim"]
    assert look_alikes(s) == [("conditions", "statin myopathy")]


@pytest.mark.parametrize("words", ["Statin-associated Autoimmune Necrotizing Myopathy",
                                   "Anti-HMGCR Myopathy", "Necrotizing Myopathy Due to Statins"])
def test_statin_associated_autoimmune_myopathy_is_imnm_not_a_look_alike(words: str) -> None:
    assert subtypes(about([words])) == ["imnm"]


@pytest.mark.parametrize("title", [
    "Abatacept for Immune Checkpoint Inhibitor-Induced Myositis",
    "Myositis After PD-1 Inhibitor Therapy",
    "Ruxolitinib in ICI-related Myocarditis and Myositis",
])
def test_checkpoint_inhibitor_myositis_is_its_own_subtype_and_not_iim(title: str) -> None:
    s = about(["Myositis", "Melanoma"], title=title, meshes=[MYOSITIS])
    assert subtypes(s) == ["icim"]


# --- cause 2: how registrants write -------------------------------------------------------------

@pytest.mark.parametrize(("conditions", "expected"), [
    (["Childhood Myositis"], ["jdm"]),
    (["Paediatric Dermatomyositis"], ["jdm"]),
    (["Pediatric Idiopathic Inflammatory Myopathies"], ["jdm"]),
    (["Juvenile-onset Dermatomyositis"], ["jdm"]),
    (["Adult and Juvenile Dermatomyositis"], ["dermatomyositis", "jdm"]),
    (["Hypomyopathic Dermatomyositis"], ["cadm"]),
    (["Clinically Amyopathic DM"], ["cadm"]),
    (["Necrotising Autoimmune Myopathy"], ["imnm"]),
    (["Anti-SRP Antibody"], ["imnm"]),
    (["Anti-synthetase Antibody"], ["ass"]),
    (["Anti-PL-12 Antibody Positive Interstitial Lung Disease"], ["ass", "ild"]),
    (["Anti-Jo-1 Antibody"], ["ass"]),
    (["Paraneoplastic Dermatomyositis"], ["dermatomyositis", "cam"]),
    (["Malignancy-associated Myositis"], ["cam"]),
    (["Myositis Associated With Cancer"], ["cam"]),
    (["Scleromyositis"], ["overlap"]),
    (["Myositis Overlap Syndrome"], ["overlap"]),
    (["Immune Checkpoint Inhibitor-related Myositis"], ["icim"]),
    (["irAE Myositis"], ["icim"]),
    (["Anti-MDA5 Antibody-positive Rapidly Progressive Interstitial Lung Disease"], ["ild"]),
    (["Dermatomyositis-associated Interstitial Lung Disease"], ["dermatomyositis", "ild"]),
    (["Myopathy, Inflammatory"], ["iim"]),
    (["Inflammatory Myopathy"], ["iim"]),
])
def test_the_vocabulary_knows_how_registrants_write_each_subtype(
        conditions: list[str], expected: list[str]) -> None:
    assert subtypes(about(conditions)) == expected


@pytest.mark.parametrize(("std_ages", "expected"), [
    (["CHILD"], ["jdm"]),
    (["CHILD", "ADULT"], ["dermatomyositis"]),
    (["ADULT", "OLDER_ADULT"], ["dermatomyositis"]),
])
def test_dermatomyositis_in_a_study_open_to_children_only_is_juvenile(
        std_ages: list[str], expected: list[str]) -> None:
    s = about(["Dermatomyositis"], meshes=[DERMATOMYOSITIS])
    s["protocolSection"]["eligibilityModule"]["stdAges"] = std_ages
    assert subtypes(s) == expected
    if expected == ["jdm"]:
        assert evidence(s, "jdm")[-1] == ("ages", "open to children only")


def test_an_antibody_marker_is_not_cancer() -> None:
    assert subtypes(about(["Cancer-Associated Myositis"])) == ["cam"]
    assert subtypes(about(["Dermatomyositis"], ["anti-TIF1-gamma"])) == ["dermatomyositis"]


# --- cause 3: a condition or keyword that is an abbreviation alone -----------------------------

@pytest.mark.parametrize(("entry", "expected"), [
    ("JDM", ["jdm"]), ("sIBM", ["ibm"]), ("IMNM", ["imnm"]),
    ("DM-ILD", ["dermatomyositis", "ild"]), ("anti-ARS", ["ass"]), ("Anti-ARS", ["ass"]),
])
def test_a_specific_abbreviation_as_a_whole_condition_or_keyword_counts_alone(
        entry: str, expected: list[str]) -> None:
    assert subtypes(about([entry])) == expected
    assert subtypes(about(["Rare Diseases"], [entry])) == expected
    assert evidence(about([entry]), expected[0]) == [("conditions", entry)]


def test_an_abbreviation_in_free_text_still_needs_myositis_context() -> None:
    assert subtypes(about(["Muscle Weakness"], title="Arimoclomol in sIBM")) == []
    s = about(["Muscle Weakness"], title="Arimoclomol in sIBM", ancestors=MYOSITIS_ANCESTORS)
    assert subtypes(s) == ["ibm"]


# --- cause 4: an abbreviation read inside its phrase -------------------------------------------

@pytest.mark.parametrize("keyword", ["anti-PM/Scl", "PM-Scl antibody", "anti-PM-Scl75"])
def test_an_antibody_named_with_pm_is_not_polymyositis(keyword: str) -> None:
    assert subtypes(about(["Myositis"], [keyword])) == ["overlap", "iim"]


@pytest.mark.parametrize("title", [
    "Exercise in Myositis Patients With Type 2 DM",
    "Glucose Control (DM) and Muscle Strength in Myositis",
    "Diabetic Myopathy and DM Control in Myositis",
    "Myositis Patients With Myotonic Dystrophy (DM 1)",
])
def test_dm_beside_diabetes_words_or_a_number_is_not_dermatomyositis(title: str) -> None:
    assert subtypes(about(["Myositis"], title=title)) == ["iim"]


@pytest.mark.parametrize("title", [
    "Use of CAM (Complementary and Alternative Medicine) by Patients With Myositis",
    "Delirium (CAM-ICU) in Critically Ill Patients With Myositis",
])
def test_cam_as_complementary_medicine_or_a_delirium_score_is_not_cancer(title: str) -> None:
    assert subtypes(about(["Myositis"], title=title)) == ["iim"]


def test_an_abbreviation_that_means_the_disease_still_counts() -> None:
    s = about(["Myositis"], title="Cancer-associated Myositis (CAM) and Dermatomyositis (DM)")
    assert subtypes(s) == ["dermatomyositis", "cam", "iim"]
    assert ("title", "CAM") in evidence(s, "cam")


# --- cause 5: negation over the whole clause ---------------------------------------------------

@pytest.mark.parametrize("summary", [
    "Patients with inclusion body myositis or IMNM are not eligible.",
    "Patients with a diagnosis of inclusion body myositis, IMNM or juvenile myositis will be "
    "excluded.",
    "Adults with any myositis except inclusion body myositis, IMNM and JDM can take part.",
    "Excluding patients with a confirmed diagnosis of inclusion body myositis or IMNM.",
])
def test_a_subtype_ruled_out_anywhere_in_its_clause_does_not_count(summary: str) -> None:
    assert subtypes(about(["Myositis"], summary=summary)) == ["iim"]


@pytest.mark.parametrize(("conditions", "title", "expected"), [
    (["Dermatomyositis"], "Tofacitinib in Anti-MDA5-negative Dermatomyositis",
     ["dermatomyositis"]),
    (["Myositis"], "Rituximab in Anti-Jo-1 Negative Myositis", ["iim"]),
    (["Myositis"], "Myositis With Anti-synthetase Antibody Seronegative Disease", ["iim"]),
    (["Myositis"], "Myositis Negative for Anti-HMGCR and Anti-SRP", ["iim"]),
])
def test_antibody_negative_phrasing_does_not_tag_the_antibodys_subtype(
        conditions: list[str], title: str, expected: list[str]) -> None:
    assert subtypes(about(conditions, title=title)) == expected


def test_with_or_without_does_not_rule_out() -> None:
    s = about(["Dermatomyositis"],
              title="Tofacitinib in Dermatomyositis With or Without Interstitial Lung Disease")
    assert subtypes(s) == ["dermatomyositis", "ild"]


def test_a_subtype_enrolled_beside_one_excluded_still_counts() -> None:
    s = about(["Myositis"], summary="Patients with dermatomyositis are enrolled; those with "
                                    "inclusion body myositis are excluded.")
    assert subtypes(s) == ["dermatomyositis", "iim"]


# --- cause 6: keywords do not outvote the conditions and title ----------------------------------

def test_keywords_listing_every_myositis_word_do_not_add_subtypes() -> None:
    s = about(["Dermatomyositis"], ["myositis", "polymyositis", "inclusion body myositis", "IBM",
                                    "JDM", "ILD", "IMNM", "antisynthetase syndrome"],
              title="Tofacitinib in Refractory Dermatomyositis")
    assert subtypes(s) == ["dermatomyositis"]


def test_keywords_back_up_a_subtype_the_conditions_name() -> None:
    s = about(["Dermatomyositis"], ["dermatomyositis", "DM"])
    assert evidence(s, "dermatomyositis") == [
        ("conditions", "dermatomyositis"), ("keywords", "dermatomyositis"), ("keywords", "DM")]


def test_an_abbreviation_in_the_title_names_a_subtype_that_keywords_do_not_outvote() -> None:
    s = about(["Myositis"], ["dermatomyositis", "polymyositis", "IBM"], title="Tofacitinib in DM")
    assert subtypes(s) == ["dermatomyositis", "iim"]


def test_keywords_speak_when_the_conditions_and_title_name_no_subtype() -> None:
    assert subtypes(about(["Rare Diseases"], ["dermatomyositis"])) == ["dermatomyositis"]
    assert subtypes(about(["Myositis"], ["IBM", "sIBM"])) == ["ibm", "iim"]


# --- the tracked query --------------------------------------------------------------------------

def essie_terms(query: str) -> list[list[str]]:
    """The OR-ed terms of a query.cond, each as its words: how the registry's search reads a
    phrase (hyphens and commas separate words; case does not count)."""
    assert re.search(r"\b(AND|NOT)\b", query) is None  # look-alikes are told apart by tags
    return [re.findall(r"[a-z0-9]+", term.lower()) for term in query.split(" OR ")]


def reached(query: str, text: str) -> bool:
    """Whether some term of `query` is found in `text`, its words side by side."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return any(words[i:i + len(term)] == term
               for term in essie_terms(query) for i in range(len(words)))


@pytest.mark.parametrize("condition", [
    "Necrotizing Myopathy", "Necrotising Autoimmune Myopathy", "Inflammatory Myopathy",
    "Myopathy, Inflammatory", "JDM", "sIBM", "IMNM", "Anti-MDA5 Antibody-positive ILD",
    "Anti-synthetase Antibody", "Antisynthetase Syndrome", "anti-ARS", "Anti-Jo-1",
    "Anti-HMGCR Myopathy", "Anti-SRP", "DM-ILD", "Juvenile Dermatomyositis", "Polymyositis",
    "Inclusion Body Myositis", "Scleromyositis", "irMyositis", "Cancer-associated Myositis",
    "Immune Checkpoint Inhibitor Myositis", "Clinically Amyopathic Dermatomyositis", "CADM",
])
def test_the_default_query_reaches_every_subtypes_wording(condition: str) -> None:
    assert reached(DEFAULT_QUERY, condition)


def test_the_default_query_reaches_at_least_one_term_of_every_subtype() -> None:
    for name, tag in VOCABULARY.subtypes.items():
        words = [*tag.terms, *tag.standalone]
        assert any(reached(DEFAULT_QUERY, w) for w in words), name


# --- tracker show -------------------------------------------------------------------------------

def row(s: Study) -> StudyRow:
    """The study as a sync stores it."""
    return StudyRow(**summarise(s), **columns(TAGGER.tag(s), s), content_hash="x",
                    first_seen_at=NOW, last_changed_at=NOW)


def shown(s: Study) -> dict[str, str]:
    return dict(study_lines(row(s), VOCABULARY, date(2026, 11, 22)))


def test_show_says_which_words_were_not_counted_as_myositis_and_why() -> None:
    lines = shown(about(["Influenza", "Myositis"],
                        title="Oseltamivir in Influenza-Associated Myositis"))
    assert lines["Subtypes"] == "none recognised"
    assert lines["Not counted as myositis"] == (
        "'influenza associated myositis' in title "
        "(an infection, not an inflammatory myopathy)")
    assert lines["Patients told"].startswith("no: no kind of myositis recognised")


def test_show_explains_every_tag_beside_the_look_alikes() -> None:
    lines = shown(about(["Dermatomyositis", "Statin Myopathy"]))
    assert lines["Subtypes"] == 'Dermatomyositis [dermatomyositis] (matched "dermatomyositis" ' \
        'in conditions)'
    assert lines["Not counted as myositis"] == (
        "'statin myopathy' in conditions "
        "(a side effect of a drug or toxin, not an autoimmune myopathy)")
    assert "Patients told" not in lines


def test_a_study_with_no_look_alike_keeps_the_evidence_it_always_had() -> None:
    s = load_study(JDM_REGISTRY)
    recorded = json.loads(columns(TAGGER.tag(s), s)["tag_evidence"])
    assert set(recorded) == {"subtypes", "therapies"}


# --- re-tagging after a vocabulary change ---------------------------------------------------------

FOCAL = """
[not_myositis.focal]
label = "a focal lesion of one muscle, not an inflammatory myopathy"
terms = ["focal myositis"]
explains_myositis = true
"""


def focal_myositis_trial() -> Study:
    s = about(["Focal Myositis"], title="Focal Myositis of the Calf: an Observational Study",
              meshes=[MYOSITIS], ancestors=MYOSITIS_ANCESTORS)
    s["protocolSection"]["identificationModule"]["nctId"] = "NCT09000001"
    return s


def test_a_vocabulary_change_makes_a_study_a_look_alike(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.toml"
    path.write_text(FOCAL)
    assert subtypes(focal_myositis_trial()) == ["iim"]
    assert subtypes(focal_myositis_trial(), Tagger(load_vocabulary(path))) == []


def subscriber(**preferences: Any) -> Subscriber:
    return Subscriber(id=1, email="pat@example.org", created_at=NOW,
                      **Preferences(**preferences).columns())


def test_a_study_that_becomes_not_myositis_keeps_its_history_and_is_no_longer_announced(
        settings: Settings, store: Store, client: CtGovClient, registry: Registry,
        tmp_path: Path) -> None:
    trial = focal_myositis_trial()
    registry.put(trial)
    sync(settings, store, client)
    moved = updated(trial)
    moved["protocolSection"]["statusModule"]["overallStatus"] = "ACTIVE_NOT_RECRUITING"
    registry.put(moved)
    registry.data_timestamp = (datetime.fromisoformat(registry.data_timestamp)
                               + timedelta(days=1)).isoformat()
    sync(settings, store, client)
    events = store.changes(nct_id="NCT09000001")
    before = store.study("NCT09000001")
    assert before is not None and before.subtypes == "iim" and events
    assert all(wants(subscriber(changes="all"), before, e) for e in events)
    path = tmp_path / "vocabulary.toml"
    path.write_text(FOCAL)

    assert refresh_derived(store, Tagger(load_vocabulary(path))) == len(registry.studies)

    after = store.study("NCT09000001")
    assert after is not None and after.subtypes is None
    assert json.loads(after.tag_evidence or "{}")["not_myositis"][0][:2] == [
        "conditions", "focal myositis"]
    assert store.version_count("NCT09000001") == 2
    assert store.changes(nct_id="NCT09000001") == events
    assert not any(wants(subscriber(changes="all"), after, e) for e in events)
    assert plan(subscriber(changes="all"), events, {"NCT09000001": after}) is None
    operator = plan_operator("operator", events, {"NCT09000001": after})
    assert operator is not None and operator.change_count == len(events)
    listed = {s.nct_id for s in store.iter_studies(where=StudyFilter(myositis_only=True))}
    assert "NCT09000001" not in listed and len(listed) == len(registry.studies) - 1


def test_an_overlap_antibody_alone_is_not_overlap_myositis() -> None:
    lupus = about(["Systemic Lupus Erythematosus"], ["anti-Ku", "anti-PM/Scl antibodies"],
                  title="Hydroxychloroquine Levels in Lupus With Anti-Ku Antibodies")
    assert subtypes(lupus) == []
    myositis = about(["Myositis"], ["anti-PM/Scl antibodies"],
                     title="Outcomes of Myositis With Anti-PM/Scl Antibodies")
    assert "overlap" in subtypes(myositis)


def test_necrotizing_myositis_without_an_immune_cause_is_the_infection() -> None:
    infection = about(["Necrotizing Myositis", "Group A Streptococcal Infections"],
                      title="Clindamycin in Streptococcal Necrotizing Myositis")
    assert subtypes(infection) == []
    assert TAGGER.tag(infection).not_myositis
    autoimmune = about(["Immune-mediated Necrotizing Myositis"])
    assert subtypes(autoimmune) == ["imnm"]
