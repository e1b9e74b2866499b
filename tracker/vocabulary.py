"""The words behind every tag, and how they are found in registry text.

The words live in `vocabulary.toml` (subtypes, the look-alikes that are not myositis, and how
registrants attach a cause to a muscle disease) and `treatments.toml` (treatment classes and
controls), extendable through TRACKER_VOCABULARY, never in code.
`Matcher` finds a tag group's terms (whole words, longest first, any case) and
abbreviations (whole words, exact case), each where it stands in the text, and tells a
ruled-out mention ("excluding IBM", "IBM or IMNM are not eligible", "anti-Jo-1 negative")
from a real one. The rules that use them are in `subtypes` and `treatments`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from tracker.errors import ConfigError

FACTS_VERSION = "4"  # bump when tags.columns() changes, so every study is re-tagged
OTHER_THERAPY = "other"
SHIPPED = ("vocabulary.toml", "treatments.toml")  # subtypes; treatment classes and controls
TAG_SECTIONS = ("subtypes", "therapies", "not_myositis")
LIST_SECTIONS = {"ignore": ("terms",), "phrasing": ("heads", "fillers", "before", "after")}
TAG_KEYS = {"label", "terms", "abbreviations", "mesh", "needs_context", "context_terms",
            "standalone", "clashes", "causes", "heads", "explains_myositis", "in_children"}
LOOK_ALIKE_KEYS = {"label", "terms", "causes", "heads", "explains_myositis"}

# Negation reaches over a clause. "Unlike" and "rather than" reach back to the last comma;
# "excluding", "except" and "other than" over a list's commas to the start of the sentence,
# unless a verb of inclusion comes between; "not" and "without" only over three words.
CLAUSE_END = re.compile(r"[.,;:!?()\n]")
SENTENCE_END = re.compile(r"[.;:!?()\n]")
CONTRAST = re.compile(r"\b(unlike|rather than)\b")
EXCLUSION = re.compile(r"\b(exclud\w*|except|other than|apart from|negative for)\b")
INCLUSION = re.compile(r"\b(are|is|will|includ\w*|enrol\w*|recruit\w*|eligible)\b")
NEAR_NEGATION = re.compile(r"\b(not|without)\b")
WITH_OR_WITHOUT = re.compile(r"\bwith or without\b")
NON_PREFIX = re.compile(r"\bnon\W*$")  # "non-IBM", but "non-IBM myositis" is still myositis
# After a term, the first verb of its sentence says whether it is ruled out ("patients with
# IBM or IMNM are not eligible"); "negative" right after an antibody rules the antibody out.
PREDICATE = re.compile(r"\b(are|is|was|were|will|shall|must|may|would|should|can|cannot|not|"
                       r"excluded|ineligible)\b")
RULED_OUT = re.compile(
    r"(?:(?:are|is|was|were|will|shall|must|may|would|should|can)\s+)?(?:(?:also|then|be)\s+)*"
    r"(?:not\s+(?:be\s+)?(?:eligible(?!\s+for\b)|included|enrolled|allowed|permitted|accepted)"
    r"|excluded|ineligible|cannot\s+(?:be\s+)?(?:included|enrolled|participate))\b")
NEGATIVE_AFTER = re.compile(r"\s*(?:(?:auto)?antibod(?:y|ies)\s*)?\(?\s*(?:sero)?negative\b")
LETTER_DIGIT_GAP = re.compile(r"(?<=[a-z])\s+(?=\d)")
DASHES = re.compile(r"[\u2010-\u2015\u2212-]")
# Texts this short (a condition, a keyword, a MeSH term, an intervention's name) recur across
# a registry's studies: each is read once per matcher and its mentions kept. Titles and
# summaries are longer, and read every time.
SHORT_TEXT = 60
SHORT_TEXTS_KEPT = 5_000  # per reader (about 2 MB); the memo starts again when full
T = TypeVar("T")


@dataclass(frozen=True)
class TagDef:
    """A subtype, a treatment class, or a look-alike that is not myositis (see the header of
    vocabulary.toml for each key)."""

    name: str
    label: str
    terms: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()
    mesh: tuple[str, ...] = ()
    needs_context: bool = False
    context_terms: tuple[str, ...] = ()
    standalone: tuple[str, ...] = ()
    clashes: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    heads: tuple[str, ...] = ()
    explains_myositis: bool = False
    in_children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Phrasing:
    """How registrants attach a cause to a muscle disease: "influenza[ virus][-associated]
    myositis" (cause, fillers, `before` link, head) or "myopathy due to statins" (head,
    `after` link, cause)."""

    heads: tuple[str, ...] = ()
    fillers: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    subtypes: dict[str, TagDef]
    therapies: dict[str, TagDef]
    ignore: tuple[str, ...]
    digest: str
    not_myositis: dict[str, TagDef] = field(default_factory=dict)
    phrasing: Phrasing = Phrasing()

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
        not_myositis = {n: _tagdef(n, d, LOOK_ALIKE_KEYS)
                        for n, d in data.get("not_myositis", {}).items()}
        phrasing = Phrasing(**{key: _strings(f"[phrasing] {key}", value)
                               for key, value in data.get("phrasing", {}).items()})
    except (TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{which} is not valid: {error}") from error
    if OTHER_THERAPY in therapies:
        raise ConfigError(f"{which} may not define a therapy named {OTHER_THERAPY!r}.")
    ignore = tuple(data.get("ignore", {}).get("terms", []))
    digest = hashlib.sha256("\0".join([FACTS_VERSION, *texts]).encode()).hexdigest()[:16]
    return Vocabulary(subtypes, therapies, ignore, digest, not_myositis, phrasing)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for section, tags in extra.items():
        if section not in (*TAG_SECTIONS, *LIST_SECTIONS):
            raise ValueError(f"unknown section [{section}] (use subtypes, therapies, "
                             "not_myositis, phrasing or ignore)")
        if not isinstance(tags, dict):
            raise ValueError(f"{section} must be a table: [{section}]")
        if section in LIST_SECTIONS:
            keys = LIST_SECTIONS[section]
            if set(tags) - set(keys):
                raise ValueError(f"[{section}] takes only " + ", ".join(
                    f"{key} = [...]" for key in keys))
            for key, value in tags.items():
                words = _strings(f"[{section}] {key}", value)
                base.setdefault(section, {}).setdefault(key, []).extend(words)
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


def _tagdef(name: str, data: dict[str, Any], known: set[str] = TAG_KEYS) -> TagDef:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise ValueError(f"tag name {name!r} must be lower-case letters, digits and hyphens")
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"tag {name!r} has unknown keys: {', '.join(sorted(unknown))}")
    label = data.get("label", name)
    if not isinstance(label, str):
        raise ValueError(f"tag {name!r}: label must be a string")
    for key in ("needs_context", "explains_myositis"):
        if not isinstance(data.get(key, False), bool):
            raise ValueError(f"tag {name!r}: {key} must be true or false")

    def strings(key: str) -> tuple[str, ...]:
        return _strings(f"tag {name!r}: {key}", data.get(key, []))

    return TagDef(name=name, label=label, terms=strings("terms"),
                  abbreviations=strings("abbreviations"), mesh=strings("mesh"),
                  needs_context=data.get("needs_context", False),
                  context_terms=strings("context_terms"), standalone=strings("standalone"),
                  clashes=strings("clashes"), causes=strings("causes"), heads=strings("heads"),
                  explains_myositis=data.get("explains_myositis", False),
                  in_children=strings("in_children"))


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
    return " ".join(DASHES.sub(" ", text.lower()).split())


def fold(text: str) -> str:
    """Lower case and dashes as spaces, every character where it was, so that a match in the
    folded text is a match at the same place in `text` (a letter whose lower case is two
    letters, such as a dotted capital I, is kept as it is)."""
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    return DASHES.sub(" ", lowered)


@dataclass(frozen=True)
class Hit:
    """One mention of a tag's words, where it stands in the text it was found in."""

    tag: str
    words: str  # a term as normalised, or an abbreviation as written
    start: int
    end: int
    abbreviation: bool = False
    negated: bool = False


class Matcher:
    """One compiled pattern per tag group: longest term first, whole words only. A term
    listed under two tags ("DM-ILD") names both."""

    def __init__(self, tags: Iterable[TagDef]) -> None:
        self.by_term: dict[str, list[str]] = {}
        self.by_abbreviation: dict[str, list[str]] = {}
        for tag in tags:
            for term in tag.terms:
                _add(self.by_term, normalise(term), tag.name)
            for abbreviation in tag.abbreviations:
                _add(self.by_abbreviation, abbreviation, tag.name)
        terms = sorted(self.by_term, key=len, reverse=True)
        # A code may be written "PF-06700841" or "PF06700841", so a term's letters may be
        # followed by its digits after a space; the text itself keeps its spaces, so that
        # "Tofacitinib 5 mg" still contains the word "tofacitinib".
        self.terms = _words(terms, re.IGNORECASE, gap=r"\s?") if terms else None
        abbreviations = sorted(self.by_abbreviation, key=len, reverse=True)
        self.abbreviations = _words(abbreviations, 0) if abbreviations else None
        self._read = read_once(self._hits)

    def spans(self, text: str) -> Iterator[re.Match[str]]:
        """Every term match in `text` (stripped), negated or not."""
        if self.terms:
            yield from self.terms.finditer(fold(text.strip()))

    def hits(self, text: str) -> tuple[Hit, ...]:
        """Every term and abbreviation in `text`, each marked if its clause rules it out."""
        return self._read(text)

    def _hits(self, text: str) -> tuple[Hit, ...]:
        folded = fold(text)
        found: list[Hit] = []
        if self.terms:
            for m in self.terms.finditer(folded):
                # IGNORECASE also matches letters that lower() keeps apart (a dotless i, a
                # long s): such a match names no term of ours.
                term = normalise(m.group(0))
                ruled_out = negated(folded, m.start(), m.end())
                found.extend(Hit(tag, term, m.start(), m.end(), False, ruled_out)
                             for tag in self.by_term.get(term, ()))
        if self.abbreviations:
            for m in self.abbreviations.finditer(text):
                ruled_out = negated(folded, m.start(), m.end())
                found.extend(Hit(tag, m.group(0), m.start(), m.end(), True, ruled_out)
                             for tag in self.by_abbreviation[m.group(0)])
        return tuple(found)

    def find(self, text: str) -> Iterator[tuple[str, str, bool]]:
        """(tag, matched words, is_abbreviation) for each mention not ruled out."""
        for hit in self.hits(text):
            if not hit.negated:
                yield hit.tag, hit.words, hit.abbreviation


def read_once(read: Callable[[str], T]) -> Callable[[str], T]:
    """`read`, keeping what it gave for each short text (SHORT_TEXT) so that the text is
    read once; longer texts are read every time."""
    known: dict[str, T] = {}

    def reading(text: str) -> T:
        if len(text) > SHORT_TEXT:
            return read(text)
        if text not in known:
            if len(known) >= SHORT_TEXTS_KEPT:
                known.clear()
            known[text] = read(text)
        return known[text]

    return reading


def _add(index: dict[str, list[str]], key: str, tag: str) -> None:
    names = index.setdefault(key, [])
    if tag not in names:
        names.append(tag)


def words_pattern(alternatives: Iterable[str], gap: str = "") -> str:
    """Any of `alternatives` (normalised) as one pattern, longest first; a space matches any
    white space and `gap` is allowed where a letter meets a digit. Built as a trie, so that
    hundreds of terms cost little more than one."""
    root: dict[str, Any] = {}
    for alternative in filter(None, alternatives):  # an empty term would match anywhere
        node = root
        for char in alternative:
            node = node.setdefault(char, {})
        node[""] = {}  # a term ends here

    def branch(node: dict[str, Any], before: str) -> str:
        parts = []
        for char, child in sorted(node.items()):
            if char:
                piece = r"\s+" if char == " " else re.escape(char)
                if gap and char.isdigit() and "a" <= before <= "z":
                    piece = gap + piece
                parts.append(piece + branch(child, char))
        if not parts:
            return ""
        body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
        return f"(?:{body})?" if "" in node else body

    return branch(root, "")


def _words(alternatives: list[str], flags: int, gap: str = "") -> re.Pattern[str]:
    """Any of `alternatives` as whole words."""
    return re.compile(rf"(?<![A-Za-z0-9])(?:{words_pattern(alternatives, gap)})(?![A-Za-z0-9])",
                      flags)


def negated(text: str, start: int, end: int) -> bool:
    """Whether the clause around text[start:end] (lower case) rules that mention out: a
    negation before it (see EXCLUSION, CONTRAST, NEAR_NEGATION, NON_PREFIX), "negative"
    right after it, or a verb of exclusion after it ("... are not eligible")."""
    sentence = text[_start_of(SENTENCE_END, text, start):start]
    clause = text[_start_of(CLAUSE_END, text, start):start]
    near = WITH_OR_WITHOUT.sub("", " ".join(clause.split()[-3:]))
    if NON_PREFIX.search(near) or NEAR_NEGATION.search(near) or CONTRAST.search(clause):
        return True
    exclusions = list(EXCLUSION.finditer(sentence))
    if exclusions and not INCLUSION.search(sentence, exclusions[-1].end()):
        return True
    sentence_end = SENTENCE_END.search(text, end)
    after = text[end:sentence_end.start() if sentence_end else len(text)]
    if NEGATIVE_AFTER.match(after):
        return True
    verb = PREDICATE.search(after)
    return bool(verb and RULED_OUT.match(after, verb.start()))


def _start_of(boundary: re.Pattern[str], text: str, position: int) -> int:
    return max((m.end() for m in boundary.finditer(text, 0, position)), default=0)


def unique(evidence: list[Evidence]) -> list[Evidence]:
    return list(dict.fromkeys(evidence))
