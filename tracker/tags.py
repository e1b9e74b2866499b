"""Tag a study with the myositis subtypes it concerns and the treatment classes it tests.

The words live in `vocabulary.toml` (extendable through TRACKER_VOCABULARY), never in code.
Tagging is pure: a raw API record in, tags with the words that produced them out, so a wrong
tag can always be explained. The patient-relevant facts (recruiting, children, where) are
extracted here too, since they are what the tag filters combine with.

Rules, in brief: longer terms win over the shorter terms inside them; MeSH terms name a
subtype only when the words name none; abbreviations and
context-dependent tags count only in a study that is about myositis on other evidence; the
brief summary is read only when conditions, keywords, titles and MeSH name no subtype; a term
preceded by a negation ("excluding", "other than", "non-") or followed by "excluded" does not
count; eligibility criteria are never read.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from tracker.errors import ConfigError
from tracker.record import Record, get
from tracker.text import join_list

MYOSITIS_MESH = "D009220"
FACTS_VERSION = "2"  # bump when columns() changes, so every study is re-tagged
OTHER_THERAPY = "other"
NEGATION_BEFORE = re.compile(
    r"\b(exclud\w*|except|other than|rather than|not|without|unlike)\b")
NON_PREFIX = re.compile(r"\bnon\W*$")  # "non-IBM", but "non-IBM myositis" is still myositis
NEGATION_AFTER = re.compile(r"^\W*(\w+\W+){0,3}(excluded|ineligible|not eligible)\b")
SENTENCE_END = re.compile(r"[.,;:!?()\n]")  # a negation reaches to the end of its clause
MYOSITIS_WORDS = re.compile(r"myositi|myopath", re.IGNORECASE)
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


@dataclass
class Tags:
    subtypes: dict[str, list[Evidence]] = field(default_factory=dict)
    therapies: dict[str, list[Evidence]] = field(default_factory=dict)


def load_vocabulary(extra: Path | None = None) -> Vocabulary:
    """The shipped vocabulary, plus `extra` (a TOML file of the same shape) if given."""
    base_text = resources.files("tracker").joinpath("vocabulary.toml").read_text("utf-8")
    data = tomllib.loads(base_text)
    texts = [base_text]
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


class _Matcher:
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
                if not _negated(clean, m.start(), m.end()):
                    term = normalise(m.group(0))
                    # IGNORECASE also matches letters that lower() keeps apart (a dotless
                    # i, a long s): such a match names no term of ours.
                    if term in self.by_term:
                        yield self.by_term[term], term, False
        if self.abbreviations:
            for m in self.abbreviations.finditer(text):
                if not _negated(text.lower(), m.start(), m.end()):
                    yield self.by_abbreviation[m.group(0)], m.group(0), True


def _words(alternatives: list[str], flags: int, gap: str = "") -> re.Pattern[str]:
    """Any of `alternatives` as whole words; `gap` is allowed where letters meet digits."""
    joined = "|".join(gap.join(re.escape(part) for part in re.split(r"(?<=[a-z])(?=\d)", a))
                      for a in alternatives)
    return re.compile(rf"(?<![A-Za-z0-9])(?:{joined})(?![A-Za-z0-9])", flags)


def _negated(text: str, start: int, end: int) -> bool:
    sentence_start = max((m.end() for m in SENTENCE_END.finditer(text, 0, start)), default=0)
    before = " ".join(text[sentence_start:start].split()[-3:])
    if NEGATION_BEFORE.search(before) or NON_PREFIX.search(before):
        return True
    after_end = SENTENCE_END.search(text, end)
    after = text[end:after_end.start() if after_end else len(text)]
    return bool(NEGATION_AFTER.search(after))


class Tagger:
    """Tags studies with one vocabulary; build once, use for every study of a sync."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.subtypes = _Matcher(vocabulary.subtypes.values())
        self.therapies = _Matcher(vocabulary.therapies.values())
        self.ignore = _Matcher([TagDef("ignore", "ignore", terms=vocabulary.ignore)])
        self.mesh = {m: t.name for t in vocabulary.subtypes.values() for m in t.mesh}

    def tag(self, study: Record) -> Tags:
        return Tags(self._subtypes(study), self._therapies(study))

    def _subtypes(self, study: Record) -> dict[str, list[Evidence]]:
        p = study.get("protocolSection", {})
        sources: list[tuple[str, str]] = [
            *(("conditions", c) for c in get(p, "conditionsModule.conditions", []) or []),
            *(("keywords", k) for k in get(p, "conditionsModule.keywords", []) or []),
            *((field, get(p, f"identificationModule.{key}"))
              for field, key in (("title", "briefTitle"), ("official title", "officialTitle"),
                                 ("acronym", "acronym"))
              if get(p, f"identificationModule.{key}")),
        ]
        found: dict[str, list[Evidence]] = {}
        weak: dict[str, list[Evidence]] = {}  # abbreviations and context-dependent tags
        for source, text in sources:
            self._collect(text, source, found, weak)
        # The registry's MeSH mapping is coarse (juvenile DM is filed under Dermatomyositis,
        # IMNM under Myositis), so it names a subtype only when the words name none, and
        # otherwise only backs up what the words already say.
        named = set(found)
        for mesh in get(study, "derivedSection.conditionBrowseModule.meshes", []) or []:
            tag = self.mesh.get(mesh.get("id"))
            if tag and (not named - {"iim"} or tag in named):
                words = f"{mesh['id']} {mesh.get('term') or ''}".strip()
                found.setdefault(tag, []).append(Evidence("MeSH", words))
        ancestors = get(study, "derivedSection.conditionBrowseModule.ancestors", []) or []
        context = (bool(found) or any(a.get("id") == MYOSITIS_MESH for a in ancestors)
                   or any(MYOSITIS_WORDS.search(text) for _, text in sources))
        summary = get(p, "descriptionModule.briefSummary")
        if summary and context and not set(found) - {"iim"}:
            self._collect(summary, "summary", found, weak)
        if context:
            for tag, evidence in weak.items():
                found.setdefault(tag, []).extend(evidence)
        order = list(self.vocabulary.subtypes)
        return {t: _unique(found[t]) for t in sorted(found, key=order.index)}

    def _collect(self, text: str, source: str, found: dict[str, list[Evidence]],
                 weak: dict[str, list[Evidence]]) -> None:
        for tag, words, is_abbreviation in self.subtypes.find(text):
            needs_context = is_abbreviation or self.vocabulary.subtypes[tag].needs_context
            (weak if needs_context else found).setdefault(tag, []).append(
                Evidence(source, words))

    def _is_control(self, name: str) -> bool:
        """An intervention whose name starts with a control term (placebo, sham ...)."""
        return any(match.start() == 0 for match in self.ignore.spans(name))

    def _therapies(self, study: Record) -> dict[str, list[Evidence]]:
        found: dict[str, list[Evidence]] = {}
        interventions = get(study, "protocolSection.armsInterventionsModule.interventions",
                            []) or []
        for intervention in interventions:
            name = str(intervention.get("name") or "")
            if self._is_control(name):
                continue  # "Placebo to match tofacitinib", "Sham exercise"
            texts = [name, *(intervention.get("otherNames") or [])]
            hits = [(tag, words) for text in texts for tag, words, _ in self.therapies.find(text)]
            if hits:
                for tag, words in hits:
                    found.setdefault(tag, []).append(Evidence(f"intervention {name}", words))
            elif name and not any(True for _ in self.ignore.find(name)):
                found.setdefault(OTHER_THERAPY, []).append(Evidence("intervention", name))
        meshes = get(study, "derivedSection.interventionBrowseModule.meshes", []) or []
        for mesh in meshes:
            for tag, words, _ in self.therapies.find(str(mesh.get("term", ""))):
                found.setdefault(tag, []).append(Evidence("MeSH", words))
        order = self.vocabulary.therapy_names
        return {t: _unique(found[t]) for t in sorted(found, key=order.index)}


def _unique(evidence: list[Evidence]) -> list[Evidence]:
    return list(dict.fromkeys(evidence))


# --- patient-relevant facts ----------------------------------------------------------------

def age_in_years(text: str | None) -> float | None:
    """"6 Months" -> 0.5; "18 Years" -> 18.0; None or "N/A" -> None."""
    if not text:
        return None
    found = re.match(r"\s*(\d+(?:\.\d+)?)\s*(year|month|week|day|hour|minute)", text, re.I)
    if not found:
        return None
    per_year = {"year": 1, "month": 12, "week": 52.1775, "day": 365.25, "hour": 8766,
                "minute": 525960}
    return round(float(found.group(1)) / per_year[found.group(2).lower()], 3)


def recruiting_sites(study: Record) -> list[dict[str, Any]]:
    """Sites open to patients now: those marked RECRUITING, or, in a recruiting study whose
    sites carry no status at all, every site."""
    locations = get(study, "protocolSection.contactsLocationsModule.locations", []) or []
    status = get(study, "protocolSection.statusModule.overallStatus")
    if status != "RECRUITING":
        return []  # a stale site status does not make a closed study recruit
    if any("status" in loc for loc in locations):
        chosen = [loc for loc in locations if loc.get("status") == "RECRUITING"]
    else:
        chosen = locations
    sites = []
    for loc in chosen:
        site = {k: loc[k] for k in ("facility", "city", "state", "country") if loc.get(k)}
        point = loc.get("geoPoint") or {}
        if "lat" in point and "lon" in point:
            site["lat"], site["lon"] = point["lat"], point["lon"]
        sites.append(site)
    return sites


def columns(tags: Tags, study: Record) -> dict[str, Any]:
    """The snapshot columns for tags and patient facts."""
    p = study.get("protocolSection", {})
    minimum = age_in_years(get(p, "eligibilityModule.minimumAge"))
    maximum = age_in_years(get(p, "eligibilityModule.maximumAge"))
    std_ages = get(p, "eligibilityModule.stdAges")
    children = ("CHILD" in std_ages) if std_ages else (minimum is None or minimum < 18)
    sites = recruiting_sites(study)
    points = sorted({(loc["geoPoint"]["lat"], loc["geoPoint"]["lon"])
                     for loc in get(p, "contactsLocationsModule.locations", []) or []
                     if isinstance(loc.get("geoPoint"), dict)
                     and {"lat", "lon"} <= set(loc["geoPoint"])})
    countries = sorted({" ".join(s["country"].split()) for s in sites if s.get("country")})
    return {
        "subtypes": join_list(tags.subtypes),
        "therapies": join_list(tags.therapies),
        "tag_evidence": json.dumps({
            "subtypes": {t: [[e.source, e.text] for e in ev] for t, ev in tags.subtypes.items()},
            "therapies": {t: [[e.source, e.text] for e in ev] for t, ev in tags.therapies.items()},
        }, ensure_ascii=False),
        "recruiting": get(p, "statusModule.overallStatus") == "RECRUITING",
        "children": bool(children),
        "min_age_years": minimum,
        "max_age_years": maximum,
        "recruiting_countries": join_list(countries),
        "recruiting_sites": json.dumps(sites, ensure_ascii=False) if sites else None,
        "site_points": json.dumps(points) if points else None,
    }


def results_overdue(status: str | None, has_results: bool, primary_completion: str | None,
                    completion: str | None, today: date,
                    study_type: str | None = "INTERVENTIONAL") -> bool:
    """An interventional study completed more than 12 months ago (by its primary completion,
    else completion date) with no results posted. A partial date counts from the end of the
    period it names. Observational studies are not expected to post results here."""
    deadline = results_deadline(status, has_results, primary_completion, completion,
                                study_type)
    return deadline is not None and today > deadline


def results_deadline(status: str | None, has_results: bool, primary_completion: str | None,
                     completion: str | None,
                     study_type: str | None = "INTERVENTIONAL") -> date | None:
    """The day results fall due (12 months after completion) for a completed interventional
    study without results; None when none are expected or the date cannot be read."""
    if status != "COMPLETED" or has_results or study_type != "INTERVENTIONAL":
        return None
    when = primary_completion or completion
    end = _period_end(when) if when else None
    if end is None or end.year >= date.max.year:
        return None  # unreadable, or a year no one will reach (date() cannot count past it)
    try:
        return end.replace(year=end.year + 1)
    except ValueError:  # 29 February
        return end.replace(year=end.year + 1, day=28)


def _period_end(partial: str) -> date | None:
    parts = partial.split("-")
    try:
        if len(parts) == 1:
            return date(int(parts[0]), 12, 31)
        year, month = int(parts[0]), int(parts[1])
        if len(parts) == 2:
            following = date(year + (month == 12), month % 12 + 1, 1)
            return date.fromordinal(following.toordinal() - 1)
        return date(year, month, int(parts[2]))
    except ValueError:
        return None
