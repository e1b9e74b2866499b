"""Which classes of treatment a study tests, with the words that say so.

An intervention's name and other names are matched against the treatment classes; a
control (placebo, sham: the `ignore` terms) is skipped, and a name that matches no class
counts as "other". The registry's intervention MeSH terms add classes too.
"""

from __future__ import annotations

from tracker.record import Record, get
from tracker.vocabulary import OTHER_THERAPY, Evidence, Matcher, TagDef, Vocabulary, unique


class TreatmentTagger:
    """Tags studies with the treatment classes of one vocabulary; build once per sync."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.therapies = Matcher(vocabulary.therapies.values())
        self.ignore = Matcher([TagDef("ignore", "ignore", terms=vocabulary.ignore)])

    def _is_control(self, name: str) -> bool:
        """An intervention whose name starts with a control term (placebo, sham ...)."""
        return any(match.start() == 0 for match in self.ignore.spans(name))

    def tag(self, study: Record) -> dict[str, list[Evidence]]:
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
        return {t: unique(found[t]) for t in sorted(found, key=order.index)}


