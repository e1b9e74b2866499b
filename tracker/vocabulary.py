"""The words behind every tag, and how they are found in registry text.

The words live in `vocabulary.toml` (subtypes) and `treatments.toml` (treatment classes and
controls), extendable through TRACKER_VOCABULARY, never in code.
`Matcher` finds a tag group's terms (whole words, longest first, any case) and
abbreviations (whole words, exact case) and tells a negated mention ("excluding IBM") from
a real one. The rules that use them are in `subtypes` and `treatments`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tracker.errors import ConfigError

FACTS_VERSION = "2"  # bump when tags.columns() changes, so every study is re-tagged
OTHER_THERAPY = "other"
SHIPPED = ("vocabulary.toml", "treatments.toml")  # subtypes; treatment classes and controls
NEGATION_BEFORE = re.compile(
    r"\b(exclud\w*|except|other than|rather than|not|without|unlike)\b")
NON_PREFIX = re.compile(r"\bnon\W*$")  # "non-IBM", but "non-IBM myositis" is still myositis
NEGATION_AFTER = re.compile(r"^\W*(\w+\W+){0,3}(excluded|ineligible|not eligible)\b")
SENTENCE_END = re.compile(r"[.,;:!?()\n]")  # a negation reaches to the end of its clause
LETTER_DIGIT_GAP = re.compile(r"(?<=[a-z])\s+(?=\d)")


@dataclass(frozen=True)
class TagDef:
    name: str
    label: str
    terms: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()
    mesh: tuple[str, ...] = ()
    needs_context: bool = False


@dataclass(frozen=True)
class Vocabulary:
    subtypes: dict[str, TagDef]
    therapies: dict[str, TagDef]
    ignore: tuple[str, ...]
    digest: str

    @property
    def therapy_names(self) -> list[str]:
        return [*self.therapies, OTHER_THERAPY]

    def label(self, name: str) -> str:
        if name == OTHER_THERAPY:
            return "Other treatments"
        tag = self.subtypes.get(name) or self.therapies.get(name)
        return tag.label if tag else name


@dataclass(frozen=True)
class Evidence:
    source: str
    text: str


def load_vocabulary(extra: Path | None = None) -> Vocabulary:
    """The shipped vocabulary, plus `extra` (a TOML file of the same shape) if given."""
    texts = [resources.files("tracker").joinpath(name).read_text("utf-8")
             for name in SHIPPED]
    data: dict[str, Any] = {}
    for text in texts:
        data.update(tomllib.loads(text))
    if extra is not None:
        try:
            extra_text = Path(extra).read_text("utf-8")
            _merge(data, tomllib.loads(extra_text))
        except OSError as error:
            raise ConfigError(f"TRACKER_VOCABULARY={extra} cannot be read: "
                              f"{error.strerror or error}") from error
        except (tomllib.TOMLDecodeError, ValueError, TypeError) as error:
            raise ConfigError(f"TRACKER_VOCABULARY={extra} is not a valid vocabulary: "
                              f"{error}") from error
        texts.append(extra_text)
    which = "The vocabulary" + (f" (with TRACKER_VOCABULARY={extra})" if extra else "")
    try:
        subtypes = {n: _tagdef(n, d) for n, d in data.get("subtypes", {}).items()}
        therapies = {n: _tagdef(n, d) for n, d in data.get("therapies", {}).items()}
    except (TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{which} is not valid: {error}") from error
    if OTHER_THERAPY in therapies:
        raise ConfigError(f"{which} may not define a therapy named {OTHER_THERAPY!r}.")
    ignore = tuple(data.get("ignore", {}).get("terms", []))
    digest = hashlib.sha256("\0".join([FACTS_VERSION, *texts]).encode()).hexdigest()[:16]
    return Vocabulary(subtypes, therapies, ignore, digest)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for section, tags in extra.items():
        if section not in ("subtypes", "therapies", "ignore"):
            raise ValueError(f"unknown section [{section}] (use subtypes, therapies or ignore)")
        if not isinstance(tags, dict):
            raise ValueError(f"{section} must be a table: [{section}]")
        if section == "ignore":
            if set(tags) - {"terms"}:
                raise ValueError("[ignore] takes only terms = [...]")
            terms = _strings("[ignore] terms", tags.get("terms", []))
            base.setdefault("ignore", {}).setdefault("terms", []).extend(terms)
            continue
        for name, tag in tags.items():
            if not isinstance(tag, dict):
                raise ValueError(f"{section}.{name} must be a table: [{section}.{name}]")
            target = base.setdefault(section, {}).setdefault(name, {"label": name})
            for key, value in tag.items():
                if isinstance(value, list) and isinstance(target.get(key, []), list):
                    target.setdefault(key, []).extend(value)
                else:
                    target[key] = value  # a wrong type is reported by _tagdef


def _tagdef(name: str, data: dict[str, Any]) -> TagDef:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise ValueError(f"tag name {name!r} must be lower-case letters, digits and hyphens")
    known = {"label", "terms", "abbreviations", "mesh", "needs_context"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"tag {name!r} has unknown keys: {', '.join(sorted(unknown))}")
    label = data.get("label", name)
    if not isinstance(label, str):
        raise ValueError(f"tag {name!r}: label must be a string")
    needs_context = data.get("needs_context", False)
    if not isinstance(needs_context, bool):
        raise ValueError(f"tag {name!r}: needs_context must be true or false")
    return TagDef(name=name, label=label,
                  terms=_strings(f"tag {name!r}: terms", data.get("terms", [])),
                  abbreviations=_strings(f"tag {name!r}: abbreviations",
                                         data.get("abbreviations", [])),
                  mesh=_strings(f"tag {name!r}: mesh", data.get("mesh", [])),
                  needs_context=needs_context)


def _strings(what: str, value: Any) -> tuple[str, ...]:
    """A list of strings, or a clear error: "terms" = "x" would otherwise be read letter by
    letter."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings, such as [\"a\", \"b\"]")
    return tuple(value)


# --- matching ------------------------------------------------------------------------------

def normalise(text: str) -> str:
    """Lower case, dashes as spaces, "pf-06700841" as "pf06700841", single spaces."""
    return LETTER_DIGIT_GAP.sub("", _fold(text))


def _fold(text: str) -> str:
    """Lower case, dashes as spaces, single spaces; "octagam 10%" keeps its space."""
    return " ".join(re.sub(r"[\u2010-\u2015\u2212-]", " ", text.lower()).split())


class Matcher:
    """One compiled pattern per tag group: longest term first, whole words only."""

    def __init__(self, tags: Iterable[TagDef]) -> None:
        self.by_term: dict[str, str] = {}
        self.by_abbreviation: dict[str, str] = {}
        for tag in tags:
            for term in tag.terms:
                self.by_term.setdefault(normalise(term), tag.name)
            for abbreviation in tag.abbreviations:
                self.by_abbreviation.setdefault(abbreviation, tag.name)
        terms = sorted(self.by_term, key=len, reverse=True)
        # A code may be written "PF-06700841" or "PF06700841", so a term's letters may be
        # followed by its digits after a space; the text itself keeps its spaces, so that
        # "Tofacitinib 5 mg" still contains the word "tofacitinib".
        self.terms = _words(terms, re.IGNORECASE, gap=r"\s?") if terms else None
        abbreviations = sorted(self.by_abbreviation, key=len, reverse=True)
        self.abbreviations = _words(abbreviations, 0) if abbreviations else None

    def spans(self, text: str) -> Iterator[re.Match[str]]:
        """Every term match in `text`, negated or not."""
        if self.terms:
            yield from self.terms.finditer(_fold(text.strip()))

    def find(self, text: str) -> Iterator[tuple[str, str, bool]]:
        """(tag, matched words, is_abbreviation) for each non-negated match in `text`."""
        if self.terms:
            clean = _fold(text)
            for m in self.terms.finditer(clean):
                if not negated(clean, m.start(), m.end()):
                    term = normalise(m.group(0))
                    # IGNORECASE also matches letters that lower() keeps apart (a dotless
                    # i, a long s): such a match names no term of ours.
                    if term in self.by_term:
                        yield self.by_term[term], term, False
        if self.abbreviations:
            for m in self.abbreviations.finditer(text):
                if not negated(text.lower(), m.start(), m.end()):
                    yield self.by_abbreviation[m.group(0)], m.group(0), True


def _words(alternatives: list[str], flags: int, gap: str = "") -> re.Pattern[str]:
    """Any of `alternatives` as whole words; `gap` is allowed where letters meet digits."""
    joined = "|".join(gap.join(re.escape(part) for part in re.split(r"(?<=[a-z])(?=\d)", a))
                      for a in alternatives)
    return re.compile(rf"(?<![A-Za-z0-9])(?:{joined})(?![A-Za-z0-9])", flags)


def negated(text: str, start: int, end: int) -> bool:
    sentence_start = max((m.end() for m in SENTENCE_END.finditer(text, 0, start)), default=0)
    before = " ".join(text[sentence_start:start].split()[-3:])
    if NEGATION_BEFORE.search(before) or NON_PREFIX.search(before):
        return True
    after_end = SENTENCE_END.search(text, end)
    after = text[end:after_end.start() if after_end else len(text)]
    return bool(NEGATION_AFTER.search(after))


def unique(evidence: list[Evidence]) -> list[Evidence]:
    return list(dict.fromkeys(evidence))


