"""A held-out check of the tagger's subtypes and treatment classes.

The records in tests/heldout/records/ were written without looking at the tagger, its rules or
its vocabulary; each was labelled by what a careful clinician reading it would say
(tests/heldout/labels.json). Labels are never edited to fit the code: when this test fails,
the tagger is what needs work. Run with `pytest -s tests/test_heldout.py` to see the table.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tracker.tags import Tagger
from tracker.vocabulary import load_vocabulary

HERE = Path(__file__).resolve().parent / "heldout"
THRESHOLD = 0.95
GROUPS = ("subtypes", "therapies")


def load() -> tuple[dict[str, dict], dict[str, dict[str, list[str]]]]:
    records = {}
    for path in sorted((HERE / "records").glob("*.json")):
        records[path.stem] = json.loads(path.read_text())
    labels = json.loads((HERE / "labels.json").read_text())
    return records, labels


def score(expected: dict[str, set[str]], got: dict[str, set[str]]) -> tuple[str, float, float,
                                                                           list[str]]:
    """Micro-averaged precision and recall over (record, tag) pairs, a per-tag table, misses."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    misses = []
    for nct in sorted(expected):
        want, have = expected[nct], got[nct]
        for tag in want & have:
            tp[tag] += 1
        for tag in have - want:
            fp[tag] += 1
        for tag in want - have:
            fn[tag] += 1
        if want != have:
            misses.append(f"  {nct}: expected {sorted(want)}, got {sorted(have)}")
    lines = [f"  {'tag':<20}{'TP':>5}{'FP':>5}{'FN':>5}{'prec':>8}{'recall':>8}"]
    for tag in sorted(set(tp) | set(fp) | set(fn)):
        p = tp[tag] / (tp[tag] + fp[tag]) if tp[tag] + fp[tag] else 1.0
        r = tp[tag] / (tp[tag] + fn[tag]) if tp[tag] + fn[tag] else 1.0
        lines.append(f"  {tag:<20}{tp[tag]:>5}{fp[tag]:>5}{fn[tag]:>5}{p:>8.3f}{r:>8.3f}")
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    precision = total_tp / (total_tp + total_fp) if total_tp + total_fp else 1.0
    recall = total_tp / (total_tp + total_fn) if total_tp + total_fn else 1.0
    lines.append(f"  {'overall':<20}{total_tp:>5}{total_fp:>5}{total_fn:>5}"
                 f"{precision:>8.3f}{recall:>8.3f}")
    return "\n".join(lines), precision, recall, misses


@pytest.fixture(scope="module")
def tagged() -> tuple[dict, dict]:
    records, labels = load()
    assert records and set(records) == set(labels)
    tagger = Tagger(load_vocabulary())
    got = {}
    for nct, record in records.items():
        tags = tagger.tag(record)
        got[nct] = {"subtypes": set(tags.subtypes), "therapies": set(tags.therapies)}
    return labels, got


@pytest.mark.parametrize("group", GROUPS)
def test_heldout_precision_and_recall(tagged: tuple[dict, dict], group: str) -> None:
    labels, got = tagged
    expected = {nct: set(v[group]) for nct, v in labels.items()}
    table, precision, recall, misses = score(expected, {n: g[group] for n, g in got.items()})
    report = (f"held-out {group}: {len(expected)} records, precision {precision:.3f}, "
              f"recall {recall:.3f} (need {THRESHOLD})\n{table}\nmisses:\n" + "\n".join(misses))
    print("\n" + report)
    assert precision >= THRESHOLD and recall >= THRESHOLD, report
