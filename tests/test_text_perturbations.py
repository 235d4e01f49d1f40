"""Text perturbations: determinism, severity, negation safety, alignment, lexicons, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from robust_mmr.errors import InputError
from robust_mmr.perturbations.seeding import SEVERITIES
from robust_mmr.perturbations.text import (
    TEXT_PERTURBATION_SPECS,
    TextPerturbation,
    count_negations,
    perturb_text,
    text_perturbations,
)
from robust_mmr.perturbations.text.lexicon import load_abbreviations, load_synonyms

# Realistic reports, written for these tests: verbose and terse, negated and not.
REPORTS = [
    "PA and lateral views of the chest were obtained. The lungs are clear. There is no pleural effusion or pneumothorax. The heart size is normal.",
    "CT of the abdomen and pelvis with IV contrast demonstrates a 2.3 cm hypodense lesion in the right lobe of the liver. The gallbladder is unremarkable. No free fluid.",
    "MRI brain w/o contrast. Multiple T2/FLAIR hyperintense foci are seen in the periventricular white matter, consistent with chronic small vessel ischemic disease. No acute infarct on DWI.",
    "There is a 6 mm nodule in the right upper lobe. Recommend follow-up chest CT in 6 to 12 months. The mediastinal contours are within normal limits.",
    "Portable AP chest radiograph. The endotracheal tube tip is approximately 4 cm above the carina. Bilateral airspace opacities have increased since the prior examination.",
    "Liver without focal lesion. Spleen is mildly enlarged, measuring 14 cm. Kidneys are normal in size and echogenicity. Small right pleural effusion.",
    "Ultrasound of the right upper quadrant shows cholelithiasis without gallbladder wall thickening. The common bile duct measures 4 mm. No sonographic Murphy sign.",
    "Status post left total knee arthroplasty. Components are in expected position. No periprosthetic fracture or lucency. Moderate joint effusion.",
    "Noncontrast CT head. There is an acute subdural hematoma along the left convexity measuring 8 mm in thickness. Mild midline shift to the right. The ventricles are not dilated.",
    "Frontal radiograph of the left wrist demonstrates a nondisplaced fracture of the distal radius. Soft tissue swelling is noted. Alignment is otherwise anatomic.",
    "The heart is not enlarged. Mild atelectasis at the left lung base. The costophrenic angles are sharp. Degenerative changes of the thoracic spine.",
    "CTA chest shows filling defects in the right lower lobe segmental pulmonary arteries consistent with acute pulmonary embolism. The RV/LV ratio is normal. Lungs are clear; no effusion.",
    "Lumbar spine MRI. Disc bulge at L4-L5 with mild bilateral neural foraminal narrowing. The conus terminates at L1. Marrow signal is normal.",
    "Pelvic ultrasound demonstrates a normal-sized uterus with an endometrial stripe of 6 mm. The ovaries are unremarkable. There is a small amount of free fluid in the cul-de-sac.",
    "Chest radiograph shows a right internal jugular central venous catheter with the tip in the superior vena cava. The previously seen left pneumothorax has resolved.",
    "Mammogram demonstrates scattered fibroglandular densities. A 9 mm spiculated mass is seen in the upper outer quadrant of the left breast. Recommend ultrasound-guided biopsy.",
    "Abdominal radiograph shows dilated loops of small bowel with air-fluid levels, concerning for small bowel obstruction. Gas is present in the colon and rectum.",
    "Knee MRI demonstrates a complex tear of the posterior horn of the medial meniscus. The anterior cruciate ligament is intact. A small Baker cyst is present.",
    "Cardiomegaly with pulmonary vascular congestion and interstitial edema. Small bilateral pleural effusions. Findings are consistent with congestive heart failure.",
    "Renal ultrasound shows mild hydronephrosis of the left kidney. The right kidney is normal. The bladder is partially distended and otherwise unremarkable.",
]

NEGATED = [
    "No acute cardiopulmonary process.",
    "There is no pneumothorax.",
    "Liver without focal lesion.",
    "Not enlarged.",
    "Lungs are clear; no effusion.",
    "The appendix is not seen. No free air. Kidneys are free of stones.",
    "Patient denies trauma. There isn't any fracture, nor dislocation. Negative for DVT.",
    "NAD. Bowel gas pattern is nonobstructive. Neither ovary is enlarged.",
    "CT chest w/o contrast: no evidence of PE. No pulmonary nodules. Absent left kidney, s/p nephrectomy.",
    "Pneumothorax absent. Heart size normal. No focal consolidation, pleural effusion or pneumothorax.",
    "IMPRESSION:\nNo acute intracranial abnormality. Evaluation is limited without contrast. Gallbladder wall is not thickened.",
    "on the right no change; lungs clear",
]
CORPUS = REPORTS + NEGATED
NAMES = text_perturbations()
MONOTONE_SEEDS = range(6)  # sentence-level perturbations move big chunks: average over a few draws


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (insert, delete, substitute each cost 1)."""
    while a and b and a[0] == b[0]:  # a common prefix or suffix costs nothing
        a, b = a[1:], b[1:]
    while a and b and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalised_distance(a: str, b: str) -> float:
    return levenshtein(a, b) / max(len(a), len(b), 1)


def test_registry_shape():
    assert set(NAMES) >= {
        "abbreviate", "expand", "synonym", "keyboard_typo", "ocr_confusion", "word_drop", "word_swap",
        "sentence_drop", "sentence_shuffle", "case_punct_noise", "terse",
    }
    for name, spec in TEXT_PERTURBATION_SPECS.items():
        assert spec.name == name and spec.description
        assert sorted(spec.severity_params) == list(SEVERITIES)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_sample_dependent(name):
    outputs = {}
    for sample in ("study-1", "study-2"):
        for i, report in enumerate(REPORTS):
            first = perturb_text(report, name, 3, seed=7, sample_id=f"{sample}/{i}")
            again = perturb_text(report, name, 3, seed=7, sample_id=f"{sample}/{i}")
            assert first == again
            json.dumps(first.params)  # JSON-serialisable
            outputs.setdefault(i, []).append(first.text)
    differing = sum(a != b for a, b in outputs.values())
    if name == "terse":  # a style: depends on the sample only through equivalent abbreviations
        assert differing <= len(REPORTS)
    else:
        assert differing >= 3, f"{name}: sample id barely matters ({differing} of {len(REPORTS)} differ)"


@pytest.mark.parametrize("name", NAMES)
def test_severity_monotone(name):
    means = []
    for severity in SEVERITIES:
        distances = [
            normalised_distance(report, perturb_text(report, name, severity, seed=seed, sample_id=f"r{i}").text)
            for seed in MONOTONE_SEEDS
            for i, report in enumerate(REPORTS)
        ]
        means.append(sum(distances) / len(distances))
    assert means[0] > 0, f"{name} does nothing at severity 1"
    assert all(a < b for a, b in zip(means, means[1:])), f"{name}: {means}"


def test_count_negations():
    assert count_negations("No acute cardiopulmonary process.") == 1
    assert count_negations("There is no pneumothorax.") == 1
    assert count_negations("Liver without focal lesion. Liver w/o focal lesion.") == 2
    assert count_negations("Heart isn’t enlarged, nor is there effusion.") == 2
    assert count_negations("NAD.") == 1  # abbreviation of "no abnormality detected"
    assert count_negations("Neg for fracture. Kidneys free of stones. Free air.") == 2
    assert count_negations("Lungs are clear. Heart size is normal. Unremarkable.") == 0
    assert count_negations("Known, noted, nodule, another, cannot exclude.") == 1


@pytest.mark.parametrize("name", NAMES)
def test_no_negation_added_or_removed(name):
    for severity in SEVERITIES:
        for seed in range(3):
            for i, text in enumerate(CORPUS):
                out = perturb_text(text, name, severity, seed=seed, sample_id=f"n{i}")
                assert count_negations(out.text) == count_negations(text), (name, severity, text, out.text)


@pytest.mark.parametrize("name", NAMES)
def test_alignment_and_changed_words(name):
    for severity in (1, 5):
        for i, text in enumerate(CORPUS):
            out = perturb_text(text, name, severity, seed=3, sample_id=f"a{i}")
            before, after = text.split(), out.text.split()
            if TEXT_PERTURBATION_SPECS[name].token_aligned:
                assert out.token_aligned
            assert all(0 <= j < len(after) for j in out.changed_words)
            differing = [j for j, (a, b) in enumerate(zip(before, after)) if a != b]
            if out.token_aligned:
                assert len(after) == len(before)
                assert out.changed_words == differing
            elif name == "word_swap":
                assert len(after) == len(before) and out.changed_words == differing
            elif out.text != text:
                assert out.changed_words or len(after) < len(before), (name, text, out)


def test_whitespace_is_kept_by_aligned_perturbations():
    text = "IMPRESSION:\n  1. No acute fracture.\n  2. Mild degenerative change."
    for name in ("keyboard_typo", "ocr_confusion", "case_punct_noise", "synonym"):
        out = perturb_text(text, name, 5, seed=0, sample_id="x")
        assert re.findall(r"\s+", out.text) == re.findall(r"\s+", text), name


def test_recorded_edits_describe_the_output():
    for i, text in enumerate(REPORTS):
        out = perturb_text(text, "keyboard_typo", 4, seed=0, sample_id=f"e{i}")
        before, after = text.split(), out.text.split()
        assert [e[0] for e in out.params["edits"]] == out.changed_words
        for index, old, new in out.params["edits"]:
            assert before[index] == old and after[index] == new and old != new
        dropped = perturb_text(text, "word_drop", 4, seed=0, sample_id=f"e{i}")
        assert len(dropped.text.split()) == len(before) - len(dropped.params["dropped"])
        assert all(before[index] == word for index, word in dropped.params["dropped"])


def test_lexical_substitutions_are_recorded():
    text = "CT chest w/o contrast shows a nodule in the RUL."
    out = perturb_text(text, "expand", 5, seed=0, sample_id="x")
    assert out.text == "Computed tomography chest without contrast shows a nodule in the right upper lobe."
    assert [s[1] for s in out.params["substitutions"]] == ["CT", "w/o", "RUL"]
    back = perturb_text(out.text, "abbreviate", 5, seed=0, sample_id="x")
    assert "CT" in back.text.split() and "w/o" in back.text.split() and "RUL." in back.text.split()


def test_abbreviation_case_rules():
    lower = perturb_text("ct chest", "expand", 5, seed=0, sample_id="x")
    upper = perturb_text("CT chest", "expand", 5, seed=0, sample_id="x")
    assert lower.text == "computed tomography chest"
    assert upper.text == "Computed tomography chest"
    # exact-case entries: "US" is ultrasound, "us" is a pronoun; "Mr." is not MR
    assert perturb_text("Renal US today", "expand", 5, seed=0, sample_id="x").text == "Renal ultrasound today"
    assert perturb_text("call us, Mr. Smith", "expand", 5, seed=0, sample_id="x").text == "call us, Mr. Smith"


def test_lexicons_load_and_are_safe():
    abbreviations = load_abbreviations()
    synonyms = load_synonyms()
    assert len(abbreviations) >= 150 and len(synonyms) >= 150
    keys = [a.short.lower() for a in abbreviations]
    assert len(keys) == len(set(keys))
    for a in abbreviations:
        assert count_negations(a.short) == count_negations(a.expansion), a
    for term, options in synonyms.items():
        for option in options:
            assert count_negations(option) == count_negations(term), (term, option)
            assert term in synonyms[option]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("abbreviation\texpansion\tcase\nCT\tcomputed tomography\tany\nct\tcat scan\tany\n", "duplicates line 2"),
        ("abbreviation\texpansion\tcase\nw/o\twith\tany\n", "negation cue"),
        ("abbreviation\texpansion\tcase\nCT\tcomputed tomography\tsometimes\n", "choose one of any, exact"),
        ("abbr\texpansion\n", "header"),
        ("abbreviation\texpansion\tcase\nCT\tcomputed tomography\n", "3 non-empty"),
    ],
)
def test_bad_abbreviation_file_errors(tmp_path: Path, content: str, message: str):
    path = tmp_path / "abbreviations.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_abbreviations(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("term\tsynonyms\nabsent\tpresent\npresent\tabsent\n", "negation"),
        ("term\tsynonyms\nshows\treveals\n", "symmetric"),
        ("term\tsynonyms\nshows\treveals\nShows\treveals\nreveals\tshows\n", "duplicates"),
    ],
)
def test_bad_synonym_file_errors(tmp_path: Path, content: str, message: str):
    path = tmp_path / "synonyms.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_synonyms(path)


def test_empty_text_unchanged():
    for name in NAMES:
        for text in ("", "   \n\t"):
            out = perturb_text(text, name, 5, seed=0, sample_id="x")
            assert out == TextPerturbation(text, out.params, True, [])


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="keyboard_typo"):
        perturb_text("No effusion.", "typo", 1, seed=0, sample_id="x")
    for severity in (0, 6, 2.5, True):
        with pytest.raises(InputError, match="1, 2, 3, 4, 5"):
            perturb_text("No effusion.", "word_drop", severity, seed=0, sample_id="x")
    with pytest.raises(InputError, match="string"):
        perturb_text(None, "word_drop", 1, seed=0, sample_id="x")


def test_sentence_drop_keeps_negated_sentences_and_one_sentence():
    text = "The lungs are clear. No pneumothorax. Heart size is normal. Bones are intact."
    for i in range(20):
        out = perturb_text(text, "sentence_drop", 5, seed=i, sample_id="s")
        assert "No pneumothorax." in out.text
    single = "Heart size is normal."
    assert perturb_text(single, "sentence_drop", 5, seed=0, sample_id="s").text == single


def test_terse_goes_further_with_severity():
    text = "There is a small nodule in the right upper lobe and there is no pleural effusion seen."
    outs = [perturb_text(text, "terse", s, seed=0, sample_id="t").text for s in SEVERITIES]
    assert outs[0] == "There is small nodule in right upper lobe and there is no pleural effusion seen."
    assert outs[1] == "Small nodule in right upper lobe and no pleural effusion seen."
    assert outs[2] == "Small nodule in right upper lobe and no pleural effusion."
    assert outs[3] == "Small nodule in RUL and no pleural effusion."
    assert outs[4] == "Small nodule in RUL & no pleural effusion."
