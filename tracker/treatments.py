"""Which classes of treatment a study tests, and what in the record says so.

Only tested interventions count: those given in an EXPERIMENTAL, ACTIVE_COMPARATOR or OTHER
arm, or in a study whose arms do not say. Set aside, each with its reason (`Assessment.ignored`):
a control (named placebo, vehicle or sham, or given only in placebo or sham arms), background
care (named so, or given alike in every arm while a drug differs between arms), a test or
assessment, and the lymphodepleting conditioning and cell collection of a cell therapy.

A tested intervention is classed by the first of:
1. its name and other names: treatments.toml terms, mechanism words, drug-name stems;
2. what the record says it is: its description, then its arms' descriptions, titles and
   summaries next to its name or code ("ABC-123, an anti-FcRn antibody");
3. the registry's intervention MeSH terms, ancestors and HIGH-relevance browse leaves that no
   named intervention accounts for.
Class words ("monoclonal antibody", "DMARD") count only when nothing more specific does; a
cell therapy aimed at CD19 is not also B-cell depletion; a small molecule is never a
biologic. A tested intervention of none of the classes is "other".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any, NamedTuple

from tracker.record import Record, get
from tracker.vocabulary import (
    OTHER_THERAPY,
    Evidence,
    Matcher,
    TagDef,
    Vocabulary,
    fold,
    normalise,
    unique,
    words_pattern,
)

# Where a class was found (the source of its Evidence) ...
NAME = "intervention name"
OTHER_NAME = "intervention other name"
DESCRIPTION = "intervention description"
ARM = "arm description"
MESH = "MeSH"
MESH_ANCESTOR = "MeSH ancestor"
MESH_ACTION = "MeSH action"
CONTEXTS = (("title", "identificationModule.briefTitle"),
            ("official title", "identificationModule.officialTitle"),
            ("summary", "descriptionModule.briefSummary"),
            ("detailed description", "descriptionModule.detailedDescription"))
# ... and why an intervention is not a tested treatment (the source of an ignored one).
NAMED_CONTROL = "named as a control"
CONTROL_ARMS_ONLY = "given only in placebo or sham arms"
NO_INTERVENTION_ONLY = "given only in no-intervention arms"
BACKGROUND = "background care"
IN_EVERY_ARM = "background care in every arm"
NOT_TREATMENT = "not a treatment (a test or assessment)"
CONDITIONING = "lymphodepleting conditioning before the cell therapy"
CELL_COLLECTION = "cell collection for the cell therapy"
NOT_GIVEN = (NAMED_CONTROL, CONTROL_ARMS_ONLY, NO_INTERVENTION_ONLY, NOT_TREATMENT)

CELL_THERAPY, B_CELL, BIOLOGICS = "cell-therapy", "b-cell", "biologics"
CONTROL_ARM_TYPES = frozenset({"PLACEBO_COMPARATOR", "SHAM_COMPARATOR"})
NO_INTERVENTION = "NO_INTERVENTION"
NEUTRAL = "-"  # the tag of words in which a class word names no treatment ("steroid-sparing")
AGENT = "agent"  # the tag of conditioning chemotherapy
SPECIFIC, GENERAL, GENERAL_MESH, WEAK_MESH = range(4)  # lower ranks win
NEAR = 120  # how many characters from a drug's name or code a mechanism word may stand
BOUNDARIES = 2  # and across how many commas or brackets ("ABC-123 (a JAK1 inhibitor)")
PHRASE = 12  # how many characters apart the words of one mechanism phrase may stand
CLAUSE_START = re.compile(r"[.,;:!?()\[\]\n]")
BOUNDARY = re.compile(r"[,;:()\[\]]")
SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
JOINED = re.compile(r"\b(or|and|vs|versus|with|plus)\b|[/+&]")
CODE = re.compile(r"\b[a-z]{1,8} ?\d[a-z0-9]*(?:[.-][a-z0-9]+)*")
FIRST_WORD = re.compile(r"[a-z]{5,}\b")
STEM_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
NOT_HANDLES = frozenset({
    "study", "studies", "placebo", "active", "oral", "topical", "dose", "doses", "standard",
    "experimental", "investigational", "intravenous", "subcutaneous", "treatment", "therapy",
    "group", "cohort", "phase", "single", "multiple", "daily", "weekly", "matching",
    "combination", "blinded", "open", "high", "low", "drug", "drugs", "infusion", "injection",
    "tablet", "tablets", "capsule", "capsules", "cream", "patients", "participants"})


@dataclass(frozen=True)
class Arm:
    label: str
    kind: str  # the registry's ArmGroupType, "" if not given
    description: str


@dataclass(frozen=True)
class Intervention:
    name: str
    kind: str  # the registry's InterventionType
    other_names: tuple[str, ...]
    description: str
    arms: tuple[Arm, ...]  # the arms that give it; none when the record does not say

    @property
    def names(self) -> list[tuple[str, str]]:
        return [(NAME, self.name), *((OTHER_NAME, n) for n in self.other_names)]


@dataclass(frozen=True)
class Finding:
    tag: str
    evidence: Evidence
    rank: int = SPECIFIC
    target_only: bool = False  # words naming a target ("IL-17"), not what kind of drug


class Mention(NamedTuple):
    """Mechanism words in a text, and how far they stand from the drug's name."""

    distance: int
    start: int
    end: int
    tag: str
    words: str


@dataclass
class Assessment:
    """The classes a study tests, with their evidence, and the interventions set aside as
    not tested: Evidence(reason, intervention name)."""

    classes: dict[str, list[Evidence]] = field(default_factory=dict)
    ignored: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    """The [rules] tables of treatments.toml (its comments say what each one is for)."""

    shipped: dict[str, frozenset[str]]  # each class's own terms in treatments.toml, normalised
    other: tuple[str, ...]
    other_abbreviations: tuple[str, ...]
    neutral: tuple[str, ...]
    mechanisms: dict[str, tuple[str, ...]]
    general: dict[str, tuple[str, ...]]
    stems: dict[str, tuple[str, int]]  # stem -> (class, rank)
    mesh: dict[str, tuple[str, int]]  # MeSH name, case-folded -> (class, rank)
    roles: dict[str, tuple[str, ...]]


@cache
def known_names() -> dict[str, str]:
    """Development codes -> the names people know ("CP-690550" -> "tofacitinib"), from the
    [names] table of the shipped treatments.toml; for patients' sentences (tracker.plain)."""
    text = resources.files("tracker").joinpath("treatments.toml").read_text("utf-8")
    return {str(code): str(name) for code, name in tomllib.loads(text).get("names", {}).items()}


def shipped_rules() -> Rules:
    text = resources.files("tracker").joinpath("treatments.toml").read_text("utf-8")
    return parse_rules(tomllib.loads(text))


def parse_rules(data: dict[str, Any]) -> Rules:
    """The rules of a treatments.toml; ValueError names a class no [therapies] table defines."""
    rules = data["rules"]
    classes = {*data["therapies"], OTHER_THERAPY}
    named = [*rules["mechanisms"], *rules["general"], *rules["stems"].values(),
             *rules["general_stems"].values(), *rules["mesh"].values(),
             *rules["general_mesh"].values(), *rules["weak_mesh"].values()]
    unknown = sorted(set(named) - classes)
    if unknown:
        raise ValueError(f"treatments.toml [rules] name unknown classes: {', '.join(unknown)}")
    return Rules(
        shipped={n: frozenset(normalise(t) for t in d.get("terms", []))
                 for n, d in data["therapies"].items()},
        other=tuple(rules["other"]), other_abbreviations=tuple(rules["other_abbreviations"]),
        neutral=tuple(rules["neutral"]),
        mechanisms={n: tuple(w) for n, w in rules["mechanisms"].items()},
        general={n: tuple(w) for n, w in rules["general"].items()},
        stems={**{s: (t, SPECIFIC) for s, t in rules["stems"].items()},
               **{s: (t, GENERAL) for s, t in rules["general_stems"].items()}},
        mesh={**{m.casefold(): (t, WEAK_MESH) for m, t in rules["weak_mesh"].items()},
              **{m.casefold(): (t, GENERAL_MESH) for m, t in rules["general_mesh"].items()},
              **{m.casefold(): (t, SPECIFIC) for m, t in rules["mesh"].items()}},
        roles={n: tuple(w) for n, w in rules["roles"].items()})


class TreatmentTagger:
    """Tags studies with the treatment classes of one vocabulary; build once per sync."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.rules = rules = shipped_rules()
        # A term the operator's TRACKER_VOCABULARY gives one class is taken from the others.
        claimed = {term: name for name, tag in vocabulary.therapies.items()
                   for term in map(normalise, tag.terms)
                   if term not in rules.shipped.get(name, frozenset())}

        def kept(name: str, terms: Iterable[str]) -> tuple[str, ...]:
            return _forms(t for t in terms if claimed.get(normalise(t), name) == name)

        named = [TagDef(n, t.label, kept(n, t.terms), t.abbreviations)
                 for n, t in vocabulary.therapies.items()]
        mechanisms = [TagDef(n, n, kept(n, words)) for n, words in rules.mechanisms.items()]
        general = [TagDef(n, n, kept(n, words)) for n, words in rules.general.items()]
        other = TagDef(OTHER_THERAPY, OTHER_THERAPY, kept(OTHER_THERAPY, rules.other),
                       rules.other_abbreviations)
        neutral = TagDef(NEUTRAL, NEUTRAL, _forms(rules.neutral))
        self.names = Matcher([*named, other, *mechanisms, *general, neutral])
        self.mechanisms = Matcher([*mechanisms, *general, neutral])
        self.rank = {normalise(t): GENERAL for tag in general for t in tag.terms}
        self.named_terms = {normalise(t) for tag in [*named, other] for t in tag.terms}
        roles = rules.roles
        self.roles = Matcher([TagDef(NAMED_CONTROL, "", _forms(vocabulary.ignore)),
                              TagDef(BACKGROUND, "", _forms(roles["background"])),
                              TagDef(NOT_TREATMENT, "", _forms(roles["not_treatment"]))])
        self.control_at_end = set(map(normalise, _forms(roles["control_at_end"])))
        self.cells = Matcher([TagDef(CONDITIONING, "", _forms(roles["conditioning"])),
                              TagDef(AGENT, "", _forms(roles["conditioning_agents"])),
                              TagDef(CELL_COLLECTION, "", _forms(roles["cell_collection"]))])
        self.aside = _any_of(roles["aside"])
        self.aside_in_names = _any_of(roles["aside_in_names"])
        self.small_molecule = _any_of(roles["small_molecule"])
        self.not_stems = frozenset(roles["not_stems"])

    def tag(self, study: Record) -> dict[str, list[Evidence]]:
        return self.assess(study).classes

    def assess(self, study: Record) -> Assessment:
        """The classes of the interventions `study` tests, and those it does not test."""
        items = interventions(study)
        in_use = {arm.label for item in items for arm in item.arms}
        ignored: list[Evidence] = []
        tested: list[tuple[Intervention, list[Finding]]] = []
        explained: set[str] = set()  # classes the interventions' names account for
        accounted: list[re.Pattern[str]] = []  # names of interventions classed by name
        for item in items:
            by_name = self._by_name(item)
            reason = self._set_aside(item, by_name, items, in_use)
            if reason not in NOT_GIVEN:  # a placebo "to match ABC-123" accounts for nothing
                explained.update(f.tag for f in by_name)
                if _best(by_name) == SPECIFIC or self._prepares_cells_by_name(item):
                    accounted.extend(handles(item))
            if reason:
                ignored.append(Evidence(reason, item.name))
            elif _best(by_name) == SPECIFIC:
                tested.append((item, by_name))
            else:
                tested.append((item, by_name + self._by_mechanism(item, study)))
        explained.update(f.tag for _, found in tested if _best(found) == SPECIFIC
                         for f in found)
        mesh: list[Finding] = []
        if any(_best(found) != SPECIFIC for _, found in tested):
            mesh = self._by_mesh(study, explained, accounted)
        if any(f.tag == CELL_THERAPY and f.rank == SPECIFIC
               for f in [*mesh, *(f for _, found in tested for f in found)]):
            tested, preparation = self._without_preparation(tested)
            ignored.extend(preparation)
        classes: dict[str, list[Evidence]] = {}
        for item, found in tested:
            if _best(found) != SPECIFIC:
                found = found + mesh
            for finding in self._resolve(item, found):
                classes.setdefault(finding.tag, []).append(finding.evidence)
        order = self.vocabulary.therapy_names
        return Assessment({t: unique(classes[t]) for t in sorted(classes, key=order.index)},
                          unique(ignored))

    # --- which interventions are tested ---------------------------------------------------

    def _set_aside(self, item: Intervention, by_name: list[Finding],
                   items: list[Intervention], in_use: set[str]) -> str | None:
        """Why `item` is not a tested treatment, or None if it is."""
        if item.kind == "DIAGNOSTIC_TEST":
            return NOT_TREATMENT
        role = self._named_role(item.name)
        if role:
            return role
        if not by_name and any(h.tag == NAMED_CONTROL for h in self.roles.hits(item.name)):
            return NAMED_CONTROL  # "Double-blind placebo run-in"
        kinds = {arm.kind for arm in item.arms}
        if kinds and kinds <= CONTROL_ARM_TYPES | {NO_INTERVENTION}:
            return CONTROL_ARMS_ONLY if kinds & CONTROL_ARM_TYPES else NO_INTERVENTION_ONLY
        labels = {arm.label for arm in item.arms}
        if len(in_use) > 1 and labels == in_use and any(
                other.arms and {a.label for a in other.arms} != in_use
                and not {a.kind for a in other.arms} <= CONTROL_ARM_TYPES
                and not self._named_role(other.name) for other in items):
            return IN_EVERY_ARM  # prednisone in the drug arm and in the placebo arm
        return None

    def _named_role(self, name: str) -> str | None:
        """A control, background care or a test, by the words that start the name (or, for a
        control, end it: "Tofacitinib matching placebo", but not "Tofacitinib or placebo")."""
        start, end = len(name) - len(name.lstrip()), len(name.rstrip(" .)]"))
        hits = self.roles.hits(name)
        for hit in hits:
            if hit.start == start:
                return hit.tag
        for hit in hits:
            if hit.end == end and hit.words in self.control_at_end \
                    and not JOINED.search(fold(name[:hit.start])):
                return NAMED_CONTROL
        return None

    def _prepares_cells_by_name(self, item: Intervention) -> bool:
        return any(True for _, text in item.names for _ in self.cells.find(text))

    def _without_preparation(self, tested: list[tuple[Intervention, list[Finding]]]) -> tuple[
            list[tuple[Intervention, list[Finding]]], list[Evidence]]:
        """In a cell-therapy study: the tested interventions less the conditioning before the
        cells and the collection of cells, and those two as ignored."""
        cells = [item for item, found in tested
                 if CELL_THERAPY in _tags(found) or _best(found) != SPECIFIC]
        kept, ignored = [], []
        for item, found in tested:
            tags = _tags(found)
            words = {tag for _, text in item.names for tag, _, _ in self.cells.find(text)}
            if CELL_THERAPY not in tags:
                words |= {tag for tag, _, _ in self.cells.find(item.description)} - {
                    CELL_COLLECTION}
            beside = any(not item.arms or not other.arms
                         or {a.label for a in item.arms} & {a.label for a in other.arms}
                         for other in cells if other is not item)
            if CELL_THERAPY in tags:
                reason = None
            elif CONDITIONING in words or (AGENT in words and beside
                                           and tags <= {"immunosuppressants"}):
                reason = CONDITIONING
            elif CELL_COLLECTION in words and tags <= {"plasma-exchange"}:
                reason = CELL_COLLECTION
            else:
                reason = None
            if reason:
                ignored.append(Evidence(reason, item.name))
            else:
                kept.append((item, found))
        return kept, ignored

    # --- what a tested intervention is ----------------------------------------------------

    def _by_name(self, item: Intervention) -> list[Finding]:
        found = []
        for source, text in item.names:
            for hit in self.names.hits(text):
                if hit.negated or hit.tag == NEUTRAL \
                        or _aside(self.aside_in_names, text, hit.start):
                    continue
                found.append(self._finding(hit.tag, Evidence(source, hit.words), hit.words))
        if _best(found) == SPECIFIC:
            return found
        return found + [Finding(tag, Evidence(source, words), rank)
                        for source, text in item.names
                        for tag, words, rank in self._stems(text)]

    def _finding(self, tag: str, evidence: Evidence, words: str, mesh: bool = False) -> Finding:
        """A finding of `words`, ranked by whether they are class words or name a drug."""
        rank = self.rank.get(words, SPECIFIC)
        if mesh and rank == GENERAL:
            rank = GENERAL_MESH
        return Finding(tag, evidence, rank,
                       target_only=words not in self.named_terms and rank == SPECIFIC)

    def _stems(self, text: str) -> list[tuple[str, str, int]]:
        """(class, "word (-stem)", rank) for each word of `text` ending in a drug stem."""
        found = []
        for word in STEM_WORD.findall(text.lower()):
            last = word.rsplit("-", 1)[-1]
            for stem, (tag, rank) in self.rules.stems.items():
                if stem.startswith("-"):
                    hit = word.endswith(stem) and len(word) >= len(stem) + 3
                else:
                    hit = last.endswith(stem) and len(last) >= len(stem) + 3
                if hit and last not in self.not_stems:
                    found.append((tag, f"{word} (-{stem.lstrip('-')})", rank))
                    break
        return found

    def _by_mechanism(self, item: Intervention, study: Record) -> list[Finding]:
        """What the record says `item` is: the mechanism words nearest its name or code in
        its description, its arms' descriptions, the titles and the summaries (the first of
        these that says), or else class words from any of them."""
        general: list[Finding] = []
        names = handles(item)
        for source, text in contexts(item, study):
            folded = fold(text)
            spans = [m.span() for pattern in names for m in pattern.finditer(folded)]
            if not spans and source != DESCRIPTION:
                continue
            mentions = []
            for hit in self.mechanisms.hits(text):
                distance = _distance(folded, hit.start, hit.end, spans)
                if distance is None and source == DESCRIPTION:
                    distance = NEAR + hit.start  # its own description is about it throughout
                if not (hit.negated or hit.tag == NEUTRAL or distance is None
                        or _aside(self.aside, text, hit.start)):
                    mentions.append(Mention(distance, hit.start, hit.end, hit.tag, hit.words))
            specific = sorted(m for m in mentions if self.rank.get(m.words, SPECIFIC) == SPECIFIC)
            if specific:
                phrase = _phrase(specific[0], specific)
                if any(m.tag == B_CELL for m in phrase):  # "CD19 NEX-T autologous CAR T cells"
                    spans = [(m.start, m.end) for m in phrase]
                    phrase += [m for m in specific if m.tag == CELL_THERAPY and m not in phrase
                               and _distance(folded, m.start, m.end, spans) is not None]
                return [self._finding(m.tag, Evidence(source, m.words), m.words) for m in phrase]
            general.extend(self._finding(m.tag, Evidence(source, m.words), m.words)
                           for m in mentions)
        return general

    def _by_mesh(self, study: Record, explained: set[str],
                 accounted: list[re.Pattern[str]]) -> list[Finding]:
        """The classes the registry's intervention MeSH terms give that no intervention's name
        accounts for; nothing when every MeSH term is one of those names."""
        browse = get(study, "derivedSection.interventionBrowseModule") or {}
        meshes = [str(m["term"]) for m in browse.get("meshes") or []
                  if isinstance(m, dict) and m.get("term")]
        found: list[Finding] = []
        fresh = 0
        for term in meshes:
            said = Evidence(MESH, term)
            own = [self._finding(hit.tag, said, hit.words, mesh=True)
                   for hit in self.names.hits(term) if not hit.negated and hit.tag != NEUTRAL]
            own += [Finding(tag, said, rank if rank == SPECIFIC else GENERAL_MESH)
                    for tag, _, rank in self._stems(term)]
            own += self._mesh_table(term, MESH)
            if (own and {f.tag for f in own} <= explained) or any(
                    p.search(fold(term)) for p in accounted):
                continue
            fresh += 1
            found.extend(own)
        if meshes and not fresh:
            return []
        for ancestor in browse.get("ancestors") or []:
            if isinstance(ancestor, dict):
                found += self._mesh_table(str(ancestor.get("term") or ""), MESH_ANCESTOR)
        for leaf in browse.get("browseLeaves") or []:
            if isinstance(leaf, dict) and leaf.get("relevance") == "HIGH":
                found += self._mesh_table(str(leaf.get("name") or ""), MESH_ACTION)
        return [f for f in found if f.tag not in explained]

    def _mesh_table(self, term: str, source: str) -> list[Finding]:
        tag, rank = self.rules.mesh.get(term.casefold().strip(), ("", SPECIFIC))
        return [Finding(tag, Evidence(source, term), rank)] if tag else []

    def _resolve(self, item: Intervention, found: list[Finding]) -> list[Finding]:
        """The findings of the best rank, less B-cell depletion beside a cell therapy and a
        biologic said to be a small molecule; "other" if there are none."""
        if not found:
            return [Finding(OTHER_THERAPY, Evidence(NAME, item.name))]
        best = _best(found)
        chosen = [f for f in found if f.rank == best]
        if CELL_THERAPY in _tags(chosen):
            chosen = [f for f in chosen if f.tag != B_CELL]  # "anti-CD19 CAR T cells"
        biologics = [f for f in chosen if f.tag == BIOLOGICS]
        if biologics and all(f.target_only for f in biologics):
            for source, text in [*item.names, (DESCRIPTION, item.description)]:
                said = self.small_molecule.search(fold(text))
                if said:
                    chosen = [f for f in chosen if f.tag != BIOLOGICS]
                    chosen.append(Finding(OTHER_THERAPY, Evidence(source, said.group(0))))
                    break
        return chosen


# --- reading the record ---------------------------------------------------------------------

def interventions(study: Record) -> list[Intervention]:
    """The study's interventions, each with the arm groups that give it (by the
    intervention's armGroupLabels or the arm's interventionNames, "Drug: Tofacitinib")."""
    module = get(study, "protocolSection.armsInterventionsModule") or {}
    arms: list[tuple[Arm, set[str]]] = []
    for raw in module.get("armGroups") or []:
        if isinstance(raw, dict) and raw.get("label"):
            gives = {_key(str(n).split(": ", 1)[-1]) for n in raw.get("interventionNames") or []}
            arms.append((Arm(str(raw["label"]), str(raw.get("type") or ""),
                             _clean(raw.get("description"))), gives))
    items = []
    for raw in module.get("interventions") or []:
        name = _clean(raw.get("name")) if isinstance(raw, dict) else ""
        if not name.strip():
            continue
        labels = {_key(str(label)) for label in raw.get("armGroupLabels") or []}
        items.append(Intervention(
            name, str(raw.get("type") or ""),
            tuple(_clean(n) for n in raw.get("otherNames") or [] if str(n).strip()),
            _clean(raw.get("description")),
            tuple(arm for arm, gives in arms if _key(arm.label) in labels or _key(name) in gives)))
    return items


def contexts(item: Intervention, study: Record) -> list[tuple[str, str]]:
    """The texts that may say what `item` is, nearest first."""
    p = study.get("protocolSection") or {}
    return [(DESCRIPTION, item.description), *((ARM, arm.description) for arm in item.arms),
            *((source, _clean(get(p, path))) for source, path in CONTEXTS)]


def handles(item: Intervention) -> tuple[re.Pattern[str], ...]:
    """Patterns for the ways a text may name `item`: its names, the codes in them, and the
    first word of its name ("Zetomipzomib 30 mg"), each however spaced or hyphenated."""
    return _handles(tuple(text for _, text in item.names))


@lru_cache(maxsize=4096)  # names recur across studies ("Placebo", a drug's name)
def _handles(names: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    keys = set()
    for text in names:
        folded = fold(text)
        keys.add(folded)
        keys.update(CODE.findall(folded))
        first = FIRST_WORD.match(folded.strip())
        if first and first.group(0) not in NOT_HANDLES:
            keys.add(first.group(0))
    letters = {re.sub(r"[^a-z0-9]", "", key) for key in keys}
    return tuple(
        re.compile(r"(?<![a-z0-9])" + r"[\s-]?".join(map(re.escape, key)) + r"(?![a-z0-9])")
        for key in sorted(letters) if len(key) >= 3)


def _clean(value: Any) -> str:
    """Registry text without its Markdown escapes ("anti\\-FcRn")."""
    return str(value or "").replace("\\", "")


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _forms(terms: Iterable[str]) -> tuple[str, ...]:
    """Each term with its plural or singular: "steroid" and "steroids", "JAK inhibitors" and
    "JAK inhibitor", "therapy" and "therapies"."""
    forms = []
    for term in terms:
        forms.append(term)
        low = term.lower()
        if not low[-1:].isalpha() or low.endswith(("ss", "is", "us")):
            continue
        if low.endswith("ies"):
            forms.append(term[:-3] + "y")
        elif low.endswith("s"):
            forms.append(term[:-1])
        elif low.endswith("y") and low[-2:-1] not in ("a", "e", "i", "o", "u"):
            forms.append(term[:-1] + "ies")
        elif low.endswith(("x", "ch", "sh")):
            forms.append(term + "es")
        else:
            forms.append(term + "s")
    return tuple(dict.fromkeys(forms))


def _any_of(words: Iterable[str]) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9])(?:{words_pattern(map(normalise, words))})(?![a-z0-9])")


def _aside(cue: re.Pattern[str], text: str, start: int) -> bool:
    """Whether a cue word stands in the last four words before `start` in its clause."""
    before = fold(text[:start])
    clause = before[max((m.end() for m in CLAUSE_START.finditer(before)), default=0):]
    return bool(cue.search(" ".join(clause.split()[-4:])))


def _distance(folded: str, start: int, end: int, spans: list[tuple[int, int]]) -> int | None:
    """How far text[start:end] stands from the nearest name in its sentence, within NEAR
    characters and BOUNDARIES commas or brackets; 0 when there are no names to be near (an
    intervention's own description)."""
    if not spans:
        return 0
    near = [max(0, start - b, a - end) for a, b in spans
            if not SENTENCE_END.search(folded, min(end, b), max(start, a))
            and len(BOUNDARY.findall(folded, min(end, b), max(start, a))) <= BOUNDARIES]
    return min(near) if near and min(near) <= NEAR else None


def _phrase(first: Mention, mentions: list[Mention]) -> list[Mention]:
    """`first` and the mentions that stand within PHRASE characters of it or of each other
    ("CD19-directed CAR T", "TYK2/JAK1")."""
    phrase = [first]
    start, end = first.start, first.end
    grown = True
    while grown:
        grown = False
        for mention in mentions:
            if mention not in phrase and max(mention.start - end, start - mention.end) <= PHRASE:
                phrase.append(mention)
                start, end = min(start, mention.start), max(end, mention.end)
                grown = True
    return phrase


def _best(found: list[Finding]) -> int | None:
    return min((f.rank for f in found), default=None)


def _tags(found: list[Finding]) -> set[str]:
    best = _best(found)
    return {f.tag for f in found if f.rank == best}
