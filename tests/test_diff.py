"""Specification of `tracker.diff`: what counts as a change, how it reads, and what is noise.

Every "after" version is a real (myositis-edited) record from tests/data/studies/ moved on by
`updated()` (the sponsor posted an update) and then edited the way the registry would show the
sponsor's edit. Field names and shapes are the API's own, copied from those records.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import all_studies, load_study, updated
from tests.records import module, pair, sites, status_module, without_results
from tracker.diff import KINDS, Change, diff, new_study, removed_study
from tracker.record import content_hash, summarise, without_noise

Study = dict[str, Any]

REAL_STUDIES = Path(__file__).resolve().parent / "data" / "real"

RECRUITING = "NCT04078230"  # 13 sites, central contact, no collaborators
NOT_YET_RECRUITING = "NCT07725679"
WITH_RESULTS = "NCT02803307"
TERMINATED = "NCT00987428"
OBSERVATIONAL = "NCT02248896"  # no phases, no locations
UNKNOWN_STATUS = "NCT00874328"  # overallStatus UNKNOWN + lastKnownStatus, partial dates
RESULTS_AND_SITES = "NCT02210780"  # results, 42 sites without facility names

# A real French site, in the API's location shape.
LYON = {
    "facility": "Hôpital Edouard Herriot",
    "status": "RECRUITING",
    "city": "Lyon",
    "zip": "69003",
    "country": "France",
    "geoPoint": {"lat": 45.74846, "lon": 4.84671},
}


# --- helpers for editing copies of real records ---------------------------------------------











def of_kind(changes: list[Change], kind: str) -> list[Change]:
    return [c for c in changes if c.kind == kind]


def one(changes: list[Change], kind: str) -> Change:
    """The single change of `kind`; fails if there are none or several."""
    found = of_kind(changes, kind)
    assert len(found) == 1, f"expected exactly one {kind!r} change, got {changes}"
    return found[0]


def summaries(changes: list[Change]) -> list[str]:
    return [c.summary for c in changes]


# --- noise is not change ----------------------------------------------------------------------

@pytest.mark.parametrize("nct_id", sorted(all_studies()))
def test_identical_records_yield_no_changes(nct_id: str) -> None:
    study = load_study(nct_id)
    assert diff(study, copy.deepcopy(study)) == []


@pytest.mark.parametrize("nct_id", sorted(all_studies()))
def test_moved_last_update_post_date_alone_is_not_a_change(nct_id: str) -> None:
    old, new = pair(nct_id)
    assert diff(old, new) == []


def test_only_version_holder_differs_yields_no_changes() -> None:
    old = load_study(RECRUITING)
    new = copy.deepcopy(old)
    new["derivedSection"]["miscInfoModule"]["versionHolder"] = "2026-11-21"
    assert diff(old, new) == []


def test_version_holder_and_moved_date_alone_yield_no_changes() -> None:
    old, new = pair(RESULTS_AND_SITES)
    new["derivedSection"]["miscInfoModule"]["versionHolder"] = "2026-11-21"
    assert diff(old, new) == []


def test_content_change_without_moved_last_update_is_registry_reformatting() -> None:
    # What the Aug 2025 re-ingest did: markup re-escaped, geo points moved, no sponsor update.
    old = load_study(RECRUITING)
    new = copy.deepcopy(old)
    eligibility = module(new, "eligibilityModule")
    eligibility["eligibilityCriteria"] = eligibility["eligibilityCriteria"].replace("\\>", ">")
    for site in sites(new):
        if "geoPoint" in site:
            site["geoPoint"]["lat"] = round(site["geoPoint"]["lat"] + 0.001, 5)
    status_module(new)["overallStatus"] = "ACTIVE_NOT_RECRUITING"
    assert new != old
    assert diff(old, new) == []


def test_derived_mesh_changes_are_not_changes_even_when_the_date_moved() -> None:
    old, new = pair(RESULTS_AND_SITES)
    derived = new["derivedSection"]
    derived["conditionBrowseModule"]["meshes"].append({"id": "D009220", "term": "Myositis"})
    derived["conditionBrowseModule"]["ancestors"].pop()
    derived["interventionBrowseModule"]["browseLeaves"][0]["relevance"] = "HIGH"
    assert diff(old, new) == []


def test_derived_section_edits_do_not_leak_into_a_real_change() -> None:
    old, new = pair(WITH_RESULTS)
    new["derivedSection"]["conditionBrowseModule"]["meshes"] = []
    status_module(new)["overallStatus"] = "TERMINATED"
    assert [c.kind for c in diff(old, new)] == ["status"]


# --- status -------------------------------------------------------------------------------------

def test_status_change_reads_old_and_new_labels() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "ACTIVE_NOT_RECRUITING"
    change = one(diff(old, new), "status")
    assert change.field == "overallStatus"
    assert (change.old, change.new) == ("RECRUITING", "ACTIVE_NOT_RECRUITING")
    assert change.summary == "Status: Recruiting -> Active, not recruiting"


def test_status_change_is_reported_once() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    status_module(new)["overallStatus"] = "RECRUITING"
    assert diff(old, new) == [
        Change("status", "overallStatus", "NOT_YET_RECRUITING", "RECRUITING",
               "Status: Not yet recruiting -> Recruiting"),
    ]


def test_stopping_a_trial_puts_why_stopped_in_the_one_status_change() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = "Sponsor decision: slow enrollment"
    changes = diff(old, new)
    assert changes == [
        Change("status", "overallStatus", "RECRUITING", "TERMINATED",
               "Status: Recruiting -> Terminated (why stopped: Sponsor decision: slow enrollment)"),
    ]


def test_why_stopped_edit_alone_is_a_status_change() -> None:
    old, new = pair(TERMINATED)
    status_module(new)["whyStopped"] = "Insufficient number of participants after 2 years"
    change = one(diff(old, new), "status")
    assert change.field == "whyStopped"
    assert change.old == "Insufficient number of participants"
    assert change.summary == "Why stopped: Insufficient number of participants after 2 years"


def test_long_why_stopped_is_shortened_in_the_summary_but_kept_whole_in_new() -> None:
    old, new = pair(TERMINATED)
    reason = "The sponsor stopped the study because " + "enrollment was slower than planned " * 5
    status_module(new)["whyStopped"] = reason
    change = one(diff(old, new), "status")
    assert change.new == reason
    assert change.summary.endswith("…")
    assert len(change.summary) == len("Why stopped: ") + 100


def test_resuming_a_stopped_trial_does_not_report_the_dropped_reason() -> None:
    old, new = pair(TERMINATED)
    status_module(new)["overallStatus"] = "RECRUITING"
    del status_module(new)["whyStopped"]
    assert diff(old, new) == [
        Change("status", "overallStatus", "TERMINATED", "RECRUITING",
               "Status: Terminated -> Recruiting"),
    ]


def test_last_known_status_change_reads_old_and_new_labels() -> None:
    old, new = pair(UNKNOWN_STATUS)
    status_module(new)["lastKnownStatus"] = "ACTIVE_NOT_RECRUITING"
    change = one(diff(old, new), "status")
    assert change.field == "lastKnownStatus"
    assert (change.old, change.new) == ("RECRUITING", "ACTIVE_NOT_RECRUITING")
    assert change.summary == "Last known status: Recruiting -> Active, not recruiting"


def test_leaving_unknown_status_is_one_status_change() -> None:
    # lastKnownStatus exists only while overallStatus is UNKNOWN, so it goes with the update.
    old, new = pair(UNKNOWN_STATUS)
    status_module(new)["overallStatus"] = "COMPLETED"
    del status_module(new)["lastKnownStatus"]
    change = one(diff(old, new), "status")
    assert change.field == "overallStatus"
    assert change.summary == "Status: Unknown status -> Completed"


def test_entering_unknown_status_is_one_status_change() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "UNKNOWN"
    status_module(new)["lastKnownStatus"] = "RECRUITING"
    change = one(diff(old, new), "status")
    assert change.summary == "Status: Recruiting -> Unknown status"


def test_entering_unknown_status_names_a_different_last_known_status() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    status_module(new)["overallStatus"] = "UNKNOWN"
    status_module(new)["lastKnownStatus"] = "RECRUITING"
    change = one(diff(old, new), "status")
    assert change.summary == "Status: Not yet recruiting -> Unknown status (last known: Recruiting)"


def test_site_status_change_names_the_site_and_both_statuses() -> None:
    old, new = pair(RECRUITING)
    sites(new)[0]["status"] = "ACTIVE_NOT_RECRUITING"
    change = one(diff(old, new), "status")
    assert change.field == "locations.status"
    assert (change.old["status"], change.new["status"]) == ("RECRUITING",
                                                            "ACTIVE_NOT_RECRUITING")
    assert change.new["facility"] == "The Johns Hopkins Hospital"
    assert change.summary == ("Site Baltimore, United States (The Johns Hopkins Hospital): "
                              "Recruiting -> Active, not recruiting")


def test_site_status_change_is_the_only_change() -> None:
    old, new = pair(RECRUITING)
    sites(new)[4]["status"] = "COMPLETED"
    assert [c.kind for c in diff(old, new)] == ["status"]


def test_site_gaining_a_status_reads_from_no_status() -> None:
    old, new = pair(TERMINATED)  # its one site has no status
    sites(new)[0]["status"] = "RECRUITING"
    change = one(diff(old, new), "status")
    assert change.summary == "Site Paris, France (Hopital Cochin): No status -> Recruiting"


# --- results ------------------------------------------------------------------------------------

@pytest.mark.parametrize("nct_id", [WITH_RESULTS, RESULTS_AND_SITES])
def test_results_appearing_is_one_results_posted_change(nct_id: str) -> None:
    new = load_study(nct_id)
    old = without_results(new)
    posted = status_module(new)["resultsFirstPostDateStruct"]["date"]
    assert diff(old, new) == [
        Change("results_posted", "resultsSection", None, posted, f"Results posted on {posted}"),
    ]


def test_has_results_flipping_alone_is_results_posted() -> None:
    # A record whose results section is not in the payload still says hasResults.
    new = load_study(WITH_RESULTS)
    del new["resultsSection"]
    old = without_results(load_study(WITH_RESULTS))
    change = one(diff(old, new), "results_posted")
    assert change.summary == "Results posted on 2022-05-06"


def test_results_posted_without_a_first_post_date_gives_no_date() -> None:
    new = load_study(WITH_RESULTS)
    old = without_results(new)
    del status_module(new)["resultsFirstPostDateStruct"]
    assert one(diff(old, new), "results_posted").summary == "Results posted"


def test_edited_results_are_an_other_change_not_a_new_posting() -> None:
    old, new = pair(RESULTS_AND_SITES)
    new["resultsSection"]["moreInfoModule"]["pointOfContact"]["phone"] = "844-734-6644"
    assert diff(old, new) == [
        Change("other", "resultsSection", None, None, "Results updated (moreInfoModule)"),
    ]


# --- sites --------------------------------------------------------------------------------------

def test_added_site_reads_city_country_and_facility() -> None:
    old, new = pair(RECRUITING)
    sites(new).append(copy.deepcopy(LYON))
    change = one(diff(old, new), "site_added")
    assert change.summary == "New site: Lyon, France (Hôpital Edouard Herriot)"
    assert change.old is None
    assert change.new == {k: v for k, v in LYON.items() if k != "zip"}


def test_removed_site_reads_city_country_and_facility() -> None:
    old, new = pair(RECRUITING)
    del sites(new)[0]
    changes = diff(old, new)
    assert len(changes) == 1
    change = one(changes, "site_removed")
    assert change.summary == "Site removed: Baltimore, United States (The Johns Hopkins Hospital)"
    assert change.new is None
    assert change.old["facility"] == "The Johns Hopkins Hospital"


def test_removed_site_without_facility_reads_city_and_country() -> None:
    old, new = pair(RESULTS_AND_SITES)
    del sites(new)[0]
    assert summaries(diff(old, new)) == ["Site removed: Birmingham, United States"]


def test_reordered_sites_are_not_a_change() -> None:
    old, new = pair(RESULTS_AND_SITES)
    sites(new).reverse()
    assert diff(old, new) == []


def test_site_identity_ignores_case_and_spacing() -> None:
    old, new = pair(RECRUITING)
    sites(new)[0]["country"] = "United States "  # the API has such a value
    sites(new)[0]["city"] = "BALTIMORE"
    changes = diff(old, new)
    assert of_kind(changes, "site_added") == []
    assert of_kind(changes, "site_removed") == []
    assert summaries(changes) == [
        "Site details updated (city, country): BALTIMORE, United States "
        "(The Johns Hopkins Hospital)",
    ]


def test_renamed_facility_is_a_removed_and_an_added_site() -> None:
    old, new = pair(WITH_RESULTS)
    sites(new)[0]["facility"] = "Mackay Children's Hospital"
    changes = diff(old, new)
    assert sorted(c.kind for c in changes) == ["site_added", "site_removed"]
    assert one(changes, "site_added").summary == (
        "New site: Taipei, Taiwan (Mackay Children's Hospital)")


def test_site_contacts_change_is_a_contacts_change() -> None:
    old, new = pair(RECRUITING)
    sites(new)[1]["contacts"] = [{"name": "Guochao Zhang, MD", "role": "CONTACT"}]
    change = one(diff(old, new), "contacts")
    assert change.field == "locations.contacts"
    assert (change.old, change.new) == (["Zhiying Yang, MD"], ["Guochao Zhang, MD"])
    assert change.summary == (
        "Site contacts changed: Beijing, China (China-Japan Friendship Hospital)")


def test_site_zip_change_is_an_other_change() -> None:
    old, new = pair(RECRUITING)
    sites(new)[0]["zip"] = "21287"
    change = one(diff(old, new), "other")
    assert change.field == "locations"
    assert change.summary == ("Site details updated (zip): Baltimore, United States "
                              "(The Johns Hopkins Hospital)")
    assert change.new["facility"] == "The Johns Hopkins Hospital"


def test_first_sites_of_a_study_are_each_added() -> None:
    old, new = pair(NOT_YET_RECRUITING)  # no locations yet
    second = copy.deepcopy(LYON) | {"facility": "Hôpital de la Croix-Rousse",
                                    "zip": "69004", "status": "NOT_YET_RECRUITING"}
    module(new, "contactsLocationsModule")["locations"] = [copy.deepcopy(LYON), second]
    changes = diff(old, new)
    assert [c.kind for c in changes] == ["site_added", "site_added"]
    assert summaries(changes) == [
        "New site: Lyon, France (Hôpital de la Croix-Rousse)",
        "New site: Lyon, France (Hôpital Edouard Herriot)",
    ]


@pytest.fixture(scope="module")
def huge_study() -> Study:
    return json.loads((REAL_STUDIES / "NCT04267848.json").read_text())


def test_huge_record_has_its_1148_sites(huge_study: Study) -> None:
    assert len(sites(huge_study)) == 1148


def test_huge_record_one_site_swapped_is_one_removed_and_one_added(huge_study: Study) -> None:
    new = updated(huge_study)
    gone = sites(new).pop(500)
    sites(new).insert(10, copy.deepcopy(LYON))
    changes = diff(huge_study, new)
    assert [c.kind for c in changes] == ["site_added", "site_removed"]
    assert changes[0].summary == "New site: Lyon, France (Hôpital Edouard Herriot)"
    assert changes[1].summary == (
        f"Site removed: {gone['city']}, {gone['country']} ({gone['facility']})")


def test_huge_record_moved_date_alone_is_not_a_change(huge_study: Study) -> None:
    assert diff(huge_study, updated(huge_study)) == []


# --- enrollment ---------------------------------------------------------------------------------

def test_enrollment_change_reads_counts_and_types() -> None:
    old, new = pair(RECRUITING)
    module(new, "designModule")["enrollmentInfo"]["count"] = 200
    change = one(diff(old, new), "enrollment")
    assert change.old == {"count": 168, "type": "ESTIMATED"}
    assert change.new == {"count": 200, "type": "ESTIMATED"}
    assert change.summary == "Enrollment: 168 (estimated) -> 200 (estimated)"


def test_enrollment_becoming_actual_is_an_enrollment_change() -> None:
    old, new = pair(UNKNOWN_STATUS)
    module(new, "designModule")["enrollmentInfo"] = {"count": 61, "type": "ACTUAL"}
    assert summaries(diff(old, new)) == ["Enrollment: 74 (estimated) -> 61 (actual)"]


def test_enrollment_without_type_reads_the_count_alone() -> None:
    old, new = pair(TERMINATED)
    old_info = module(old, "designModule")["enrollmentInfo"]
    del old_info["type"]
    module(new, "designModule")["enrollmentInfo"] = {"count": 27, "type": "ACTUAL"}
    assert summaries(diff(old, new)) == ["Enrollment: 27 -> 27 (actual)"]


# --- dates --------------------------------------------------------------------------------------

def test_date_change_keeps_month_precision() -> None:
    old, new = pair(UNKNOWN_STATUS)
    status_module(old)["primaryCompletionDateStruct"]["date"] = "2026-03"
    status_module(new)["primaryCompletionDateStruct"]["date"] = "2026-11"
    change = one(diff(old, new), "dates")
    assert change.field == "primaryCompletionDateStruct"
    assert change.summary == "Primary completion 2026-03 -> 2026-11"
    assert change.old == {"date": "2026-03", "type": "ESTIMATED"}
    assert change.new == {"date": "2026-11", "type": "ESTIMATED"}


def test_month_precision_start_date_is_never_padded_to_a_day() -> None:
    old, new = pair(UNKNOWN_STATUS)
    status_module(new)["startDateStruct"] = {"date": "2008-11"}
    change = one(diff(old, new), "dates")
    assert change.summary == "Start 2008-10 -> 2008-11"
    assert "-01" not in change.summary


def test_day_precision_date_change_reads_full_dates() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    status_module(new)["startDateStruct"]["date"] = "2027-05-01"
    assert summaries(diff(old, new)) == ["Start 2027-02-01 -> 2027-05-01"]


def test_estimated_date_becoming_actual_shows_both_types() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["primaryCompletionDateStruct"] = {"date": "2027-10-15", "type": "ACTUAL"}
    change = one(diff(old, new), "dates")
    assert change.summary == "Primary completion 2027-12-31 (estimated) -> 2027-10-15 (actual)"


def test_date_type_flip_alone_is_a_dates_change() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["completionDateStruct"]["type"] = "ACTUAL"
    assert summaries(diff(old, new)) == [
        "Completion 2027-12-31 (estimated) -> 2027-12-31 (actual)",
    ]


def test_first_completion_date_reads_from_none() -> None:
    old, new = pair(OBSERVATIONAL)  # has no completionDateStruct
    status_module(new)["completionDateStruct"] = {"date": "2011-06", "type": "ACTUAL"}
    change = one(diff(old, new), "dates")
    assert change.old is None
    assert change.summary == "Completion none -> 2011-06 (actual)"


def test_each_moved_date_is_its_own_change_in_a_fixed_order() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["completionDateStruct"]["date"] = "2028-06-30"
    status_module(new)["primaryCompletionDateStruct"]["date"] = "2028-03-31"
    changes = diff(old, new)
    assert [c.field for c in changes] == ["primaryCompletionDateStruct", "completionDateStruct"]
    assert {c.kind for c in changes} == {"dates"}


# --- eligibility --------------------------------------------------------------------------------

def test_eligibility_criteria_text_change_is_reported_without_the_text() -> None:
    old, new = pair(RECRUITING)
    eligibility = module(new, "eligibilityModule")
    eligibility["eligibilityCriteria"] += "\n* Pregnant or breastfeeding women."
    change = one(diff(old, new), "eligibility")
    assert change.field == "eligibilityCriteria"
    assert change.summary == "Eligibility criteria changed"
    assert change.new == eligibility["eligibilityCriteria"]


def test_minimum_age_change_reads_both_ages() -> None:
    old, new = pair(RECRUITING)
    module(new, "eligibilityModule")["minimumAge"] = "16 Years"
    change = one(diff(old, new), "eligibility")
    assert change.field == "minimumAge"
    assert change.summary == "Minimum age: 18 Years -> 16 Years"


def test_minimum_age_change_is_reported_once_with_the_registry_age_groups() -> None:
    # The registry recomputes stdAges from the age limits: one sponsor edit, one change.
    old, new = pair(RECRUITING)
    eligibility = module(new, "eligibilityModule")
    eligibility["minimumAge"] = "12 Years"
    eligibility["stdAges"] = ["CHILD", "ADULT", "OLDER_ADULT"]
    assert summaries(diff(old, new)) == ["Minimum age: 18 Years -> 12 Years"]


def test_sex_and_healthy_volunteers_read_as_words() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    eligibility = module(new, "eligibilityModule")
    eligibility["sex"] = "ALL"
    eligibility["healthyVolunteers"] = False
    assert summaries(diff(old, new)) == ["Healthy volunteers: yes -> no", "Sex: Female -> All"]
    assert {c.kind for c in diff(old, new)} == {"eligibility"}


def test_maximum_age_removed_reads_none() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    del module(new, "eligibilityModule")["maximumAge"]
    assert summaries(diff(old, new)) == ["Maximum age: 29 Years -> none"]


def test_other_eligibility_fields_are_eligibility_changes_by_name() -> None:
    old, new = pair(OBSERVATIONAL)
    module(new, "eligibilityModule")["samplingMethod"] = "PROBABILITY_SAMPLE"
    change = one(diff(old, new), "eligibility")
    assert change.summary == "Eligibility changed: samplingMethod"


# --- interventions and arms ---------------------------------------------------------------------

def test_added_intervention_reads_type_and_name() -> None:
    old, new = pair(RECRUITING)
    module(new, "armsInterventionsModule")["interventions"].append({
        "type": "DIETARY_SUPPLEMENT", "name": "Vitamin D3",
        "description": "2000 IU daily", "armGroupLabels": ["Extend LymphAdenectomy"],
    })
    changes = of_kind(diff(old, new), "interventions")
    assert [c.summary for c in changes] == ["Intervention added: Dietary supplement: Vitamin D3"]
    assert changes[0].new["name"] == "Vitamin D3"


def test_removed_intervention_reads_type_and_name() -> None:
    old, new = pair(UNKNOWN_STATUS)
    arms = module(new, "armsInterventionsModule")
    arms["interventions"] = [i for i in arms["interventions"] if i["name"] != "Cyclophosphamide"]
    arms["armGroups"][0]["interventionNames"].remove("Drug: Cyclophosphamide")
    changes = diff(old, new)
    assert {c.kind for c in changes} == {"interventions"}
    assert [c for c in changes if c.field == "interventions"] == [
        Change("interventions", "interventions",
               module(old, "armsInterventionsModule")["interventions"][1], None,
               "Intervention removed: Drug: Cyclophosphamide"),
    ]
    assert one([c for c in changes if c.field == "armGroups"], "interventions").summary == (
        "Arm changed: study arm")


def test_changed_intervention_details_are_one_intervention_change() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    intervention = module(new, "armsInterventionsModule")["interventions"][0]
    intervention["otherNames"] = ["ARGX-113"]
    assert diff(old, new) == [
        Change("interventions", "interventions",
               module(old, "armsInterventionsModule")["interventions"][0], intervention,
               "Intervention changed: Biological: Efgartigimod PH20 SC"),
    ]


def test_added_arm_group_reads_its_label() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    module(new, "armsInterventionsModule")["armGroups"].append({
        "label": "Open-label extension", "type": "EXPERIMENTAL",
        "description": "Participants from either arm may continue efgartigimod for 52 weeks",
        "interventionNames": ["Biological: Efgartigimod PH20 SC"],
    })
    change = one(diff(old, new), "interventions")
    assert change.field == "armGroups"
    assert change.summary == "Arm added: Open-label extension"


def test_changed_arm_description_is_an_arm_change() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    module(new, "armsInterventionsModule")["armGroups"][0]["description"] = "Standard of care only"
    assert summaries(diff(old, new)) == ["Arm changed: SOC"]


# --- outcomes -----------------------------------------------------------------------------------

def test_primary_outcome_time_frame_change_names_the_measure() -> None:
    old, new = pair(RECRUITING)
    module(new, "outcomesModule")["primaryOutcomes"][0]["timeFrame"] = "3 years after surgery"
    change = one(diff(old, new), "outcomes")
    assert change.field == "primaryOutcomes"
    assert change.summary == "Primary outcome changed: Disease free survival (DFS)"
    assert change.old["timeFrame"] == "5 years after surgery"
    assert change.new["timeFrame"] == "3 years after surgery"


def test_added_and_removed_secondary_outcomes() -> None:
    old, new = pair(RECRUITING)
    outcomes = module(new, "outcomesModule")["secondaryOutcomes"]
    outcomes.pop(0)
    outcomes.append({"measure": "Change in Manual Muscle Testing (MMT-8) score",
                     "description": "MMT-8, range 0-80", "timeFrame": "24 weeks"})
    assert sorted(summaries(diff(old, new))) == [
        "Secondary outcome added: Change in Manual Muscle Testing (MMT-8) score",
        "Secondary outcome removed: 3-year Overall survival (OS)",
    ]
    assert {c.kind for c in diff(old, new)} == {"outcomes"}


def test_first_secondary_outcome_is_an_outcome_added() -> None:
    old, new = pair(WITH_RESULTS)  # primary outcomes only
    module(new, "outcomesModule")["secondaryOutcomes"] = [
        {"measure": "Change in IBM Functional Rating Scale", "timeFrame": "Week 20"},
    ]
    assert summaries(diff(old, new)) == [
        "Secondary outcome added: Change in IBM Functional Rating Scale",
    ]


# --- phase --------------------------------------------------------------------------------------

def test_phase_change_reads_combined_phases() -> None:
    old, new = pair(RESULTS_AND_SITES)
    module(new, "designModule")["phases"] = ["PHASE2", "PHASE3"]
    change = one(diff(old, new), "phase")
    assert (change.old, change.new) == (["PHASE2"], ["PHASE2", "PHASE3"])
    assert change.summary == "Phase: Phase 2 -> Phase 2/Phase 3"


def test_not_applicable_phase_reads_as_words() -> None:
    old, new = pair(TERMINATED)
    module(new, "designModule")["phases"] = ["PHASE2"]
    assert summaries(diff(old, new)) == ["Phase: Not Applicable -> Phase 2"]


# --- contacts -----------------------------------------------------------------------------------

def test_central_contact_change_is_a_contacts_change() -> None:
    old, new = pair(RECRUITING)
    module(new, "contactsLocationsModule")["centralContacts"] = [
        {"name": "Wei Chen, MD", "role": "CONTACT", "phone": "86-571-87783759",
         "email": "chenwei@zju.edu.cn"},
    ]
    assert diff(old, new) == [
        Change("contacts", "centralContacts", ["Jiang-Tao LI, PHD;MD"], ["Wei Chen, MD"],
               "Central contacts changed"),
    ]


def test_central_contact_phone_change_is_a_contacts_change() -> None:
    old, new = pair(UNKNOWN_STATUS)
    module(new, "contactsLocationsModule")["centralContacts"][1]["phone"] = "+82-31-920-1621"
    change = one(diff(old, new), "contacts")
    assert change.old == change.new == ["Sung JIn Yoon, RN", "Tak Yun, M.D."]


def test_overall_official_change_is_a_contacts_change() -> None:
    old, new = pair(TERMINATED)
    module(new, "contactsLocationsModule")["overallOfficials"][0]["name"] = "Luc Mouthon, MD, PhD"
    change = one(diff(old, new), "contacts")
    assert change.field == "overallOfficials"
    assert change.summary == "Overall officials changed"
    assert change.new == ["Luc Mouthon, MD, PhD"]


# --- sponsor ------------------------------------------------------------------------------------

def test_lead_sponsor_change_reads_both_names() -> None:
    old, new = pair(WITH_RESULTS)
    module(new, "sponsorCollaboratorsModule")["leadSponsor"]["name"] = "Orphazyme"
    change = one(diff(old, new), "sponsor")
    assert change.field == "leadSponsor"
    assert change.summary == "Lead sponsor: Taiwan Liposome Company -> Orphazyme"


def test_all_capitals_sponsor_name_is_kept_as_given() -> None:
    old, new = pair(TERMINATED)
    module(new, "sponsorCollaboratorsModule")["leadSponsor"]["name"] = "NIAMS"
    assert summaries(diff(old, new)) == [
        "Lead sponsor: Assistance Publique - Hôpitaux de Paris -> NIAMS"]


def test_first_collaborator_added_is_a_sponsor_change() -> None:
    old, new = pair(RECRUITING)  # no collaborators key yet
    module(new, "sponsorCollaboratorsModule")["collaborators"] = [
        {"name": "China-Japan Friendship Hospital", "class": "OTHER"},
    ]
    change = one(diff(old, new), "sponsor")
    assert change.field == "collaborators"
    assert change.summary == "Collaborator added: China-Japan Friendship Hospital"


def test_collaborator_removed_is_a_sponsor_change() -> None:
    old, new = pair(RESULTS_AND_SITES)
    module(new, "sponsorCollaboratorsModule")["collaborators"] = []
    assert summaries(diff(old, new)) == ["Collaborator removed: Sanofi"]


def test_responsible_party_change_is_a_sponsor_change() -> None:
    old, new = pair(TERMINATED)
    module(new, "sponsorCollaboratorsModule")["responsibleParty"] = {
        "type": "PRINCIPAL_INVESTIGATOR", "investigatorFullName": "Frederic Prat",
        "investigatorTitle": "MD, PhD", "investigatorAffiliation": "Hopital Cochin",
    }
    assert summaries(diff(old, new)) == ["Responsible party changed"]


# --- title --------------------------------------------------------------------------------------

def test_brief_title_change_reads_both_titles() -> None:
    old, new = pair(RECRUITING)
    module(new, "identificationModule")["briefTitle"] = (
        "Tofacitinib in Refractory Adult Dermatomyositis")
    change = one(diff(old, new), "title")
    assert change.field == "briefTitle"
    assert change.summary == ("Title: Tofacitinib in Refractory Dermatomyositis -> "
                              "Tofacitinib in Refractory Adult Dermatomyositis")


def test_acronym_change_is_a_title_change_kept_in_capitals() -> None:
    old, new = pair(TERMINATED)
    module(new, "identificationModule")["acronym"] = "PEPM-2"
    assert summaries(diff(old, new)) == ["Acronym: PEPM -> PEPM-2"]


# --- other --------------------------------------------------------------------------------------

def test_description_change_is_an_other_change_naming_the_field() -> None:
    old, new = pair(RECRUITING)
    module(new, "descriptionModule")["briefSummary"] += " Recruitment was extended to Europe."
    change = one(diff(old, new), "other")
    assert change.field == "descriptionModule"
    assert change.summary == "Description updated (briefSummary)"
    assert list(change.new) == ["briefSummary"]


def test_added_condition_is_named() -> None:
    old, new = pair(RECRUITING)
    module(new, "conditionsModule")["conditions"].append("Interstitial Lung Disease")
    assert diff(old, new) == [
        Change("other", "conditions", ["Dermatomyositis"],
               ["Dermatomyositis", "Interstitial Lung Disease"],
               "Conditions added: Interstitial Lung Disease"),
    ]


def test_removed_keyword_is_named() -> None:
    old, new = pair(UNKNOWN_STATUS)
    module(new, "conditionsModule")["keywords"].remove("ILD")
    assert summaries(diff(old, new)) == ["Keywords removed: ILD"]


def test_design_change_is_an_other_change() -> None:
    old, new = pair(RECRUITING)
    module(new, "designModule")["designInfo"]["maskingInfo"] = {"masking": "NONE"}
    assert summaries(diff(old, new)) == ["Study design updated (designInfo)"]


def test_new_reference_is_an_other_change() -> None:
    old, new = pair(RECRUITING)
    module(new, "referencesModule")["references"].append(
        {"pmid": "35000000", "type": "BACKGROUND", "citation": "A myositis citation."})
    assert summaries(diff(old, new)) == ["References updated (references)"]


def test_a_routine_status_verification_is_not_a_change() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["statusVerifiedDate"] = "2022-12"
    assert diff(old, new) == []


def test_other_status_details_are_reported_under_status_details() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["studyFirstSubmitQcDate"] = "2019-09-04"
    change = one(diff(old, new), "other")
    assert change.summary == "Status details updated (studyFirstSubmitQcDate)"


def test_bulk_site_detail_updates_are_one_change() -> None:
    old, new = pair(RECRUITING)
    for site in sites(new):
        site["zip"] = "00000"
    [change] = diff(old, new)
    assert change.kind == "other"
    assert change.summary == f"Site details updated at {len(sites(new))} sites (zip)"


# --- many changes at once -------------------------------------------------------------------------

def test_several_edits_each_appear_once_in_a_fixed_order() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "ACTIVE_NOT_RECRUITING"
    sites(new).append(copy.deepcopy(LYON))
    module(new, "designModule")["enrollmentInfo"] = {"count": 150, "type": "ACTUAL"}
    module(new, "designModule")["phases"] = ["PHASE2"]
    module(new, "identificationModule")["briefTitle"] = "Tofacitinib in Dermatomyositis"
    module(new, "conditionsModule")["conditions"].append("Polymyositis")
    changes = diff(old, new)
    assert [c.kind for c in changes] == [
        "status", "site_added", "enrollment", "phase", "title", "other",
    ]
    assert all(c.kind in KINDS for c in changes)


def test_a_closing_update_reports_each_edit_once_with_known_kinds() -> None:
    old, new = pair(UNKNOWN_STATUS)
    status_module(new)["overallStatus"] = "COMPLETED"
    del status_module(new)["lastKnownStatus"]
    sites(new)[0]["status"] = "COMPLETED"
    del module(new, "contactsLocationsModule")["centralContacts"]
    module(new, "sponsorCollaboratorsModule")["collaborators"] = []
    module(new, "designModule")["enrollmentInfo"] = {"count": 70, "type": "ACTUAL"}
    status_module(new)["completionDateStruct"] = {"date": "2012-10", "type": "ACTUAL"}
    changes = diff(old, new)
    assert {c.kind for c in changes} <= set(KINDS)
    assert summaries(changes) == [
        "Status: Unknown status -> Completed",
        "Site Seoul, South Korea (Asan Medical Center): Recruiting -> Completed",
        "Enrollment: 74 (estimated) -> 70 (actual)",
        "Completion 2012-12 (estimated) -> 2012-10 (actual)",
        "Central contacts changed",
        "Collaborator removed: Jeil Pharmaceutical Co., Ltd.",
    ]


# --- new and removed studies ----------------------------------------------------------------------

def test_new_study_summary_reads_title_and_status() -> None:
    study = load_study(NOT_YET_RECRUITING)
    assert new_study(study) == Change(
        "new", "study", None, NOT_YET_RECRUITING,
        "New trial: Efgartigimod in Immune-Mediated Necrotizing Myopathy (Not yet recruiting)")


def test_new_study_summary_reads_unknown_status() -> None:
    change = new_study(load_study(UNKNOWN_STATUS))
    assert change.summary == (
        "New trial: Rituximab in Antisynthetase Syndrome Interstitial Lung Disease "
        "(Unknown status)")


def test_new_study_summary_shortens_a_long_title() -> None:
    study = load_study(RECRUITING)
    title = ("A Randomized, Double-blind, Placebo-controlled Trial of Tofacitinib in Adults "
             "With Refractory Dermatomyositis and Interstitial Lung Disease")
    module(study, "identificationModule")["briefTitle"] = title
    summary = new_study(study).summary
    assert len(title) > 100
    assert summary.startswith("New trial: " + title[:60])
    assert summary.endswith("… (Recruiting)")
    assert len(summary) == len("New trial: ") + 100 + len(" (Recruiting)")


def test_removed_study_summary_gives_the_reason() -> None:
    assert removed_study(TERMINATED, "no longer returned by the registry") == Change(
        "removed", "study", TERMINATED, None, "Removed: no longer returned by the registry")


# --- tracker.record -------------------------------------------------------------------------------

def test_content_hash_ignores_version_holder() -> None:
    study = load_study(RECRUITING)
    refreshed = copy.deepcopy(study)
    refreshed["derivedSection"]["miscInfoModule"]["versionHolder"] = "2026-11-21"
    assert content_hash(refreshed) == content_hash(study)


def test_content_hash_does_not_depend_on_key_order() -> None:
    study = load_study(RESULTS_AND_SITES)
    reordered = json.loads(json.dumps(study, sort_keys=True))
    assert list(reordered) != list(study)
    assert content_hash(reordered) == content_hash(study)


def test_content_hash_sees_real_content() -> None:
    study = load_study(RECRUITING)
    changed = copy.deepcopy(study)
    status_module(changed)["overallStatus"] = "COMPLETED"
    assert content_hash(changed) != content_hash(study)


def test_content_hash_sees_a_moved_last_update_post_date() -> None:
    study = load_study(RECRUITING)
    assert content_hash(updated(study)) != content_hash(study)


def test_content_hash_keeps_other_misc_info() -> None:
    study = load_study(RESULTS_AND_SITES)
    changed = copy.deepcopy(study)
    changed["derivedSection"]["miscInfoModule"]["modelPredictions"]["bmiLimits"]["maxBmi"] = 60
    assert content_hash(changed) != content_hash(study)


def test_without_noise_drops_version_holder_and_keeps_the_rest() -> None:
    study = load_study(RESULTS_AND_SITES)
    clean = without_noise(study)
    assert clean["derivedSection"]["miscInfoModule"] == {
        "modelPredictions": {"bmiLimits": {"minBmi": 0, "maxBmi": 101}}}
    assert clean["protocolSection"] == study["protocolSection"]
    assert clean["derivedSection"]["conditionBrowseModule"] == (
        study["derivedSection"]["conditionBrowseModule"])


def test_without_noise_drops_a_misc_info_module_holding_only_version_holder() -> None:
    clean = without_noise(load_study(RECRUITING))
    assert "miscInfoModule" not in clean["derivedSection"]
    assert "conditionBrowseModule" in clean["derivedSection"]


@pytest.mark.parametrize("nct_id", [RECRUITING, RESULTS_AND_SITES])
def test_without_noise_does_not_mutate_its_input(nct_id: str) -> None:
    study = load_study(nct_id)
    pristine = copy.deepcopy(study)
    without_noise(study)
    assert study == pristine
    assert study["derivedSection"]["miscInfoModule"]["versionHolder"] == "2026-11-20"


def test_summarise_keeps_partial_dates_as_given() -> None:
    row = summarise(load_study(UNKNOWN_STATUS))
    assert row["start_date"] == "2008-10"
    assert row["primary_completion_date"] == "2011-12"
    assert row["completion_date"] == "2012-12"
    assert row["last_update_posted"] == "2010-10-25"


def test_summarise_keeps_missing_dates_missing() -> None:
    row = summarise(load_study(OBSERVATIONAL))
    assert row["completion_date"] is None
    assert row["results_first_posted"] is None
    assert row["phases"] is None


def test_summarise_keeps_the_sponsor_class_and_the_records_own_dates_as_given() -> None:
    recruiting = summarise(load_study(RECRUITING))
    unknown = summarise(load_study(UNKNOWN_STATUS))

    assert (recruiting["sponsor_class"], recruiting["start_date_type"],
            recruiting["status_verified"], recruiting["first_submitted"]) == \
        ("OTHER", "ACTUAL", "2022-01", "2019-08-26")
    assert (unknown["sponsor_class"], unknown["start_date_type"],
            unknown["status_verified"], unknown["first_submitted"]) == \
        ("OTHER_GOV", None, "2010-07", "2008-12-24")  # an older record: no start date type
    assert summarise(load_study(NOT_YET_RECRUITING))["start_date_type"] == "ESTIMATED"
