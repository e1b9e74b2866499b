"""Specification of `tracker.plain`: each recorded change, said as one sentence a patient reads.

Changes are made the way a sync makes them: a real (myositis-edited) record from
tests/data/studies/ is moved on by `updated()` (the sponsor posted an update), edited the way
the registry would show the sponsor's edit (the API's own field names and shapes), and run
through `tracker.diff.diff`; `explain(change, old, new)` then gets exactly what sync gives it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import load_study, updated
from tests.records import module, pair, sites, status_module, without_results
from tracker.diff import KINDS, Change, diff, new_study, removed_study
from tracker.plain import explain, stop_glosses, treatment_name
from tracker.record import PHASE_LABELS, STATUS_LABELS

Study = dict[str, Any]

RECRUITING = "NCT04078230"  # DM trial, 13 RECRUITING sites, ESTIMATED completion 2027-12-31
NOT_YET_RECRUITING = "NCT07725679"  # no sites, FEMALE only, ESTIMATED dates, start 2027-02-01
WITH_RESULTS = "NCT02803307"  # completed IBM trial with a resultsSection
TERMINATED = "NCT00987428"  # whyStopped "Insufficient number of participants"
OBSERVATIONAL = "NCT02248896"  # no phases, no sites, no completion date, 1,129,062 enrolled
UNKNOWN_STATUS = "NCT00874328"  # UNKNOWN, last known RECRUITING, month-precision dates
RESULTS_AND_SITES = "NCT02210780"  # completed, results, 42 sites without facility or status

# A real French site, in the API's location shape.
LYON = {
    "facility": "Hôpital Edouard Herriot",
    "status": "RECRUITING",
    "city": "Lyon",
    "zip": "69003",
    "country": "France",
    "geoPoint": {"lat": 45.74846, "lon": 4.84671},
}

# Every code the API uses for statuses, phases, sex and date/enrolment types: never said raw.
RAW_CODES = {*STATUS_LABELS, *PHASE_LABELS, "FEMALE", "MALE", "ALL", "ESTIMATED", "ACTUAL",
             "ANTICIPATED"}


# --- helpers for editing copies of real records ---------------------------------------------







def site_in(study: Study, city: str) -> dict[str, Any]:
    (site,) = [s for s in sites(study) if s.get("city") == city]
    return site




def sentences(old: Study, new: Study) -> list[str]:
    return [explain(c, old, new) for c in diff(old, new)]


def only(old: Study, new: Study) -> tuple[Change, str]:
    """The single change from `old` to `new` and its sentence; fails on none or several."""
    changes = diff(old, new)
    assert len(changes) == 1, f"expected exactly one change, got {changes}"
    return changes[0], explain(changes[0], old, new)


def said(old: Study, new: Study) -> str:
    return only(old, new)[1]




def raw_codes_in(sentence: str) -> set[str]:
    return {word for word in re.findall(r"[A-Za-z0-9_]+", sentence) if word in RAW_CODES}


# --- new and removed trials -------------------------------------------------------------------

def test_a_newly_listed_trial_is_announced_without_claiming_it_was_just_registered() -> None:
    # sync also reports "new" for a trial that starts to match the query, or comes back after
    # removal: it may have been registered years ago, so the sentence says only what is known.
    study = load_study(NOT_YET_RECRUITING)
    change = new_study(study)
    assert explain(change, None, study) == "Now listed among the tracked myositis trials"
    assert explain(change) == "Now listed among the tracked myositis trials"
    assert "registered" not in explain(change, None, load_study(TERMINATED))


def test_a_removed_trial_is_no_longer_listed() -> None:
    change = removed_study(TERMINATED, "no longer matches the tracked query on ClinicalTrials.gov")
    assert explain(change) == "No longer listed among the tracked myositis trials"


# --- overall status ---------------------------------------------------------------------------

@pytest.mark.parametrize(("nct_id", "status", "sentence"), [
    (NOT_YET_RECRUITING, "RECRUITING", "Now recruiting: you can ask the study team about joining"),
    (NOT_YET_RECRUITING, "ENROLLING_BY_INVITATION",
     "Enrolling by invitation only: the study team invites people; you cannot ask to join"),
    (RECRUITING, "NOT_YET_RECRUITING",
     "Not recruiting yet: the trial is expected to open, but nobody can join yet"),
    (RECRUITING, "ACTIVE_NOT_RECRUITING",
     "No longer recruiting: the trial goes on with the people already taking part, and nobody "
     "new can join"),
    (RECRUITING, "COMPLETED", "The trial has finished: nobody new can join"),
    (RECRUITING, "TERMINATED", "Stopped early: nobody new can join. If you are taking part, "
                               "talk to your study team about what this means for you"),
    (RECRUITING, "SUSPENDED", "Paused: nobody new can join for now. If you are taking part, "
                              "talk to your study team about what this means for you"),
    (NOT_YET_RECRUITING, "WITHDRAWN", "Withdrawn: it was called off before anyone took part"),
    (RECRUITING, "WITHHELD", "Status withheld: the sponsor has not made it public"),
])
def test_each_new_status_says_what_it_means_for_joining(nct_id: str, status: str,
                                                        sentence: str) -> None:
    old, new = pair(nct_id)
    status_module(new)["overallStatus"] = status
    change, text = only(old, new)
    assert (change.kind, change.field) == ("status", "overallStatus")
    assert text == sentence


def test_unknown_status_says_the_sponsor_has_not_confirmed_it() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "UNKNOWN"
    status_module(new)["lastKnownStatus"] = "RECRUITING"
    assert said(old, new) == ("Status unknown: the sponsor has not confirmed it recently, so "
                              "it may not be open")


@pytest.mark.parametrize(("status", "sentence"), [
    ("AVAILABLE", "Available outside a trial (expanded access): a doctor can ask for this "
                  "treatment for a patient who cannot join a trial"),
    ("NO_LONGER_AVAILABLE", "No longer available outside a trial (expanded access): doctors "
                            "can no longer ask for this treatment this way"),
    ("TEMPORARILY_NOT_AVAILABLE", "Not available outside a trial for now (expanded access): "
                                  "doctors cannot ask for this treatment this way at the "
                                  "moment"),
])
def test_expanded_access_statuses_are_said_in_words(status: str, sentence: str) -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = status
    text = said(old, new)
    assert text == sentence
    assert "expanded access" in text.lower() and "outside a trial" in text


def test_approved_for_marketing_is_never_read_as_approved_for_myositis() -> None:
    old = load_study(RECRUITING)
    status_module(old)["overallStatus"] = "AVAILABLE"
    new = updated(old)
    status_module(new)["overallStatus"] = "APPROVED_FOR_MARKETING"
    text = said(old, new)
    assert text.startswith("Approved for marketing: ")
    assert text.endswith("this does not mean it is approved for myositis")


def test_stopping_early_quotes_the_reason_glosses_it_and_speaks_to_those_taking_part() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = "Sponsor decision"
    assert said(old, new) == (
        "Stopped early: nobody new can join. Reason given: \u201cSponsor decision\u201d. In "
        "plain words: the company or group running the trial (the sponsor) decided this. If "
        "you are taking part, talk to your study team about what this means for you")


def test_dsmb_futility_gets_a_plain_gloss() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = "DSMB futility"
    text = said(old, new)
    assert "Reason given: \u201cDSMB futility\u201d. In plain words: " in text
    assert "group of independent experts who keep checking the trial's safety and results" in text
    assert "futility means the trial was unlikely to show that the treatment works" in text
    assert text.endswith("talk to your study team about what this means for you")


@pytest.mark.parametrize(("why", "gloss"), [
    ("DSMB recommended stopping", "group of independent experts"),
    ("Per DMC recommendation", "group of independent experts"),
    ("Data Monitoring Committee advice", "group of independent experts"),
    ("Futility at interim analysis", "futility means the trial was unlikely to show"),
    ("Futility at interim analysis", "an interim analysis is a look at the results partway"),
    ("Lack of efficacy", "the treatment did not seem to work well enough"),
    ("Efficacy endpoint met early", "efficacy means how well the treatment works"),
    ("slow enrollment", "not enough people joined the trial"),
    ("Poor accrual", "not enough people joined the trial"),
    ("Low recruitment rate", "not enough people joined the trial"),
    ("Enrolment was slower than expected", "not enough people joined the trial"),
    ("Insufficient number of participants", "not enough people joined the trial"),
    ("No patients were enrolled", "not enough people joined the trial"),
    ("A lack of funding", "funding is the money to run the trial"),
    ("Business decision", "(the sponsor) decided this"),
    ("Strategic reasons", "(the sponsor) decided this"),
    ("Company portfolio prioritisation", "(the sponsor) decided this"),
    ("Safety concerns", "safety is about whether the treatment could harm people"),
    ("Serious adverse events", "adverse events are unwanted or harmful things"),
    ("COVID-19 pandemic", "the COVID-19 pandemic made the trial hard to run"),
    ("PI left the institution", "the doctor leading the trial left"),
    ("Departure of the principal investigator", "the doctor leading the trial left"),
    ("Drug supply interrupted", "there was a problem getting enough of the treatment"),
    ("FDA clinical hold", "a clinical hold is when the US medicines agency (FDA) orders"),
    ("Stopped by the IRB", "an ethics committee (IRB) checks that a trial is safe and fair"),
])
def test_common_reasons_for_stopping_get_plain_words(why: str, gloss: str) -> None:
    assert gloss in " ".join(stop_glosses(why))
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = why
    text = said(old, new)
    assert f"Reason given: \u201c{why}\u201d. In plain words: " in text
    assert gloss in text


@pytest.mark.parametrize(("why", "fact"), [
    ("Sponsor decision; not related to slow enrollment", "not enough people joined"),
    ("Not due to lack of efficacy", "did not seem to work"),
    ("Unrelated to COVID-19", "pandemic made the trial hard to run"),
    ("Not a business decision", "decided this"),
])
def test_a_reason_that_denies_something_is_not_glossed_as_if_it_happened(why: str,
                                                                        fact: str) -> None:
    assert fact not in " ".join(stop_glosses(why))


def test_a_denied_word_is_still_defined_because_a_definition_stays_true() -> None:
    assert stop_glosses("Business decision, not due to safety concerns") == [
        "the company or group running the trial (the sponsor) decided this",
        "safety is about whether the treatment could harm people"]


def test_an_unknown_reason_is_quoted_as_written_without_a_gloss() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "SUSPENDED"
    status_module(new)["whyStopped"] = "Awaiting protocol amendment"
    assert said(old, new) == (
        "Paused: nobody new can join for now. Reason given: \u201cAwaiting protocol "
        "amendment\u201d. If you are taking part, talk to your study team about what this "
        "means for you")
    assert stop_glosses("Awaiting protocol amendment") == []


def test_a_withdrawn_trial_gives_its_reason_but_no_one_is_taking_part() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    status_module(new)["overallStatus"] = "WITHDRAWN"
    status_module(new)["whyStopped"] = "Funding was not obtained"
    assert said(old, new) == (
        "Withdrawn: it was called off before anyone took part. Reason given: \u201cFunding "
        "was not obtained\u201d. In plain words: funding is the money to run the trial")


def test_the_reason_is_read_from_the_new_record_even_when_it_did_not_change() -> None:
    # Suspended with a reason, then terminated for the same reason: the one status change
    # still says why.
    old = load_study(TERMINATED)
    status_module(old)["overallStatus"] = "SUSPENDED"
    new = updated(old)
    status_module(new)["overallStatus"] = "TERMINATED"
    assert "Reason given: \u201cInsufficient number of participants\u201d. In plain words: " \
           "not enough people joined the trial." in said(old, new)


def test_a_leftover_reason_is_not_given_for_a_trial_that_did_not_stop() -> None:
    old = load_study(TERMINATED)
    status_module(old)["overallStatus"] = "ACTIVE_NOT_RECRUITING"
    new = updated(old)
    status_module(new)["overallStatus"] = "COMPLETED"  # whyStopped still in the record
    assert said(old, new) == "The trial has finished: nobody new can join"


def test_a_resumed_trial_is_recruiting_again_with_no_stale_reason() -> None:
    old, new = pair(TERMINATED)
    status_module(new)["overallStatus"] = "RECRUITING"
    del status_module(new)["whyStopped"]
    assert said(old, new) == "Now recruiting: you can ask the study team about joining"


def test_without_the_records_a_stopped_trial_is_still_said_plainly() -> None:
    # Events recorded before plain sentences existed are explained from stored values only.
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = "Sponsor decision"
    change, _ = only(old, new)
    assert explain(change) == ("Stopped early: nobody new can join. If you are taking part, "
                               "talk to your study team about what this means for you")


def test_a_new_reason_for_stopping_is_quoted_with_its_plain_words() -> None:
    old, new = pair(TERMINATED)
    status_module(new)["whyStopped"] = "Insufficient number of participants after 2 years"
    change, text = only(old, new)
    assert change.field == "whyStopped"
    assert text == ("Reason given for stopping: \u201cInsufficient number of participants "
                    "after 2 years\u201d. In plain words: not enough people joined the trial")


def test_a_changed_last_known_status_is_said_in_words() -> None:
    old, new = pair(UNKNOWN_STATUS)
    status_module(new)["lastKnownStatus"] = "ACTIVE_NOT_RECRUITING"
    change, text = only(old, new)
    assert change.field == "lastKnownStatus"
    assert text == "Last known status: active, not recruiting"


@pytest.mark.parametrize("status", sorted(STATUS_LABELS))
def test_no_status_is_said_as_its_raw_code(status: str) -> None:
    old = load_study(RECRUITING)
    status_module(old)["overallStatus"] = "WITHHELD" if status != "WITHHELD" else "RECRUITING"
    site_in(old, "Baltimore")["status"] = "WITHHELD" if status != "WITHHELD" else "RECRUITING"
    new = updated(old)
    status_module(new)["overallStatus"] = status
    site_in(new, "Baltimore")["status"] = status
    said_now = sentences(old, new)
    assert len(said_now) == 2
    for sentence in said_now:
        assert sentence
        assert not raw_codes_in(sentence), sentence


# --- sites ------------------------------------------------------------------------------------

def test_a_site_that_starts_recruiting_is_named_by_its_city() -> None:
    old = load_study(RECRUITING)
    site_in(old, "Baltimore")["status"] = "NOT_YET_RECRUITING"
    new = updated(old)
    site_in(new, "Baltimore")["status"] = "RECRUITING"
    change, text = only(old, new)
    assert (change.kind, change.field) == ("status", "locations.status")
    assert text == ("Now recruiting at the site in Baltimore, United States: you can ask the "
                    "study team about joining")


def test_a_site_that_stops_recruiting_says_what_that_means_for_joining() -> None:
    old, new = pair(RECRUITING)
    site_in(new, "Baltimore")["status"] = "ACTIVE_NOT_RECRUITING"
    assert said(old, new) == ("No longer recruiting at the site in Baltimore, United States: "
                              "the trial goes on with the people already taking part, and "
                              "nobody new can join")


@pytest.mark.parametrize("status", ["ENROLLING_BY_INVITATION", "NOT_YET_RECRUITING",
                                    "ACTIVE_NOT_RECRUITING", "COMPLETED", "TERMINATED",
                                    "SUSPENDED", "WITHDRAWN", "AVAILABLE"])
def test_a_sites_status_uses_the_same_plain_words_as_a_trials(status: str) -> None:
    trial_old, trial_new = pair(RECRUITING)
    status_module(trial_new)["overallStatus"] = status
    for_trial = said(trial_old, trial_new)
    site_old, site_new = pair(RECRUITING)
    site_in(site_new, "Baltimore")["status"] = status
    for_site = said(site_old, site_new)
    headline, meaning = for_trial.split(". ")[0].split(": ", 1)
    assert for_site.startswith(f"{headline} at the site in Baltimore, United States: {meaning}")
    assert ("talk to your study team" in for_site) == ("talk to your study team" in for_trial)


def test_a_new_recruiting_site_says_so() -> None:
    old, new = pair(RECRUITING)
    sites(new).append(dict(LYON))
    change, text = only(old, new)
    assert change.kind == "site_added"
    assert text == "A new site is recruiting in Lyon, France"


@pytest.mark.parametrize("status", ["NOT_YET_RECRUITING", None])
def test_a_new_site_that_is_not_recruiting_has_opened(status: str | None) -> None:
    old, new = pair(NOT_YET_RECRUITING)
    lyon = {k: v for k, v in LYON.items() if k != "status"}
    if status:
        lyon["status"] = status
    sites(new).append(lyon)
    assert said(old, new) == "A new site opened in Lyon, France"


def test_a_new_site_in_a_trial_whose_sites_carry_no_status_or_facility() -> None:
    old, new = pair(RESULTS_AND_SITES)
    sites(new).append({"city": "Lyon", "country": "France",
                       "geoPoint": {"lat": 45.74846, "lon": 4.84671}})
    assert said(old, new) == "A new site opened in Lyon, France"


def test_a_site_with_no_city_or_country_is_named_by_its_facility() -> None:
    old, new = pair(RECRUITING)
    sites(new).append({"facility": "Hôpital Edouard Herriot", "status": "RECRUITING"})
    assert said(old, new) == "A new site is recruiting in Hôpital Edouard Herriot"


def test_a_dropped_site_is_no_longer_listed() -> None:
    old, new = pair(RECRUITING)
    sites(new).remove(site_in(new, "Baltimore"))
    change, text = only(old, new)
    assert change.kind == "site_removed"
    assert text == "The site in Baltimore, United States is no longer listed"


def test_new_site_contacts_are_a_contact_change() -> None:
    old, new = pair(RECRUITING)
    site_in(new, "Baltimore")["contacts"] = [{"name": "Lisa Christopher-Stine, MD",
                                              "role": "CONTACT"}]
    change, text = only(old, new)
    assert (change.kind, change.field) == ("contacts", "locations.contacts")
    assert text == "Contact details changed"


# --- results ----------------------------------------------------------------------------------

def test_posted_results_are_announced() -> None:
    new = load_study(WITH_RESULTS)
    old = without_results(new)
    change, text = only(old, new)
    assert change.kind == "results_posted"
    assert text == "Results were posted"


def test_results_flagged_without_a_results_section_are_announced_too() -> None:
    old, new = pair(UNKNOWN_STATUS)
    new["hasResults"] = True
    assert said(old, new) == "Results were posted"


def test_updated_results_are_only_other_details() -> None:
    old, new = pair(WITH_RESULTS)
    new["resultsSection"]["moreInfoModule"] = {"limitationsAndCaveats": {
        "description": "Small sample size"}}
    change, text = only(old, new)
    assert (change.kind, change.field) == ("other", "resultsSection")
    assert text == "Other details of the trial were updated"


# --- enrollment -------------------------------------------------------------------------------

def test_a_new_planned_enrollment_gives_the_old_number() -> None:
    old, new = pair(RECRUITING)
    module(new, "designModule")["enrollmentInfo"]["count"] = 120
    assert said(old, new) == "Now plans to enrol 120 people (was 168)"


def test_the_actual_enrollment_says_how_many_took_part() -> None:
    old, new = pair(RECRUITING)
    module(new, "designModule")["enrollmentInfo"] = {"count": 152, "type": "ACTUAL"}
    assert said(old, new) == "152 people took part"


def test_the_estimate_becoming_actual_at_the_same_number_says_they_took_part() -> None:
    old, new = pair(RECRUITING)
    module(new, "designModule")["enrollmentInfo"]["type"] = "ACTUAL"
    assert said(old, new) == "168 people took part"


def test_one_participant_is_one_person() -> None:
    old, new = pair(RECRUITING)
    module(new, "designModule")["enrollmentInfo"] = {"count": 1, "type": "ACTUAL"}
    assert said(old, new) == "1 person took part"
    module(new, "designModule")["enrollmentInfo"] = {"count": 1, "type": "ESTIMATED"}
    assert said(old, new) == "Now plans to enrol 1 person (was 168)"


def test_large_numbers_are_grouped_for_reading() -> None:
    old, new = pair(OBSERVATIONAL)
    module(new, "designModule")["enrollmentInfo"]["count"] = 1129063
    assert said(old, new) == "1,129,063 people took part"


def test_a_first_planned_enrollment_has_no_old_number() -> None:
    old, new = pair(RECRUITING)
    del module(old, "designModule")["enrollmentInfo"]
    assert said(old, new) == "Plans to enrol 168 people"


def test_a_dropped_enrollment_is_no_longer_given() -> None:
    old, new = pair(RECRUITING)
    del module(new, "designModule")["enrollmentInfo"]
    assert said(old, new) == "The number of participants is no longer given"


# --- dates ------------------------------------------------------------------------------------

def test_main_results_expected_later_counts_the_months() -> None:
    old, new = pair(UNKNOWN_STATUS)  # primary completion "2011-12", ESTIMATED
    status_module(new)["primaryCompletionDateStruct"]["date"] = "2012-08"
    change, text = only(old, new)
    assert change.field == "primaryCompletionDateStruct"
    assert text == ("Expected to finish collecting its main results 8 months later than "
                    "planned: August 2012")


def test_finishing_earlier_counts_the_months_and_says_the_day() -> None:
    old, new = pair(RECRUITING)  # completion "2027-12-31", ESTIMATED
    status_module(new)["completionDateStruct"]["date"] = "2027-09-30"
    assert said(old, new) == "Expected to finish 3 months earlier than planned: 30 September 2027"


def test_a_one_month_move_is_singular() -> None:
    old, new = pair(UNKNOWN_STATUS)
    status_module(new)["completionDateStruct"]["date"] = "2013-01"  # was 2012-12
    assert said(old, new) == "Expected to finish 1 month later than planned: January 2013"


def test_a_day_precision_start_is_spoken_day_month_year() -> None:
    old, new = pair(NOT_YET_RECRUITING)  # start "2027-02-01", ESTIMATED
    status_module(new)["startDateStruct"]["date"] = "2026-11-05"
    assert said(old, new) == "Expected to start 3 months earlier than planned: 5 November 2026"


def test_a_move_within_the_same_month_gives_only_the_new_date() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["completionDateStruct"]["date"] = "2027-12-15"
    assert said(old, new) == "Expected to finish 15 December 2027"


def test_a_year_only_date_gives_the_direction_but_invents_no_months() -> None:
    old, new = pair(RECRUITING)  # "2027-12-31" -> "2028": a day to a year later, not "1 month"
    status_module(new)["completionDateStruct"]["date"] = "2028"
    assert said(old, new) == "Expected to finish later than planned: 2028"

    old, new = pair(UNKNOWN_STATUS)  # "2012-12" -> "2012": no later, no earlier
    status_module(new)["completionDateStruct"]["date"] = "2012"
    assert said(old, new) == "Expected to finish 2012"


def test_a_year_only_date_made_precise_is_compared_by_year() -> None:
    old = load_study(UNKNOWN_STATUS)
    status_module(old)["completionDateStruct"]["date"] = "2012"
    new = updated(old)
    status_module(new)["completionDateStruct"]["date"] = "2013-03"
    assert said(old, new) == "Expected to finish later than planned: March 2013"


def test_an_actual_start_says_when_it_started() -> None:
    old, new = pair(NOT_YET_RECRUITING)
    status_module(new)["startDateStruct"] = {"date": "2026-03-15", "type": "ACTUAL"}
    assert said(old, new) == "Started 15 March 2026"


def test_actual_completion_dates_say_when_it_finished() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["primaryCompletionDateStruct"] = {"date": "2027-06-30", "type": "ACTUAL"}
    status_module(new)["completionDateStruct"] = {"date": "2027-10", "type": "ACTUAL"}
    assert sentences(old, new) == ["Finished collecting its main results 30 June 2027",
                                   "Finished October 2027"]


def test_a_first_completion_date_has_nothing_to_compare_with() -> None:
    old, new = pair(OBSERVATIONAL)  # no completionDateStruct at all
    status_module(new)["completionDateStruct"] = {"date": "2011-06", "type": "ESTIMATED"}
    assert said(old, new) == "Expected to finish June 2011"


def test_a_removed_date_is_no_longer_given() -> None:
    old, new = pair(RECRUITING)
    del status_module(new)["completionDateStruct"]
    assert said(old, new) == "No date is given any more for when the trial will finish"
    old, new = pair(NOT_YET_RECRUITING)
    del status_module(new)["startDateStruct"]
    assert said(old, new) == "No date is given any more for when the trial will start"


# --- eligibility ------------------------------------------------------------------------------

@pytest.mark.parametrize(("age", "sentence"), [
    ("12 Years", "Now open to children from 12 years (was 18 years)"),
    ("6 Months", "Now open to children from 6 months (was 18 years)"),
    ("17 Years", "Now open to children from 17 years (was 18 years)"),
])
def test_a_minimum_age_below_18_opens_an_adult_trial_to_children(age: str,
                                                                  sentence: str) -> None:
    old, new = pair(RECRUITING)  # minimumAge "18 Years"
    module(new, "eligibilityModule")["minimumAge"] = age
    change, text = only(old, new)
    assert (change.kind, change.field) == ("eligibility", "minimumAge")
    assert text == sentence


def test_other_minimum_age_changes_give_the_old_and_new_age() -> None:
    old, new = pair(RECRUITING)
    module(new, "eligibilityModule")["minimumAge"] = "20 Years"
    assert said(old, new) == "Minimum age is now 20 years (was 18 years)"


def test_lowering_an_age_already_under_18_opens_nothing_new_to_children() -> None:
    old = load_study(RECRUITING)
    module(old, "eligibilityModule")["minimumAge"] = "16 Years"
    new = updated(old)
    module(new, "eligibilityModule")["minimumAge"] = "12 Years"
    assert said(old, new) == "Minimum age is now 12 years (was 16 years)"


def test_a_first_minimum_age_restricts_rather_than_opens() -> None:
    # No minimum age means anyone could join: setting one at 12 is not "now open to children".
    old = load_study(RECRUITING)
    del module(old, "eligibilityModule")["minimumAge"]
    new = updated(old)
    module(new, "eligibilityModule")["minimumAge"] = "12 Years"
    assert said(old, new) == "Minimum age is now 12 years (there was none before)"


def test_dropped_age_limits_say_what_they_were() -> None:
    old, new = pair(RECRUITING)
    del module(new, "eligibilityModule")["minimumAge"]
    assert said(old, new) == "There is no minimum age any more (it was 18 years)"
    old, new = pair(RECRUITING)
    del module(new, "eligibilityModule")["maximumAge"]
    assert said(old, new) == "There is no upper age limit any more (it was 80 years)"


def test_a_new_maximum_age_gives_the_old_one() -> None:
    old, new = pair(RECRUITING)  # maximumAge "80 Years"
    module(new, "eligibilityModule")["maximumAge"] = "75 Years"
    assert said(old, new) == "Maximum age is now 75 years (was 80 years)"


def test_a_first_maximum_age_says_there_was_none() -> None:
    old = load_study(RECRUITING)
    del module(old, "eligibilityModule")["maximumAge"]
    new = updated(old)
    module(new, "eligibilityModule")["maximumAge"] = "65 Years"
    assert said(old, new) == "Maximum age is now 65 years (there was none before)"


@pytest.mark.parametrize(("nct_id", "sex", "sentence"), [
    (RECRUITING, "FEMALE", "Now open to women only (was open to people of any sex)"),
    (RECRUITING, "MALE", "Now open to men only (was open to people of any sex)"),
    (NOT_YET_RECRUITING, "ALL", "Now open to people of any sex (was open to women only)"),
])
def test_who_can_take_part_by_sex_old_and_new(nct_id: str, sex: str, sentence: str) -> None:
    old, new = pair(nct_id)
    module(new, "eligibilityModule")["sex"] = sex
    assert said(old, new) == sentence


def test_healthy_volunteers_say_who_can_now_take_part() -> None:
    old, new = pair(RECRUITING)
    module(new, "eligibilityModule")["healthyVolunteers"] = True
    change, text = only(old, new)
    assert change.field == "healthyVolunteers"
    assert text == "People without myositis (healthy volunteers) can now take part too"

    old = load_study(RECRUITING)
    module(old, "eligibilityModule")["healthyVolunteers"] = True
    new = updated(old)
    module(new, "eligibilityModule")["healthyVolunteers"] = False
    assert said(old, new) == ("People without myositis (healthy volunteers) can no longer take "
                              "part: the trial is only for people with the condition")

    old, new = pair(RECRUITING)
    del module(new, "eligibilityModule")["healthyVolunteers"]
    assert said(old, new) == ("The trial no longer says whether people without myositis can "
                              "take part")


def test_no_structured_eligibility_change_is_only_who_can_take_part_has_changed() -> None:
    for field, value in (("minimumAge", "20 Years"), ("maximumAge", None), ("sex", "MALE"),
                         ("healthyVolunteers", True)):
        old, new = pair(RECRUITING)
        module(new, "eligibilityModule")[field] = value
        assert said(old, new) != "Who can take part has changed", field


def test_changed_criteria_text_says_who_can_take_part_changed() -> None:
    old, new = pair(RECRUITING)
    module(new, "eligibilityModule")["eligibilityCriteria"] += "\n* No prior JAK inhibitor"
    change, text = only(old, new)
    assert change.field == "eligibilityCriteria"
    assert text == "Who can take part has changed"


# --- interventions and arms -------------------------------------------------------------------

DUMMY = "A dummy treatment (one with no medicine in it, used for comparison)"


def test_an_added_treatment_is_named() -> None:
    old, new = pair(RECRUITING)
    module(new, "armsInterventionsModule")["interventions"].append(
        {"type": "DRUG", "name": "Baricitinib", "armGroupLabels": ["Baricitinib"]})
    change, text = only(old, new)
    assert (change.kind, change.field) == ("interventions", "interventions")
    assert text == "A treatment was added: Baricitinib"


@pytest.mark.parametrize("name", ["Placebo", "Matching placebo tablets", "Sham procedure",
                                  "Vehicle cream", "Placebo to match tofacitinib"])
def test_an_added_placebo_is_a_dummy_treatment_not_a_treatment(name: str) -> None:
    old, new = pair(RECRUITING)
    module(new, "armsInterventionsModule")["interventions"].append(
        {"type": "DRUG", "name": name, "description": "For comparison",
         "armGroupLabels": ["Regional LymphAdenectomy"]})
    text = said(old, new)
    assert text == f"{DUMMY} was added: {name}"
    assert "A treatment was added" not in text


def test_a_removed_placebo_is_a_dummy_treatment() -> None:
    old, new = pair(RESULTS_AND_SITES)
    arms = module(new, "armsInterventionsModule")
    arms["interventions"] = [i for i in arms["interventions"] if i["name"] != "Placebo"]
    assert said(old, new) == f"{DUMMY} was removed: Placebo"


def test_a_placebo_joined_to_a_real_treatment_is_a_treatment() -> None:
    old, new = pair(RECRUITING)
    module(new, "armsInterventionsModule")["interventions"].append(
        {"type": "DRUG", "name": "Placebo + methotrexate"})
    assert said(old, new) == "A treatment was added: Placebo + methotrexate"


def test_a_removed_treatment_is_named() -> None:
    old, new = pair(RECRUITING)
    module(new, "armsInterventionsModule")["interventions"].pop(0)
    assert said(old, new) == "A treatment was removed: Tofacitinib"


def test_a_changed_treatment_is_named() -> None:
    old, new = pair(RECRUITING)
    module(new, "armsInterventionsModule")["interventions"][0]["description"] = "5 mg twice daily"
    assert said(old, new) == "Details of a treatment changed: Tofacitinib"


KNOWN = {"CP-690550": "tofacitinib", "PF-06700841": "brepocitinib"}


def test_a_drug_code_is_given_its_known_name() -> None:
    old, new = pair(RECRUITING)
    module(new, "armsInterventionsModule")["interventions"].append(
        {"type": "DRUG", "name": "PF-06700841", "armGroupLabels": ["Brepocitinib"]})
    [change] = diff(old, new)
    assert explain(change, old, new, known_names=KNOWN) == \
        "A treatment was added: PF-06700841 (brepocitinib)"
    assert explain(change, old, new) == "A treatment was added: PF-06700841"


@pytest.mark.parametrize(("item", "named"), [
    ({"name": "cp690550 tablets"}, "cp690550 tablets (tofacitinib)"),
    ({"name": "PF 06700841"}, "PF 06700841 (brepocitinib)"),
    ({"name": "Study drug", "otherNames": ["PF-06700841"]}, "Study drug (brepocitinib)"),
    ({"name": "Brepocitinib (PF-06700841)"}, "Brepocitinib (PF-06700841)"),
    ({"name": "ABC-123"}, "ABC-123"),
])
def test_known_names_match_codes_loosely_and_are_never_repeated(item: dict[str, Any],
                                                                named: str) -> None:
    assert treatment_name(item, KNOWN) == named


# --- outcomes, phase, contacts, sponsor, title, other -----------------------------------------

def test_outcome_changes_say_what_the_trial_measures_changed() -> None:
    old, new = pair(RECRUITING)
    module(new, "outcomesModule")["secondaryOutcomes"].append(
        {"measure": "Total Improvement Score", "timeFrame": "Week 24"})
    change, text = only(old, new)
    assert change.kind == "outcomes"
    assert text == "What the trial measures has changed"


@pytest.mark.parametrize(("nct_id", "phases", "sentence"), [
    (RESULTS_AND_SITES, ["PHASE2", "PHASE3"], "Now listed as Phase 2/Phase 3"),
    (UNKNOWN_STATUS, ["PHASE2"], "Now listed as Phase 2"),
    (RECRUITING, ["EARLY_PHASE1"], "Now listed as Early Phase 1"),
    (OBSERVATIONAL, ["PHASE4"], "Now listed as Phase 4"),
    (RESULTS_AND_SITES, ["NA"], "Now listed without a trial phase"),
    (RESULTS_AND_SITES, [], "Now listed without a trial phase"),
])
def test_a_new_phase_is_said_in_words(nct_id: str, phases: list[str], sentence: str) -> None:
    old, new = pair(nct_id)
    module(new, "designModule")["phases"] = phases
    change, text = only(old, new)
    assert change.kind == "phase"
    assert text == sentence
    assert not raw_codes_in(text)


@pytest.mark.parametrize("field", ["centralContacts", "overallOfficials"])
def test_contact_changes(field: str) -> None:
    old, new = pair(NOT_YET_RECRUITING)
    module(new, "contactsLocationsModule")[field][0]["name"] = "Anne Smith"
    assert said(old, new) == "Contact details changed"


def test_a_new_lead_sponsor_is_named() -> None:
    old, new = pair(RESULTS_AND_SITES)
    module(new, "sponsorCollaboratorsModule")["leadSponsor"]["name"] = "Sanofi"
    change, text = only(old, new)
    assert change.field == "leadSponsor"
    assert text == "New lead sponsor: Sanofi"


def test_collaborator_and_responsible_party_changes_are_the_organisations() -> None:
    old, new = pair(RECRUITING)
    module(new, "sponsorCollaboratorsModule")["collaborators"] = [
        {"name": "Pfizer", "class": "INDUSTRY"}]
    assert said(old, new) == "The organisations running the trial changed"

    old, new = pair(NOT_YET_RECRUITING)
    module(new, "sponsorCollaboratorsModule")["responsibleParty"] = {"type": "SPONSOR"}
    assert said(old, new) == "The organisations running the trial changed"


def test_a_new_title_is_given() -> None:
    old, new = pair(RECRUITING)
    module(new, "identificationModule")["briefTitle"] = "Tofacitinib in Dermatomyositis"
    assert said(old, new) == "New title: Tofacitinib in Dermatomyositis"


@pytest.mark.parametrize(("field", "value"), [("officialTitle", "A Phase 2 Study"),
                                              ("acronym", "TOFA-DM")])
def test_other_title_changes_say_the_title_was_updated(field: str, value: str) -> None:
    old, new = pair(RECRUITING)
    module(new, "identificationModule")[field] = value
    assert said(old, new) == "The trial's title was updated"


@pytest.mark.parametrize("edit", [
    lambda s: module(s, "descriptionModule").update(briefSummary="A shorter summary."),
    lambda s: module(s, "conditionsModule")["keywords"].append("juvenile dermatomyositis"),
    lambda s: s.update(documentSection={"largeDocumentModule": {"noSap": True}}),
])
def test_anything_else_is_other_details(edit: Callable[[Study], Any]) -> None:
    old, new = pair(RECRUITING)
    edit(new)
    change, text = only(old, new)
    assert change.kind == "other"
    assert text == "Other details of the trial were updated"


# --- every kind, every time -------------------------------------------------------------------

def _edit_status(s: Study) -> None:
    status_module(s)["overallStatus"] = "COMPLETED"


def _edit_enrollment(s: Study) -> None:
    module(s, "designModule")["enrollmentInfo"]["count"] = 90


def _edit_dates(s: Study) -> None:
    status_module(s)["completionDateStruct"]["date"] = "2028-08-31"


def _edit_eligibility(s: Study) -> None:
    module(s, "eligibilityModule")["minimumAge"] = "12 Years"


def _edit_interventions(s: Study) -> None:
    module(s, "armsInterventionsModule")["interventions"][0]["name"] = "Baricitinib"


def _edit_outcomes(s: Study) -> None:
    module(s, "outcomesModule")["primaryOutcomes"][0]["timeFrame"] = "1 year"


def _edit_phase(s: Study) -> None:
    module(s, "designModule")["phases"] = ["PHASE3"]


def _edit_contacts(s: Study) -> None:
    module(s, "contactsLocationsModule")["centralContacts"][0]["phone"] = "86-000"


def _edit_sponsor(s: Study) -> None:
    module(s, "sponsorCollaboratorsModule")["leadSponsor"]["name"] = "Zhejiang University"


def _edit_title(s: Study) -> None:
    module(s, "identificationModule")["briefTitle"] = "JAK Inhibition in Dermatomyositis"


def _edit_other(s: Study) -> None:
    module(s, "designModule")["studyType"] = "OBSERVATIONAL"


def _add_site(s: Study) -> None:
    sites(s).append(dict(LYON))


def _remove_site(s: Study) -> None:
    sites(s).remove(site_in(s, "Baltimore"))


EDITS: dict[str, Callable[[Study], None]] = {
    "status": _edit_status, "site_added": _add_site, "site_removed": _remove_site,
    "enrollment": _edit_enrollment, "dates": _edit_dates, "eligibility": _edit_eligibility,
    "interventions": _edit_interventions, "outcomes": _edit_outcomes, "phase": _edit_phase,
    "contacts": _edit_contacts, "sponsor": _edit_sponsor, "title": _edit_title,
    "other": _edit_other,
}


def one_change_of_each_kind() -> list[tuple[Change, Study | None, Study | None]]:
    """A real change of every kind, with the records it came from."""
    samples: list[tuple[Change, Study | None, Study | None]] = []
    for edit in EDITS.values():
        old, new = pair(RECRUITING)
        edit(new)
        samples.extend((c, old, new) for c in diff(old, new))
    study = load_study(WITH_RESULTS)
    samples.extend((c, without_results(study), study) for c in diff(without_results(study), study))
    samples.append((new_study(study), None, study))
    samples.append((removed_study(TERMINATED, "no longer matches the query"), None, None))
    return samples


def test_the_samples_cover_every_kind_of_change() -> None:
    assert sorted({c.kind for c, _, _ in one_change_of_each_kind()}) == sorted(KINDS)


@pytest.mark.parametrize(("change", "old", "new"), one_change_of_each_kind(),
                         ids=lambda v: v.kind if isinstance(v, Change) else "")
def test_every_kind_has_a_plain_sentence_unlike_the_technical_summary(
        change: Change, old: Study | None, new: Study | None) -> None:
    sentence = explain(change, old, new)
    assert sentence.strip()
    assert sentence != change.summary
    assert sentence[0].isupper()
    assert not raw_codes_in(sentence), sentence


@pytest.mark.parametrize(("change", "old", "new"), one_change_of_each_kind(),
                         ids=lambda v: v.kind if isinstance(v, Change) else "")
def test_every_kind_is_explained_from_stored_values_alone(
        change: Change, old: Study | None, new: Study | None) -> None:
    # What the store does for events recorded before sentences existed: old and new values
    # come back from JSON, and no records are at hand.
    stored = Change(change.kind, change.field,
                    json.loads(json.dumps(change.old)), json.loads(json.dumps(change.new)),
                    change.summary)
    sentence = explain(stored)
    assert sentence.strip()
    assert "\n" not in sentence
    assert sentence == explain(change, old, new) or change.kind == "status"


# --- registry free text: odd content stays one readable line ----------------------------------

def assert_one_clean_line(sentence: str) -> None:
    assert sentence == sentence.strip()
    assert not re.search(r"\s\s|[\n\r\t]", sentence), repr(sentence)


def test_a_long_multi_line_reason_is_one_line_and_kept_whole() -> None:
    old, new = pair(RECRUITING)
    reason = ("The sponsor decided to stop the study.\r\n\r\nReasons:\n"
              + "\t- enrollment was slower than planned\n" * 40)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = reason
    sentence = said(old, new)
    assert_one_clean_line(sentence)
    assert sentence.startswith("Stopped early: nobody new can join. Reason given: \u201cThe "
                               "sponsor decided to stop the study. Reasons: ")
    assert sentence.count("enrollment was slower than planned") == 40


def test_a_reason_with_leading_space_still_starts_cleanly() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = "\n  Sponsor decision "
    assert "Reason given: \u201cSponsor decision\u201d. " in said(old, new)


def test_a_blank_reason_is_no_reason() -> None:
    old, new = pair(RECRUITING)
    status_module(new)["overallStatus"] = "TERMINATED"
    status_module(new)["whyStopped"] = " \n "
    assert said(old, new) == ("Stopped early: nobody new can join. If you are taking part, "
                              "talk to your study team about what this means for you")


def test_an_edited_multi_line_reason_is_one_line() -> None:
    old, new = pair(TERMINATED)
    status_module(new)["whyStopped"] = "Insufficient number\nof participants"
    assert said(old, new) == ("Reason given for stopping: \u201cInsufficient number of "
                              "participants\u201d. In plain words: not enough people joined "
                              "the trial")


def test_free_text_in_titles_names_and_places_is_one_line() -> None:
    old, new = pair(RECRUITING)
    module(new, "identificationModule")["briefTitle"] = "Tofacitinib in\n  Refractory DM"
    module(new, "sponsorCollaboratorsModule")["leadSponsor"]["name"] = "Zhejiang\r\nUniversity"
    module(new, "armsInterventionsModule")["interventions"].append(
        {"type": "DRUG", "name": "Baricitinib\n(matching)"})
    sites(new).append({**LYON, "city": " Lyon\n", "country": "France  "})
    said_now = sentences(old, new)
    for sentence in said_now:
        assert_one_clean_line(sentence)
    assert sorted(said_now) == sorted([
        "A new site is recruiting in Lyon, France",
        "A treatment was added: Baricitinib (matching)",
        "New lead sponsor: Zhejiang University",
        "New title: Tofacitinib in Refractory DM",
    ])


def test_every_sentence_for_a_busy_update_is_one_clean_line() -> None:
    old, new = pair(RECRUITING)
    for edit in EDITS.values():
        edit(new)
    changes = diff(old, new)
    assert {c.kind for c in changes} == set(EDITS)
    said_now = [explain(c, old, new) for c in changes]
    for sentence in said_now:
        assert_one_clean_line(sentence)
        assert not raw_codes_in(sentence), sentence
