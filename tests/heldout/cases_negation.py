"""Held-out cases: subtypes named only to exclude them, and keyword lists wider than the trial."""

from tests.heldout.build import I

E, A, P = "EXPERIMENTAL", "ACTIVE_COMPARATOR", "PLACEBO_COMPARATOR"

CASES = [
    {"nct": "NCT09800151", "title": "Baricitinib in Adult Dermatomyositis",
     "cond": ["Dermatomyositis"], "mesh": ["dm"],
     "summary": "Baricitinib 4 mg daily versus placebo in adults with active dermatomyositis. "
                "Patients with inclusion body myositis are excluded.",
     "arms": [("Baricitinib", E), ("Placebo", P)],
     "iv": [I("DRUG", "Baricitinib", ["Baricitinib"]), I("DRUG", "Placebo", ["Placebo"])],
     "sub": ["dermatomyositis"], "tx": ["jak"]},
    {"nct": "NCT09800152", "title": "Brepocitinib in Dermatomyositis",
     "cond": ["Dermatomyositis"], "mesh": ["dm"],
     "summary": "Brepocitinib, an oral TYK2/JAK1 inhibitor, in adults with dermatomyositis "
                "other than juvenile dermatomyositis.",
     "arms": [("Brepocitinib", E), ("Placebo", P)],
     "iv": [I("DRUG", "Brepocitinib", ["Brepocitinib"]), I("DRUG", "Placebo", ["Placebo"])],
     "sub": ["dermatomyositis"], "tx": ["jak"]},
    {"nct": "NCT09800153", "title": "Methotrexate in Anti-Jo-1 Negative Polymyositis",
     "cond": ["Polymyositis"], "mesh": ["pm"],
     "summary": "Methotrexate in anti-Jo-1 negative polymyositis without lung involvement.",
     "arms": [("Methotrexate", E)], "iv": [I("DRUG", "Methotrexate", ["Methotrexate"])],
     "sub": ["polymyositis"], "tx": ["immunosuppressants"]},
    {"nct": "NCT09800154", "title": "Hydroxychloroquine in MDA5-Negative Dermatomyositis",
     "cond": ["MDA5-Negative Dermatomyositis"], "mesh": ["dm"],
     "summary": "Hydroxychloroquine in MDA5-negative dermatomyositis with skin-predominant "
                "disease and no interstitial lung disease.",
     "arms": [("Hydroxychloroquine", E)],
     "iv": [I("DRUG", "Hydroxychloroquine", ["Hydroxychloroquine"])],
     "sub": ["dermatomyositis"], "tx": ["other"]},
    {"nct": "NCT09800155", "title": "Pozelimab and Cemdisiran in Immune-Mediated Necrotizing "
                                    "Myopathy",
     "cond": ["Immune-Mediated Necrotizing Myopathy"],
     "summary": "Pozelimab plus cemdisiran in IMNM. Inclusion body myositis, cancer-associated "
                "myositis and juvenile forms of the disease are not eligible for enrolment.",
     "arms": [("Pozelimab + cemdisiran", E), ("Placebo", P)],
     "iv": [I("BIOLOGICAL", "Pozelimab", ["Pozelimab + cemdisiran"]),
            I("DRUG", "Cemdisiran", ["Pozelimab + cemdisiran"]),
            I("DRUG", "Placebo", ["Placebo"])],
     "sub": ["imnm"], "tx": ["complement"]},
    {"nct": "NCT09800156", "title": "IVIG in Newly Diagnosed Dermatomyositis",
     "cond": ["Dermatomyositis"], "mesh": ["dm"],
     "summary": "HyQvia subcutaneous immunoglobulin from diagnosis in dermatomyositis.",
     "elig": "Inclusion Criteria:\n\n* Definite dermatomyositis (EULAR/ACR 2017)\n\n"
             "Exclusion Criteria:\n\n* Overlap myositis\n* Myositis associated with cancer "
             "within 3 years\n* Antisynthetase syndrome\n* Interstitial lung disease "
             "requiring oxygen",
     "arms": [("HyQvia", E)], "iv": [I("BIOLOGICAL", "HyQvia", ["HyQvia"])],
     "sub": ["dermatomyositis"], "tx": ["ivig"]},
    {"nct": "NCT09800157", "title": "Dermatomyositis Skin Disease and Photoprotection",
     "cond": ["Dermatomyositis"], "mesh": ["dm"],
     "kw": ["myositis", "polymyositis", "inclusion body myositis", "IMNM", "antisynthetase",
            "juvenile dermatomyositis", "inflammatory myopathy", "overlap myositis", "ILD"],
     "summary": "Daily broad-spectrum sunscreen and photoprotection counselling versus usual "
                "advice for cutaneous dermatomyositis.",
     "arms": [("Sunscreen", E), ("Usual advice", "NO_INTERVENTION")],
     "iv": [I("OTHER", "Broad-spectrum sunscreen SPF 50", ["Sunscreen"])],
     "sub": ["dermatomyositis"], "tx": ["skin-care"]},
    {"nct": "NCT09800158", "title": "Zoledronic Acid for Glucocorticoid Bone Loss in "
                                    "Dermatomyositis",
     "cond": ["Dermatomyositis", "Osteoporosis"], "mesh": ["dm"],
     "kw": ["myositis", "IIM", "JDM", "polymyositis", "sIBM", "anti-synthetase syndrome"],
     "summary": "Zoledronic acid plus calcium and vitamin D versus calcium and vitamin D "
                "alone in dermatomyositis patients starting high-dose glucocorticoids.",
     "arms": [("Zoledronic acid", E), ("Calcium and vitamin D", A)],
     "iv": [I("DRUG", "Zoledronic acid", ["Zoledronic acid"]),
            I("DIETARY_SUPPLEMENT", "Calcium and vitamin D",
              ["Zoledronic acid", "Calcium and vitamin D"])],
     "sub": ["dermatomyositis"], "tx": ["bone-health"]},
    {"nct": "NCT09800159", "title": "Rituximab in Antisynthetase Syndrome Without Lung Disease",
     "cond": ["Antisynthetase Syndrome"],
     "summary": "Rituximab for myositis and arthritis in antisynthetase syndrome without "
                "interstitial lung disease; patients with ILD are not included.",
     "arms": [("Rituximab", E)], "iv": [I("BIOLOGICAL", "Rituximab", ["Rituximab"])],
     "sub": ["ass"], "tx": ["b-cell"]},
    {"nct": "NCT09800160", "title": "Efgartigimod in Polymyositis",
     "cond": ["Polymyositis"], "mesh": ["pm"],
     "summary": "Efgartigimod in polymyositis. Patients who meet criteria for inclusion body "
                "myositis or have a history of necrotizing myopathy with anti-HMGCR antibodies "
                "will not be enrolled.",
     "arms": [("Efgartigimod", E), ("Placebo", P)],
     "iv": [I("BIOLOGICAL", "Efgartigimod", ["Efgartigimod"]),
            I("BIOLOGICAL", "Placebo", ["Placebo"])],
     "sub": ["polymyositis"], "tx": ["fcrn"]},
    {"nct": "NCT09800161", "title": "Physiotherapy After Hospital Stay in Dermatomyositis",
     "cond": ["Dermatomyositis"], "mesh": ["dm"],
     "summary": "Rehabilitation programme after hospital discharge. Juvenile-onset disease and "
                "clinically amyopathic dermatomyositis were exclusion criteria.",
     "arms": [("Physiotherapy", E), ("Usual care", "NO_INTERVENTION")],
     "iv": [I("BEHAVIORAL", "Physiotherapy", ["Physiotherapy"])],
     "sub": ["dermatomyositis"], "tx": ["exercise"]},
]
