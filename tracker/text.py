"""Small text helpers every view shares, each written once: one line, shortened, lists, links.

Registry text is untrusted: `one_line` removes every control character (and the characters
XML cannot carry), so what it returns is safe for a mail header, an Atom title or a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

# C0 and C1 controls, DEL, Unicode line/paragraph separators, lone surrogates, non-characters.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]+")
JOINER = "|"  # how list columns (subtypes, countries...) are stored, and CSV cells joined
STUDY_URL = "https://clinicaltrials.gov/study/"


def one_line(text: str | None) -> str:
    """`text` on one line: control characters become spaces, runs of whitespace one space."""
    return " ".join(CONTROL.sub(" ", text or "").split())


def shorten(text: str | None, limit: int) -> str:
    """`text` on one line, cut to at most `limit` characters with an ellipsis."""
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def split_list(joined: str | None) -> list[str]:
    """A stored "|"-joined list as a list, without empty items."""
    return [part for part in (joined or "").split(JOINER) if part]


def join_list(items: Iterable[str]) -> str | None:
    """The stored form of a list; None for an empty one."""
    return JOINER.join(items) or None


def study_url(nct_id: str) -> str:
    """The study's page on ClinicalTrials.gov; the id is percent-encoded, so whatever it
    holds the link stays one path segment under /study/."""
    return STUDY_URL + quote(one_line(nct_id), safe="")


def history_url(nct_id: str) -> str:
    """The study's record history on ClinicalTrials.gov."""
    return study_url(nct_id) + "?tab=history"
