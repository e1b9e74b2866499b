"""Helpers for editing copies of real records, shared by the diff and plain-language specs."""

from __future__ import annotations

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
