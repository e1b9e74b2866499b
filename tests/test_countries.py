"""Specification of `tracker.countries`: what a user may type for a country, what comes back
(the registry's own spelling, the one study rows store), and how a typo is refused.

The registry's spellings come from real data kept in tests/data/: the sites of the real study
records the fixtures are built from, and the LocationCountry values the live API reported for
the whole registry on 2026-08-08 (every one of its 226 spellings).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracker.countries import all_names, resolve
from tracker.errors import TrackerError, UnknownCountry

DATA = Path(__file__).parent / "data"
REGISTRY_VALUES = DATA / "responses" / "arjuns238_stats_field_values_cardinality_20260808.json"

IVORY = "Côte d\u2019Ivoire"  # the registry writes a curly apostrophe

# Spellings on older records that the registry has since replaced; both are registry names.
RENAMED = {"Russian Federation": "Russia"}


def record_countries() -> list[str]:
    """Every distinct site country in the real study records, exactly as written."""
    paths = [*(DATA / "studies").glob("*.json"), *(DATA / "real").glob("*.json")]
    found = set()
    for path in paths:
        protocol = json.loads(path.read_text()).get("protocolSection", {})
        for site in protocol.get("contactsLocationsModule", {}).get("locations", []):
            if site.get("country"):
                found.add(site["country"])
    return sorted(found)


def registry_countries() -> list[str]:
    fields = json.loads(REGISTRY_VALUES.read_text())
    field = next(f for f in fields if f["piece"] == "LocationCountry")
    assert len(field["topValues"]) == field["uniqueValuesCount"]  # the list is complete
    return [v["value"] for v in field["topValues"]]


def test_every_country_the_registry_uses_resolves_to_itself() -> None:
    for spelling in registry_countries():
        # Rows store countries with whitespace collapsed; one registry value ends in a space.
        assert resolve(spelling) == " ".join(spelling.split())


def test_every_country_in_the_real_records_resolves_to_itself_or_its_current_spelling() -> None:
    countries = record_countries()
    assert {"United States", "South Korea", "Taiwan", "France", "Guam"} <= set(countries)
    for spelling in countries:
        assert resolve(spelling) == RENAMED.get(spelling, spelling)


def test_a_snapshot_holding_an_older_spelling_gets_that_spelling_back() -> None:
    snapshot = ["China", "Russian Federation", "United States"]
    assert resolve("Russia", known=snapshot) == "Russian Federation"
    assert resolve("RU", known=snapshot) == "Russian Federation"
    assert resolve("Russia") == "Russia"


@pytest.mark.parametrize(("iso_name", "registry"), [
    ("Korea, Republic of", "South Korea"),
    ("Türkiye", "Turkey (Türkiye)"),
    ("Iran, Islamic Republic of", "Iran"),
    ("Taiwan, Province of China", "Taiwan"),
    ("Viet Nam", "Vietnam"),
    ("Syrian Arab Republic", "Syria"),
    ("Bolivia, Plurinational State of", "Bolivia"),
    ("Venezuela, Bolivarian Republic of", "Venezuela"),
    ("Tanzania, United Republic of", "Tanzania"),
    ("Moldova, Republic of", "Moldova"),
    ("Lao People's Democratic Republic", "Laos"),
    ("Myanmar", "Burma"),
    ("Congo, The Democratic Republic of the", "Democratic Republic of the Congo"),
    ("United States of America", "United States"),
    ("United Kingdom of Great Britain and Northern Ireland", "United Kingdom"),
    ("Czech Republic", "Czechia"),
])
def test_iso_names_resolve_to_the_registry_spelling(iso_name: str, registry: str) -> None:
    assert resolve(iso_name) == registry


@pytest.mark.parametrize(("typed", "registry"), [
    ("france", "France"),
    ("  FRANCE ", "France"),
    ("cote d'ivoire", IVORY),
    ("CÔTE D'IVOIRE", IVORY),
    ("Cote d\u00b4Ivoire", IVORY),
    ("turkiye", "Turkey (Türkiye)"),
    ("the netherlands", "Netherlands"),
    ("Guinea Bissau", "Guinea-Bissau"),
    ("St. Lucia", "Saint Lucia"),
    ("Trinidad & Tobago", "Trinidad and Tobago"),
    ("korea (republic of)", "South Korea"),
])
def test_case_accents_spaces_and_punctuation_do_not_matter(typed: str, registry: str) -> None:
    assert resolve(typed) == registry


@pytest.mark.parametrize(("code", "registry"), [
    ("FR", "France"), ("fr", "France"), ("FRA", "France"), ("DE", "Germany"),
    ("GB", "United Kingdom"), ("GBR", "United Kingdom"), ("US", "United States"),
    ("USA", "United States"), ("KR", "South Korea"), ("TR", "Turkey (Türkiye)"),
    ("CI", IVORY), ("TWN", "Taiwan"),
])
def test_iso_codes_resolve_to_the_registry_spelling(code: str, registry: str) -> None:
    assert resolve(code) == registry


@pytest.mark.parametrize(("alias", "registry"), [
    ("U.S.A.", "United States"), ("America", "United States"),
    ("UK", "United Kingdom"), ("Great Britain", "United Kingdom"),
    ("Britain", "United Kingdom"), ("England", "United Kingdom"),
    ("Scotland", "United Kingdom"), ("Wales", "United Kingdom"),
    ("Northern Ireland", "United Kingdom"),
    ("Korea", "South Korea"), ("Republic of Korea", "South Korea"),
    ("Turkey", "Turkey (Türkiye)"), ("Russia", "Russia"), ("Iran", "Iran"),
    ("Holland", "Netherlands"), ("Viet Nam", "Vietnam"), ("Syria", "Syria"),
    ("Ivory Coast", IVORY), ("Macedonia", "North Macedonia"),
    ("Swaziland", "Eswatini"), ("Cape Verde", "Cabo Verde"), ("Vatican City", "Holy See"),
    ("Palestine", "Palestinian Territories"), ("DR Congo", "Democratic Republic of the Congo"),
    ("UAE", "United Arab Emirates"),
])
def test_common_aliases_resolve_to_the_registry_spelling(alias: str, registry: str) -> None:
    assert resolve(alias) == registry


@pytest.mark.parametrize(("typo", "meant"), [
    ("Frnace", "France"), ("Germny", "Germany"), ("Untied Kingdom", "United Kingdom"),
    ("Swizerland", "Switzerland"), ("Englnd", "United Kingdom"), ("Turky", "Turkey (Türkiye)"),
])
def test_a_typo_is_refused_with_the_country_it_is_close_to(typo: str, meant: str) -> None:
    with pytest.raises(UnknownCountry) as caught:
        resolve(typo)
    assert caught.value.given == typo
    assert caught.value.suggestions[0] == meant


def test_the_message_offers_the_suggestion() -> None:
    with pytest.raises(UnknownCountry) as caught:
        resolve("Frnace")
    assert str(caught.value) == "'Frnace' is not a country name we know; did you mean France?"


def test_several_suggestions_are_listed_in_one_sentence() -> None:
    error = UnknownCountry("Austrlia", ("Australia", "Austria", "Estonia"))
    assert str(error) == ("'Austrlia' is not a country name we know; "
                          "did you mean Australia, Austria or Estonia?")


def test_suggestions_are_at_most_three_registry_spellings_without_repeats() -> None:
    with pytest.raises(UnknownCountry) as caught:
        resolve("Guinae")
    suggestions = caught.value.suggestions
    assert 1 <= len(suggestions) <= 3
    assert len(set(suggestions)) == len(suggestions)
    assert all(resolve(s) == s for s in suggestions)


@pytest.mark.parametrize("nonsense", ["Xyz", "Atlantis Prime", "QQ", "", "   "])
def test_nonsense_is_refused_with_a_hint_instead_of_suggestions(nonsense: str) -> None:
    with pytest.raises(UnknownCountry) as caught:
        resolve(nonsense)
    assert caught.value.suggestions == ()
    assert str(caught.value) == (f"'{nonsense}' is not a country name we know; "
                                 "use an English name such as France or United Kingdom.")


def test_an_unknown_country_is_a_usage_error() -> None:
    error = UnknownCountry("Xyz")
    assert isinstance(error, TrackerError)
    assert error.exit_code == 2


def test_a_spelling_in_the_snapshot_is_accepted_even_if_this_module_does_not_know_it() -> None:
    snapshot = ["France", "Freedonia"]
    assert resolve("Freedonia", known=snapshot) == "Freedonia"
    assert resolve(" freedonia ", known=snapshot) == "Freedonia"
    assert resolve("France", known=snapshot) == "France"
    with pytest.raises(UnknownCountry) as caught:
        resolve("Fredonia", known=snapshot)
    assert "Freedonia" in caught.value.suggestions
    with pytest.raises(UnknownCountry):
        resolve("Freedonia")


def test_all_names_lists_every_country_once_in_the_registry_spelling() -> None:
    names = all_names()
    assert len(names) == len(set(names)) >= 249
    assert {"South Korea", "Turkey (Türkiye)", IVORY, "Kosovo"} <= set(names)
    assert "Serbia and Montenegro" not in names  # accepted from old records, not offered
    assert all(resolve(name) == name for name in names)


def test_all_names_sorts_as_a_reader_would() -> None:
    names = all_names()
    assert names.index("Costa Rica") < names.index(IVORY) < names.index("Croatia")
    assert names.index("Azerbaijan") < names.index("The Bahamas") < names.index("Bahrain")
