"""Rebuild tests/data/studies/ from real ClinicalTrials.gov records in ../shared/ctgov/.

No real record in the shared set is about myositis, so each fixture is a real, complete API
record whose myositis-specific parts (conditions, keywords, MeSH terms, titles, interventions)
were edited; every field name, nesting and value type stays exactly as the API returned it.
Run from the repository root:  python tests/data/build_fixtures.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "ctgov" / "studies"
OUT = Path(__file__).resolve().parent / "studies"
VERSION_HOLDER = "2026-11-20"

# Real MeSH entries for myositis, from the registry's own record of NCT00001265.
MESH = {
    "dm": {"id": "D003882", "term": "Dermatomyositis"},
    "pm": {"id": "D017285", "term": "Polymyositis"},
    "ibm": {"id": "D018979", "term": "Myositis, Inclusion Body"},
    "myositis": {"id": "D009220", "term": "Myositis"},
}
ANCESTORS = [
    {"id": "D009220", "term": "Myositis"},
    {"id": "D009135", "term": "Muscular Diseases"},
    {"id": "D009140", "term": "Musculoskeletal Diseases"},
    {"id": "D009468", "term": "Neuromuscular Diseases"},
    {"id": "D003240", "term": "Connective Tissue Diseases"},
]

EDITS: dict[str, dict[str, Any]] = {
    "NCT04078230": {
        "brief": "Tofacitinib in Refractory Dermatomyositis",
        "official": "A Randomized Trial of Tofacitinib Versus Placebo in Adults With Refractory "
                    "Dermatomyositis",
        "conditions": ["Dermatomyositis"],
        "keywords": ["dermatomyositis", "JAK inhibitor", "tofacitinib"],
        "mesh": ["dm"],
        "interventions": {"Extend LymphAdenectomy": ("DRUG", "Tofacitinib")},
    },
    "NCT07725679": {
        "brief": "Efgartigimod in Immune-Mediated Necrotizing Myopathy",
        "official": "Efgartigimod PH20 SC in Adults With Anti-HMGCR or Anti-SRP Immune-Mediated "
                    "Necrotizing Myopathy",
        "conditions": ["Immune-Mediated Necrotizing Myopathy"],
        "keywords": ["IMNM", "FcRn"],
        "mesh": ["myositis"],
        "interventions": {"POC urine TFV test with DLFB": ("BIOLOGICAL", "Efgartigimod PH20 SC")},
    },
    "NCT02803307": {
        "brief": "Arimoclomol in Inclusion Body Myositis",
        "official": "A Phase 1/2 Study of Arimoclomol in Sporadic Inclusion Body Myositis",
        "conditions": ["Inclusion Body Myositis"],
        "keywords": ["IBM", "sporadic inclusion body myositis", "arimoclomol"],
        "mesh": ["ibm"],
        "interventions": {"TLC599": ("DRUG", "Arimoclomol")},
    },
    "NCT00987428": {
        "brief": "Plasma Exchange in Severe Polymyositis",
        "official": "Plasma Exchange Plus Standard Care Versus Standard Care in Severe "
                    "Polymyositis",
        "acronym": "PEPM",
        "conditions": ["Polymyositis"],
        "keywords": ["polymyositis", "plasma exchange"],
        "mesh": ["pm"],
        "interventions": {
            "ultrasonography with or not sphincterotomy": ("PROCEDURE", "Plasma exchange"),
            "Usual procedure": ("PROCEDURE", "Standard care"),
        },
    },
    "NCT02248896": {
        "brief": "Juvenile Dermatomyositis Registry",
        "official": "An Observational Registry of Children With Juvenile Dermatomyositis",
        "conditions": ["Juvenile Dermatomyositis"],
        "keywords": ["JDM", "registry"],
        "mesh": ["dm"],
        "interventions": {
            "Telmisartan": ("DRUG", "Methotrexate"),
            "Other angiotensin-receptor blockers (ARBs)": ("DRUG", "Prednisolone"),
            "Angiotensin-converting enzyme inhibitors (ACEIs)": ("DRUG", "IVIG"),
            "Other major antihypertensive medication classes": ("DRUG", "Rituximab"),
        },
    },
    "NCT00874328": {
        "brief": "Rituximab in Antisynthetase Syndrome Interstitial Lung Disease",
        "official": "Rituximab Versus Cyclophosphamide in Antisynthetase Syndrome With "
                    "Interstitial Lung Disease",
        "conditions": ["Antisynthetase Syndrome", "Interstitial Lung Disease"],
        "keywords": ["anti-Jo-1", "ILD"],
        "mesh": ["myositis"],
        "interventions": {"Irinotecan": ("DRUG", "Rituximab"),
                          "Cisplatin": ("DRUG", "Cyclophosphamide"),
                          "TS-1 (S-1)": ("DRUG", "Prednisone")},
    },
    "NCT02210780": {
        "brief": "IVIG in Dermatomyositis and Polymyositis",
        "official": "Intravenous Immunoglobulin in Adults With Active Dermatomyositis or "
                    "Polymyositis",
        "conditions": ["Dermatomyositis", "Polymyositis"],
        "keywords": ["IVIG", "dermatomyositis/polymyositis"],
        "mesh": ["dm", "pm"],
        "interventions": {"Dupilumab": ("BIOLOGICAL", "Immune globulin (IVIG) 10%"),
                          "Placebo": ("DRUG", "Placebo")},
    },
}


def myositis(study: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    study = copy.deepcopy(study)
    p = study["protocolSection"]
    ident = p["identificationModule"]
    ident["briefTitle"] = edit["brief"]
    ident["officialTitle"] = edit["official"]
    if "acronym" in edit:
        ident["acronym"] = edit["acronym"]
    p["conditionsModule"] = {"conditions": edit["conditions"], "keywords": edit["keywords"]}
    renames = edit["interventions"]
    arms = p.get("armsInterventionsModule", {})
    for intervention in arms.get("interventions", []):
        if intervention["name"] in renames:
            kind, name = renames[intervention["name"]]
            intervention["type"], intervention["name"] = kind, name
    for group in arms.get("armGroups", []):
        group["interventionNames"] = [
            _rename(label, renames) for label in group.get("interventionNames", [])
        ]
    derived = study["derivedSection"]
    derived["miscInfoModule"]["versionHolder"] = VERSION_HOLDER
    derived["conditionBrowseModule"] = {
        "meshes": [MESH[m] for m in edit["mesh"]],
        "ancestors": ANCESTORS[1:] if edit["mesh"] == ["myositis"] else ANCESTORS,
    }
    return study


def _rename(label: str, renames: dict[str, tuple[str, str]]) -> str:
    _, _, name = label.partition(": ")
    if name in renames:
        new_kind, new_name = renames[name]
        return f"{new_kind.replace('_', ' ').title()}: {new_name}"
    return label


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for nct_id, edit in EDITS.items():
        study = json.loads((SHARED / f"{nct_id}.json").read_text())
        out = OUT / f"{nct_id}.json"
        out.write_text(json.dumps(myositis(study, edit), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
