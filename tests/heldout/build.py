"""Build the held-out records and labels from real ClinicalTrials.gov API v2 records.

Each case (in the ``cases_*.py`` files next to this one) is a small dict of edits applied to
a deep copy of a real record used as a template. Every free-text field a tagger could read
is replaced, so no template text leaks in. Run from the repository root:

    .venv/bin/python -m tests.heldout.build

It rewrites ``tests/heldout/records/*.json`` and ``tests/heldout/labels.json``; both are
checked in, and the test reads them, not this script.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Unedited real records (copies of /work/shared/ctgov/studies/*.json) used as templates.
REAL = HERE / "templates"
TEMPLATES = {"INTERVENTIONAL": REAL / "NCT00184067.json",
             "OBSERVATIONAL": REAL / "NCT02248896.json"}

SUBTYPES = {"dermatomyositis", "jdm", "cadm", "polymyositis", "ibm", "imnm", "ass", "overlap",
            "cam", "icim", "ild", "iim"}
THERAPIES = {"glucocorticoids", "immunosuppressants", "ivig", "b-cell", "jak", "fcrn",
             "complement", "interferon", "cell-therapy", "biologics", "plasma-exchange",
             "exercise", "bone-health", "skin-care", "muscle", "other"}

# Condition MeSH terms copied from real records (ids and terms exactly as the API gives them).
MESH = {"myositis": ("D009220", "Myositis"), "dm": ("D003882", "Dermatomyositis"),
        "pm": ("D017285", "Polymyositis"), "ibm": ("D018979", "Myositis, Inclusion Body"),
        "diabetes": ("D000003920", "Diabetes Mellitus"), "melanoma": ("D008545", "Melanoma"),
        "nsclc": ("D002289", "Carcinoma, Non-Small-Cell Lung")}
MUSCLE_ANCESTORS = [("D009135", "Muscular Diseases"), ("D009140", "Musculoskeletal Diseases"),
                    ("D009468", "Neuromuscular Diseases"),
                    ("D003240", "Connective Tissue Diseases")]
TYPE_LABEL = {"DRUG": "Drug", "BIOLOGICAL": "Biological", "BEHAVIORAL": "Behavioral",
              "DEVICE": "Device", "PROCEDURE": "Procedure", "OTHER": "Other",
              "DIETARY_SUPPLEMENT": "Dietary Supplement", "GENETIC": "Genetic",
              "COMBINATION_PRODUCT": "Combination Product", "RADIATION": "Radiation",
              "DIAGNOSTIC_TEST": "Diagnostic Test"}
ARM_TYPES = {"EXPERIMENTAL", "ACTIVE_COMPARATOR", "PLACEBO_COMPARATOR", "SHAM_COMPARATOR",
             "NO_INTERVENTION", "OTHER", None}
ADULT = "Inclusion Criteria:\n\n* Age 18 years or older\n* Able to give written informed " \
        "consent\n\nExclusion Criteria:\n\n* Pregnancy or breastfeeding\n* Active infection"


def I(kind: str, name: str, arms: list[str] | None = None, desc: str | None = None,  # noqa: E743
      other: list[str] | None = None) -> dict:
    """One intervention: API type, name, arm labels, description, other names."""
    out: dict = {"type": kind, "name": name}
    if desc:
        out["description"] = desc
    if arms:
        out["armGroupLabels"] = list(arms)
    if other:
        out["otherNames"] = list(other)
    return out


def condition_browse(keys: list[str]) -> dict:
    meshes = [MESH[k] for k in keys]
    ancestors = list(MUSCLE_ANCESTORS) if any(k in {"myositis", "dm", "pm", "ibm"}
                                              for k in keys) else []
    if any(k in {"dm", "pm", "ibm"} for k in keys):
        ancestors.insert(0, MESH["myositis"])
    module: dict = {"meshes": [{"id": i, "term": t} for i, t in meshes]}
    if ancestors:
        module["ancestors"] = [{"id": i, "term": t} for i, t in ancestors]
    return module


def make(case: dict) -> dict:
    kind = case.get("type", "INTERVENTIONAL")
    study = copy.deepcopy(json.loads(TEMPLATES[kind].read_text()))
    p = study["protocolSection"]
    ident = p["identificationModule"]
    ident.update(nctId=case["nct"], briefTitle=case["title"],
                 officialTitle=case.get("official", case["title"]),
                 orgStudyIdInfo={"id": "HO-" + case["nct"][-4:]})
    for key in ("acronym", "secondaryIdInfos", "nctIdAliases"):
        ident.pop(key, None)
    if case.get("sponsor"):
        p["sponsorCollaboratorsModule"]["leadSponsor"] = {"name": case["sponsor"],
                                                          "class": "OTHER"}
    if case.get("collaborators"):
        p["sponsorCollaboratorsModule"]["collaborators"] = [
            {"name": n, "class": "INDUSTRY"} for n in case["collaborators"]]
    p["descriptionModule"] = {"briefSummary": case["summary"]}
    conditions: dict = {"conditions": list(case["cond"])}
    if case.get("kw"):
        conditions["keywords"] = list(case["kw"])
    p["conditionsModule"] = conditions
    interventions = [dict(i) for i in case.get("iv", [])]
    arms = []
    for arm in case.get("arms", []):
        label, arm_type = arm[0], arm[1]
        assert arm_type in ARM_TYPES, arm_type
        group: dict = {"label": label}
        if arm_type:
            group["type"] = arm_type
        if len(arm) > 2:
            group["description"] = arm[2]
        names = [f"{TYPE_LABEL[i['type']]}: {i['name']}" for i in interventions
                 if label in i.get("armGroupLabels", [])]
        if names:
            group["interventionNames"] = names
        arms.append(group)
    labels = {a[0] for a in case.get("arms", [])}
    for i in interventions:
        assert set(i.get("armGroupLabels", [])) <= labels, (case["nct"], i["name"])
    module: dict = {}
    if arms:
        module["armGroups"] = arms
    if interventions:
        module["interventions"] = interventions
    if module:
        p["armsInterventionsModule"] = module
    else:
        p.pop("armsInterventionsModule", None)
    p["outcomesModule"] = {"primaryOutcomes": [{"measure": case.get(
        "outcome", "Change from baseline in the primary efficacy score"), "timeFrame": "24 weeks"}]}
    elig = p["eligibilityModule"]
    elig["eligibilityCriteria"] = case.get("elig", ADULT)
    if case.get("child"):
        elig.update(minimumAge="2 Years", maximumAge="17 Years", stdAges=["CHILD"])
    if "studyPopulation" in elig:
        elig["studyPopulation"] = case.get("population", "Patients seen at participating centres")
    if case.get("phases"):
        p["designModule"]["phases"] = list(case["phases"])
    p.pop("referencesModule", None)
    derived = study["derivedSection"]
    derived.pop("interventionBrowseModule", None)
    if case.get("mesh"):
        derived["conditionBrowseModule"] = condition_browse(case["mesh"])
    else:
        derived.pop("conditionBrowseModule", None)
    study.pop("resultsSection", None)
    study["hasResults"] = False
    return study


def all_cases() -> list[dict]:
    cases: list[dict] = []
    for path in sorted(HERE.glob("cases_*.py")):
        cases += importlib.import_module(f"tests.heldout.{path.stem}").CASES
    return cases


def main() -> None:
    cases = all_cases()
    seen: set[str] = set()
    labels = {}
    out = HERE / "records"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for case in cases:
        nct = case["nct"]
        assert re.fullmatch(r"NCT0980\d{4}", nct) and nct not in seen, nct
        seen.add(nct)
        assert set(case["sub"]) <= SUBTYPES and set(case["tx"]) <= THERAPIES, nct
        study = make(case)
        (out / f"{nct}.json").write_text(json.dumps(study, indent=2, ensure_ascii=False) + "\n")
        labels[nct] = {"subtypes": sorted(case["sub"]), "therapies": sorted(case["tx"])}
    (HERE / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    print(f"{len(labels)} records written")


if __name__ == "__main__":
    main()
