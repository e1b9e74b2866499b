"""Which myositis subtypes a study concerns, with the words that say so, and the words read as
look-alikes that are not myositis.

Rules, in brief:
- Words are read where they stand: between a subtype and a look-alike (viral, orbital,
  eosinophilic myositis, myositis ossificans, statin myopathy...) the leftmost, then longest,
  mention wins, and a span read as one is never read as another.
- A study whose only myositis evidence is a look-alike gets no subtype; a bare "myositis"
  beside a look-alike that explains it (or beside checkpoint-inhibitor myositis) is read as
  that, not as `iim`, unless the study names an inflammatory myopathy too.
- Conditions and titles come first: keywords count for a subtype only when those name no
  specific subtype, or to back up one they name (sponsors list every myositis word).
- MeSH terms name a subtype only when the words name none.
- Abbreviations and context terms count only in a study that is about myositis on other
  evidence, and only inside their phrase: not in an antibody's name ("anti-PM/Scl"), beside
  a number ("type 2 DM") or beside a word that gives them another meaning (`clashes`). A
  condition or keyword that IS a specific abbreviation ("JDM", "sIBM") counts on its own.
- The brief summary is read only when conditions, keywords, titles and MeSH name no subtype.
- In a study open to children only, a subtype is read as its juvenile form (`in_children`).
- A mention its clause rules out (`vocabulary.negated`) does not count; eligibility criteria
  are never read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from tracker.record import Record, get
from tracker.vocabulary import (
    DASHES,
    SENTENCE_END,
    Evidence,
    Hit,
    Matcher,
    TagDef,
    Vocabulary,
    fold,
    negated,
    normalise,
    read_once,
    unique,
    words_pattern,
)

GENERAL = "iim"  # the subtype that names myositis in general terms
MYOSITIS_MESH = "D009220"
SUBTYPE, LOOK_ALIKE = "subtype", "look-alike"
SOURCE_ORDER = ("conditions", "title", "official title", "acronym", "keywords", "MeSH",
                "summary", "ages")
ANTIBODY_BEFORE = re.compile(r"\banti\s*$")  # "anti-PM/Scl": an antibody, not the disease
NUMBER_AFTER = re.compile(r"\s?\d")  # "DM 1" (myotonic dystrophy), "PM 2.5"
WORD = re.compile(r"[a-z0-9]+(?:\.\d+)?")
WORDS_BEFORE, WORDS_AFTER = 4, 3  # how near a clash must be to an abbreviation


@dataclass(frozen=True)
class NotMyositis:
    """Words read as a look-alike that is not an inflammatory myopathy, and why."""

    source: str
    text: str
    group: str  # its [not_myositis.NAME]
    reason: str


@dataclass
class Reading:
    """What one study's words say: its subtypes with their evidence, and its look-alikes."""

    subtypes: dict[str, list[Evidence]] = field(default_factory=dict)
    not_myositis: list[NotMyositis] = field(default_factory=list)


@dataclass
class _Found:
    strong: dict[str, list[Evidence]] = field(default_factory=dict)
    weak: dict[str, list[Evidence]] = field(default_factory=dict)  # need myositis context
    look_alikes: list[NotMyositis] = field(default_factory=list)

    def keep_only(self, tags: set[str]) -> None:
        self.strong = {t: ev for t, ev in self.strong.items() if t in tags}
        self.weak = {t: ev for t, ev in self.weak.items() if t in tags}

    def add(self, other: _Found) -> None:
        for mine, theirs in ((self.strong, other.strong), (self.weak, other.weak)):
            for tag, evidence in theirs.items():
                mine.setdefault(tag, []).extend(evidence)
        self.look_alikes.extend(other.look_alikes)


@dataclass(frozen=True)
class _Mention:
    kind: str  # SUBTYPE or LOOK_ALIKE
    hit: Hit
    head: tuple[int, int] | None = None  # the disease named in a cause phrase


class SubtypeTagger:
    """Tags studies with the subtypes of one vocabulary; build once per sync."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        subtypes = list(vocabulary.subtypes.values())
        look_alikes = list(vocabulary.not_myositis.values())
        self.subtypes = Matcher(replace(t, terms=t.terms + t.context_terms) for t in subtypes)
        # What a cause phrase's head, or a term of a tag with causes, names besides: the
        # specific subtypes without causes ("cancer-associated dermatomyositis").
        self.qualifiers = {t.name for t in subtypes if t.causes}
        self.inner = Matcher(t for t in subtypes
                             if t.name not in self.qualifiers and t.name != GENERAL)
        self.look_alikes = Matcher(look_alikes)
        self.mesh = {m: t.name for t in subtypes for m in t.mesh}
        self.context_terms = {t.name: {normalise(w) for w in t.context_terms} for t in subtypes}
        self.standalone: dict[str, list[str]] = {}
        for tag in subtypes:
            for entry in tag.standalone:
                self.standalone.setdefault(_entry_key(entry), []).append(tag.name)
        self.clashes = {t.name: _any_of(t.clashes) for t in subtypes if t.clashes}
        self.phrases = [(SUBTYPE, t.name, self._phrase(t)) for t in subtypes if t.causes] + [
            (LOOK_ALIKE, t.name, self._phrase(t)) for t in look_alikes if t.causes]
        self.explains = {t.name for t in [*subtypes, *look_alikes] if t.explains_myositis}
        self.in_children = {adult: t.name for t in subtypes for adult in t.in_children}
        self._mentions = read_once(self._read_mentions)

    def tag(self, study: Record) -> dict[str, list[Evidence]]:
        return self.read(study).subtypes

    def read(self, study: Record) -> Reading:
        p = study.get("protocolSection", {})
        titles = [(field_name, get(p, f"identificationModule.{key}"))
                  for field_name, key in (("title", "briefTitle"),
                                          ("official title", "officialTitle"),
                                          ("acronym", "acronym"))]
        found = _Found()
        for condition in get(p, "conditionsModule.conditions", []) or []:
            self._collect(str(condition), "conditions", found, entry=True)
        for source, text in titles:
            if text:
                self._collect(str(text), source, found)
        keywords = _Found()
        for keyword in get(p, "conditionsModule.keywords", []) or []:
            self._collect(str(keyword), "keywords", keywords, entry=True)
        if self._named(found):
            keywords.keep_only(set(found.strong) | set(found.weak))
        found.add(keywords)
        meshes = get(study, "derivedSection.conditionBrowseModule.meshes", []) or []
        for mesh in meshes:
            self._collect_look_alikes(str(mesh.get("term") or ""), "MeSH", found)
        # The registry's MeSH mapping is coarse (juvenile DM is filed under Dermatomyositis,
        # IMNM under Myositis), so it names a subtype only when the words name none, and
        # otherwise only backs up what the words already say.
        named = set(found.strong)
        for mesh in meshes:
            tag = self.mesh.get(mesh.get("id"))
            if not named and found.look_alikes and (tag == GENERAL or self._explained(found)):
                continue  # the look-alike is what the registry filed under that term
            if tag and (not named - {GENERAL} or tag in named):
                words = f"{mesh['id']} {mesh.get('term') or ''}".strip()
                found.strong.setdefault(tag, []).append(Evidence("MeSH", words))
        ancestors = get(study, "derivedSection.conditionBrowseModule.ancestors", []) or []
        summary = get(p, "descriptionModule.briefSummary")
        if summary and self._about_myositis(found, ancestors) \
                and not set(found.strong) - {GENERAL}:
            self._collect(str(summary), "summary", found)
        if self._about_myositis(found, ancestors):
            for tag, evidence in found.weak.items():
                found.strong.setdefault(tag, []).extend(evidence)
        if self._explained(found):
            found.strong.pop(GENERAL, None)
        if get(p, "eligibilityModule.stdAges") == ["CHILD"]:
            self._in_children(found)
        order = list(self.vocabulary.subtypes)
        return Reading(
            {t: _in_source_order(found.strong[t]) for t in sorted(found.strong, key=order.index)},
            list(dict.fromkeys(found.look_alikes)))

    # --- the rules ---------------------------------------------------------------------

    def _named(self, found: _Found) -> set[str]:
        """The specific subtypes conditions and titles name: strong words, or abbreviations
        (which still need context); not lung disease or overlap named in general terms."""
        contextual = {name for name, tag in self.vocabulary.subtypes.items()
                      if tag.needs_context or tag.context_terms}
        return (set(found.strong) | set(found.weak) - contextual) - {GENERAL}

    def _in_children(self, found: _Found) -> None:
        """A study open to children only (the registry's age groups) is about the juvenile
        form of what it names: its "Dermatomyositis" is juvenile dermatomyositis."""
        for adult, young in self.in_children.items():
            if adult in found.strong:
                evidence = found.strong.pop(adult)
                found.strong.setdefault(young, []).extend(
                    [*evidence, Evidence("ages", "open to children only")])

    def _explained(self, found: _Found) -> bool:
        """A look-alike (or checkpoint-inhibitor myositis) explains the study's myositis words,
        and it names no inflammatory myopathy besides."""
        named = {n.group for n in found.look_alikes} | set(found.strong)
        return bool(named & self.explains) and not set(found.strong) - self.explains - {GENERAL}

    def _about_myositis(self, found: _Found, ancestors: Iterable[dict[str, str]]) -> bool:
        """Context for abbreviations, context terms and the summary: a subtype named in words
        (general myositis only when no look-alike explains it), or the registry's Myositis
        MeSH ancestor in a study without look-alikes."""
        if self._explained(found):
            return bool(set(found.strong) - {GENERAL})
        return bool(found.strong) or (
            not found.look_alikes and any(a.get("id") == MYOSITIS_MESH for a in ancestors))

    def _collect(self, text: str, source: str, found: _Found, entry: bool = False) -> None:
        if entry and (tags := self.standalone.get(_entry_key(text))):
            for tag in tags:
                found.strong.setdefault(tag, []).append(Evidence(source, " ".join(text.split())))
            return
        folded = fold(text)
        for mention in self._mentions(text):
            hit = mention.hit
            if hit.negated:
                continue
            if mention.kind == LOOK_ALIKE:
                found.look_alikes.append(self._look_alike(source, hit))
            elif hit.abbreviation:
                if not self._clashes(folded, hit):
                    found.weak.setdefault(hit.tag, []).append(Evidence(source, hit.words))
            elif self.vocabulary.subtypes[hit.tag].needs_context \
                    or hit.words in self.context_terms[hit.tag]:
                found.weak.setdefault(hit.tag, []).append(Evidence(source, hit.words))
            else:
                found.strong.setdefault(hit.tag, []).append(Evidence(source, hit.words))

    def _collect_look_alikes(self, text: str, source: str, found: _Found) -> None:
        for mention in self._mentions(text):
            if mention.kind == LOOK_ALIKE and not mention.hit.negated:
                found.look_alikes.append(self._look_alike(source, mention.hit))

    def _look_alike(self, source: str, hit: Hit) -> NotMyositis:
        return NotMyositis(source, hit.words, hit.tag,
                           self.vocabulary.not_myositis[hit.tag].label)

    def _read_mentions(self, text: str) -> tuple[_Mention, ...]:
        """Every mention in `text`, overlaps resolved: leftmost first, then longest; a term
        listed under two tags keeps both. The specific disease named inside a term of a tag
        with causes, or as the head of its cause phrase ("cancer-associated dermatomyositis"),
        counts too. Read through `_mentions`, which reads a short text once."""
        folded = fold(text)
        candidates = [*(_Mention(SUBTYPE, h) for h in self.subtypes.hits(text)),
                      *(_Mention(LOOK_ALIKE, h) for h in self.look_alikes.hits(text)),
                      *self._phrase_mentions(folded)]
        candidates.sort(key=lambda m: (m.hit.start, m.hit.start - m.hit.end))
        chosen: list[_Mention] = []
        reach = -1
        for mention in candidates:
            last = chosen[-1].hit if chosen else None
            same_span = last is not None and (last.start, last.end) == (
                mention.hit.start, mention.hit.end)
            if mention.hit.start >= reach or same_span:
                chosen.append(mention)
                reach = max(reach, mention.hit.end)
        inner = [
            _Mention(SUBTYPE, replace(hit, negated=mention.hit.negated))
            for mention in chosen
            if mention.kind == SUBTYPE and mention.hit.tag in self.qualifiers
            for hit in self.inner.hits(text[slice(*(mention.head or (
                mention.hit.start, mention.hit.end)))])
            if not hit.abbreviation]
        return (*chosen, *inner)

    def _phrase(self, tag: TagDef) -> re.Pattern[str]:
        """"influenza[ virus][-associated] myositis", "myopathy due to statins",
        "Myositis, viral": a cause attached to a head (see [phrasing])."""
        phrasing = self.vocabulary.phrasing
        causes = words_pattern((normalise(c) for c in tag.causes), gap=r"\s?")
        heads = words_pattern(normalise(h) for h in tag.heads or phrasing.heads)
        fillers = words_pattern(normalise(f) for f in phrasing.fillers) or "(?!)"
        before = words_pattern(normalise(b) for b in phrasing.before) or "(?!)"
        after = words_pattern(normalise(a) for a in phrasing.after) or "(?!)"
        return re.compile(
            rf"(?<![a-z0-9])(?:(?:{causes})(?:\s+(?:{fillers}))*(?:\s+(?:{before}))?"
            rf"\s+(?P<head>{heads})"
            rf"|(?P<head_first>{heads})\s+(?:{after})\s+(?:(?:the|a|an)\s+)?(?:{causes})"
            rf"|(?P<inverted>{heads}),\s+(?:{causes})\s*$)(?![a-z0-9])")

    def _phrase_mentions(self, folded: str) -> list[_Mention]:
        found = []
        for kind, tag, pattern in self.phrases:
            for m in pattern.finditer(folded):
                head = next(m.span(g) for g in ("head", "head_first", "inverted") if m.group(g))
                hit = Hit(tag, normalise(m.group(0)), m.start(), m.end(), False,
                          negated(folded, m.start(), m.end()))
                found.append(_Mention(kind, hit, head))
        return found

    def _clashes(self, folded: str, hit: Hit) -> bool:
        """An abbreviation in an antibody's name, beside a number, or near a word that gives
        it another meaning (its tag's `clashes`) names no subtype."""
        before, after = folded[:hit.start], folded[hit.end:]
        if ANTIBODY_BEFORE.search(before) or NUMBER_AFTER.match(after):
            return True
        clashes = self.clashes.get(hit.tag)
        if clashes is None:
            return False
        sentence_start = max((m.end() for m in SENTENCE_END.finditer(before)
                              if m.group(0) not in "()"), default=0)
        sentence_end = next((m.start() for m in SENTENCE_END.finditer(after)
                             if m.group(0) not in "()"), len(after))
        near = (WORD.findall(before[sentence_start:])[-WORDS_BEFORE:]
                + WORD.findall(after[:sentence_end])[:WORDS_AFTER])
        return bool(clashes.search(" ".join(near)))


def _entry_key(entry: str) -> str:
    """A condition or keyword as compared with `standalone` entries: exact, except for white
    space, the kind of dash and the case of the first letter."""
    text = " ".join(DASHES.sub("-", entry).split())
    return text[:1].lower() + text[1:]


def _any_of(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = words_pattern(fold(w).strip() for w in words)
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


def _in_source_order(evidence: list[Evidence]) -> list[Evidence]:
    """Conditions first, then titles, keywords, MeSH and the summary; once each."""
    rank = {source: i for i, source in enumerate(SOURCE_ORDER)}
    return sorted(unique(evidence), key=lambda e: rank.get(e.source, len(rank)))
