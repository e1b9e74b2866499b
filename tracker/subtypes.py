"""Which myositis subtypes a study concerns, with the words that say so.

Rules, in brief: longer terms win over the shorter terms inside them; MeSH terms name a
subtype only when the words name none; abbreviations and context-dependent tags count only in
a study that is about myositis on other evidence; the brief summary is read only when
conditions, keywords, titles and MeSH name no subtype; a term preceded by a negation
("excluding", "other than", "non-") or followed by "excluded" does not count; eligibility
criteria are never read.
"""

from __future__ import annotations

import re

from tracker.record import Record, get
from tracker.vocabulary import Evidence, Matcher, Vocabulary, unique

MYOSITIS_MESH = "D009220"
MYOSITIS_WORDS = re.compile(r"myositi|myopath", re.IGNORECASE)


class SubtypeTagger:
    """Tags studies with the subtypes of one vocabulary; build once per sync."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.subtypes = Matcher(vocabulary.subtypes.values())
        self.mesh = {m: t.name for t in vocabulary.subtypes.values() for m in t.mesh}

    def tag(self, study: Record) -> dict[str, list[Evidence]]:
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
        return {t: unique(found[t]) for t in sorted(found, key=order.index)}

    def _collect(self, text: str, source: str, found: dict[str, list[Evidence]],
                 weak: dict[str, list[Evidence]]) -> None:
        for tag, words, is_abbreviation in self.subtypes.find(text):
            needs_context = is_abbreviation or self.vocabulary.subtypes[tag].needs_context
            (weak if needs_context else found).setdefault(tag, []).append(
                Evidence(source, words))

