"""Country names as ClinicalTrials.gov writes them, from whatever a user types.

Study rows keep each site's country exactly as the registry spells it ("South Korea",
"Turkey (Türkiye)", "Côte d'Ivoire" with a curly apostrophe), so a filter finds rows only when
it uses that spelling. `resolve` turns a registry spelling, an ISO 3166 name or code, or a
common alias into the registry's spelling, and refuses anything else with suggestions, so a
typo never silently matches nothing. ISO data comes from pycountry; only the registry's
departures from it are kept here. Pure: no I/O, and the lookup table is built once.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from typing import Any

import pycountry

from tracker.errors import UnknownCountry

# Where the registry's spelling differs from pycountry's common_name (or name), by ISO alpha-2.
# Taken from every LocationCountry value the live API reported on 2026-08-08 (226 spellings).
# VI is a judgement: the registry writes plain "Virgin Islands", read here as the US territory.
REGISTRY_SPELLINGS = {
    "AX": "Aland Islands", "BN": "Brunei", "BQ": "Bonaire, Saint Eustatius and Saba",
    "BS": "The Bahamas", "CD": "Democratic Republic of the Congo", "CG": "Republic of the Congo",
    "CI": "Côte d\u2019Ivoire", "CW": "Curacao", "FM": "Micronesia", "GM": "The Gambia",
    "MF": "Saint Martin", "MM": "Burma", "MO": "Macau", "PS": "Palestinian Territories",
    "RE": "Reunion", "RU": "Russia", "TF": "French Southern and Antarctic Lands",
    "TR": "Turkey (Türkiye)", "VA": "Holy See", "VI": "Virgin Islands",
}

# Registry spellings with no current ISO 3166-1 entry. Only Kosovo is a country one can pick
# today; the others name states that no longer exist but still appear on old records.
CURRENT_EXTRAS = ("Kosovo",)
FORMER_EXTRAS = ("Serbia and Montenegro", "Federal Republic of Yugoslavia",
                 "Netherlands Antilles")

# What people type that neither the registry nor ISO spells, by ISO alpha-2.
ALIASES = {
    "America": "US", "UK": "GB", "Great Britain": "GB", "Britain": "GB", "England": "GB",
    "Scotland": "GB", "Wales": "GB", "Northern Ireland": "GB", "Korea": "KR",
    "Republic of Korea": "KR", "Turkey": "TR", "Holland": "NL", "Ivory Coast": "CI",
    "Macedonia": "MK", "Swaziland": "SZ", "Cape Verde": "CV", "East Timor": "TL",
    "Vatican": "VA", "Vatican City": "VA", "Palestine": "PS", "DR Congo": "CD", "DRC": "CD",
    "Congo-Kinshasa": "CD", "Congo-Brazzaville": "CG", "UAE": "AE", "Bosnia": "BA",
    "US Virgin Islands": "VI",
}

# Apostrophes (straight, curly, backtick, acute) and dots join what they sit between, so the
# registry's curly "Côte d'Ivoire" matches "Cote d'Ivoire" and "Cote dIvoire", "U.S.A." "USA".
_DROPPED = re.compile("['\u2018\u2019`\u00b4.]")
_SEPARATORS = re.compile(r"[^0-9a-z]+")


def _normal(name: str) -> str:
    """The form names are compared in: no accents, case, punctuation, leading "the" or "St."."""
    text = unicodedata.normalize("NFKD", _DROPPED.sub("", name.replace("&", " and ")))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    words = _SEPARATORS.sub(" ", text).split()
    if words[:1] == ["the"]:
        words = words[1:]
    return " ".join("saint" if w == "st" else w for w in words)


def registry_name(country: Any) -> str:
    """The registry's spelling for a pycountry country (an override, else its everyday name)."""
    default: str = getattr(country, "common_name", None) or country.name
    return REGISTRY_SPELLINGS.get(country.alpha_2, default)


@cache
def _table() -> dict[str, str]:
    """Normalised name or code -> registry spelling. Earlier sources win a clash, so a registry
    spelling beats an alias, and any name beats an ISO code."""
    by_code = {c.alpha_2: registry_name(c) for c in pycountry.countries}
    table: dict[str, str] = {}
    for spelling in (*by_code.values(), *CURRENT_EXTRAS, *FORMER_EXTRAS):
        table.setdefault(_normal(spelling), spelling)
    for alias, code in ALIASES.items():
        table.setdefault(_normal(alias), by_code[code])
    for country in pycountry.countries:
        spelling = by_code[country.alpha_2]
        for attr in ("name", "common_name", "official_name", "alpha_3", "alpha_2"):
            if value := getattr(country, attr, None):
                table.setdefault(_normal(value), spelling)
    return table


def all_names() -> list[str]:
    """Registry spellings of every country one can pick today, in alphabetical order."""
    names = {registry_name(c) for c in pycountry.countries} | set(CURRENT_EXTRAS)
    return sorted(names, key=_normal)


def resolve(name: str, known: Iterable[str] = ()) -> str:
    """The registry's spelling of the country `name` means.

    `known` holds the spellings in the snapshot. One of them is returned as-is when it matches
    `name`, or when it spells the same country (an older row may say "Russian Federation" where
    the registry now writes "Russia"), so a filter finds the rows that exist. Anything else
    raises UnknownCountry with up to three close spellings. Codes and other keys of three
    letters or fewer are matched whole and never suggested: a short typo is close to dozens.
    """
    snapshot = [k for k in known if k.strip()]
    key, table = _normal(name), _table()
    known_by_key = {_normal(k): k for k in snapshot}
    if key in known_by_key:
        return known_by_key[key]
    if key not in table:
        candidates = [k for k in (*table, *known_by_key) if len(k) > 3]
        close = difflib.get_close_matches(key, candidates, n=10, cutoff=0.75)
        spellings = (known_by_key.get(k) or table[k] for k in close)
        raise UnknownCountry(name, tuple(dict.fromkeys(spellings))[:3])
    spelling = table[key]
    same = sorted(k for k in snapshot if table.get(_normal(k)) == spelling)
    return spelling if not same or spelling in same else same[0]
