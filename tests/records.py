"""Helpers for editing copies of real records, shared by the specs."""

from __future__ import annotations

import copy
from typing import Any

from tests.conftest import load_study, updated

Study = dict[str, Any]


def module(study: Study, name: str) -> dict[str, Any]:
    return study["protocolSection"].setdefault(name, {})


def status_module(study: Study) -> dict[str, Any]:
    return module(study, "statusModule")


def sites(study: Study) -> list[dict[str, Any]]:
    return module(study, "contactsLocationsModule").setdefault("locations", [])


def pair(nct_id: str) -> tuple[Study, Study]:
    """(as stored, as the sponsor's next update posts it): edit the second, diff the two."""
    old = load_study(nct_id)
    return old, updated(old)


def without_results(study: Study) -> Study:
    """`study` as it stood before its results were posted, a month before its real update."""
    before = updated(study, days=-30)
    del before["resultsSection"]
    before["hasResults"] = False
    for key in ("resultsFirstSubmitDate", "resultsFirstSubmitQcDate",
                "resultsFirstPostDateStruct"):
        del status_module(before)[key]
    return before


TOFACITINIB_DM = "NCT04078230"  # the real record `about` edits
NEUTRAL_SUMMARY = "This study tests whether the study drug improves muscle strength."


def about(conditions: list[str], keywords: list[str] | None = None, *,
          title: str = "A Randomized Trial of the Study Drug", official_title: str | None = None,
          acronym: str | None = None, summary: str | None = NEUTRAL_SUMMARY,
          criteria: str | None = None, meshes: list[dict[str, str]] | None = None,
          ancestors: list[dict[str, str]] | None = None) -> Study:
    """A copy of a real record whose condition words and condition MeSH terms are replaced.

    Without `meshes`/`ancestors` the study has no derived condition terms at all, so it is about
    myositis only if its words say so."""
    s = copy.deepcopy(load_study(TOFACITINIB_DM))
    p = s["protocolSection"]
    p["conditionsModule"] = {"conditions": conditions}
    if keywords:
        p["conditionsModule"]["keywords"] = keywords
    ident = p["identificationModule"]
    ident["briefTitle"] = title
    ident.pop("officialTitle", None)
    if official_title:
        ident["officialTitle"] = official_title
    if acronym:
        ident["acronym"] = acronym
    if summary is None:
        p["descriptionModule"].pop("briefSummary", None)
    else:
        p["descriptionModule"]["briefSummary"] = summary
    if criteria is not None:
        p["eligibilityModule"]["eligibilityCriteria"] = criteria
    browse: dict[str, Any] = {}
    if meshes:
        browse["meshes"] = meshes
    if ancestors:
        browse["ancestors"] = ancestors
    if browse:
        s["derivedSection"]["conditionBrowseModule"] = browse
    else:
        del s["derivedSection"]["conditionBrowseModule"]
    return s
