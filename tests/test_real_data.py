"""Converters, dedup, splits and stats on the staged real VQA-RAD and VQA-Med-2019 copies (skipped if absent).

Expected numbers are either the documented release totals or derived here from the raw files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from conftest import SHARED_DATA
from robust_mmr.cli.main import main
from robust_mmr.data.converters import convert_dataset
from robust_mmr.data.dedup import DEFAULT_MAX_DISTANCE, dhash, hamming, remove_test_overlaps
from robust_mmr.data.images import load_image
from robust_mmr.data.manifest import read_manifest
from robust_mmr.data.validate import validate_dataset

VQA_RAD = SHARED_DATA / "vqa_rad"
VQA_MED = SHARED_DATA / "vqa_med_2019"
pytestmark = pytest.mark.skipif(not (VQA_RAD.is_dir() and VQA_MED.is_dir()), reason="shared real data absent")


@pytest.fixture(scope="module")
def vqa_rad(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vqarad")
    convert_dataset("vqa-rad", VQA_RAD, out)
    return out


@pytest.fixture(scope="module")
def vqa_med(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vqamed")
    convert_dataset("vqa-med-2019", VQA_MED, out)
    return out


def test_vqa_rad_mevf_counts_domains_images(vqa_rad):
    records = read_manifest(vqa_rad / "vqa.jsonl")
    assert Counter(r.split for r in records) == {"train": 3064, "test": 451}
    raw = {split: json.loads((VQA_RAD / f"{split}set.json").read_text()) for split in ("train", "test")}
    expected = Counter((split, row["image_organ"]) for split, rows in raw.items() for row in rows)
    assert Counter((r.split, r.meta["image_organ"]) for r in records) == expected
    raw_types = Counter(row["answer_type"].strip().lower() for rows in raw.values() for row in rows)
    assert Counter(r.answer_type for r in records) == raw_types  # "CLOSED " counted as closed
    assert validate_dataset(vqa_rad).rejected == 0  # every referenced image decodes


def test_vqa_rad_original_release(tmp_path):
    convert_dataset("vqa-rad", VQA_RAD, tmp_path, variant="original")
    records = read_manifest(tmp_path / "vqa.jsonl")
    raw = json.loads((VQA_RAD / "original_release" / "VQA_RAD_Dataset_Public.json").read_text())
    phrase = Counter(row["phrase_type"] for row in raw)
    assert Counter(r.split for r in records) == {"train": phrase["freeform"] + phrase["para"],
                                                 "test": phrase["test_freeform"] + phrase["test_para"]}
    with_frame = sum(row.get("question_frame", "NULL") != "NULL" for row in raw)
    assert sum("question_frame" in r.meta for r in records) == with_frame


def test_vqa_med_2019_counts_categories_images(vqa_med):
    records = read_manifest(vqa_med / "vqa.jsonl")
    assert Counter(r.split for r in records) == {"train": 12792, "val": 2000, "test": 500}
    expected = Counter()
    for split, folder in (("train", "training"), ("val", "validation")):
        for path in (VQA_MED / folder / "QAPairsByCategory").glob("C*_*.txt"):
            category = path.name.split("_")[1].lower()
            expected[(split, category)] += sum(1 for line in path.read_text().splitlines() if line.strip())
    test_lines = (VQA_MED / "testing" / "VQAMed2019_Test_Questions_w_Ref_Answers.txt").read_text().splitlines()
    expected.update(("test", line.split("|")[1]) for line in test_lines if line.strip())
    assert Counter((r.split, r.meta["category"]) for r in records) == expected
    # per-image plane from the C2 file, copied onto every question of the image
    plane_lines = (VQA_MED / "training" / "QAPairsByCategory" / "C2_Plane_train.txt").read_text().splitlines()
    plane = dict((line.split("|")[0], line.split("|")[2]) for line in plane_lines if line.strip())
    assert all(r.meta["plane"] == plane[r.meta["synpic"]] for r in records if r.split == "train")
    alternatives = sum("#" in line for line in test_lines)
    assert sum("answers" in r.meta for r in records) == alternatives > 0
    assert validate_dataset(vqa_med).rejected == 0


def test_vqa_med_2019_category_filter(tmp_path):
    report = convert_dataset("vqa-med-2019", VQA_MED, tmp_path, categories="C1,C2,C3")
    records = read_manifest(tmp_path / "vqa.jsonl")
    assert {r.meta["category"] for r in records} == {"modality", "plane", "organ"}
    assert report.skip_counts == {"category not selected": 12792 + 2000 + 500 - len(records)}


def test_dedup_finds_known_vqa_rad_test_overlaps(vqa_rad, vqa_med):
    overlaps = json.loads((SHARED_DATA / "overlaps_synpic.json").read_text())["vqarad_test_vs_vqamed2019_all"]
    tests = [r for r in read_manifest(vqa_rad / "vqa.jsonl") if r.split == "test"]
    pretrain = read_manifest(vqa_med / "vqa.jsonl")
    kept, report = remove_test_overlaps(pretrain, vqa_med, [(tests, vqa_rad)], max_distance=None)
    removed = {r.meta["synpic"] for r in pretrain} - {r.meta["synpic"] for r in kept}
    assert removed == set(overlaps)
    assert report.kept + sum(report.removed.values()) == len(pretrain)
    # the same images are also found by pixels: the re-released copies hash within the threshold
    by_name = {Path(r.image).stem: vqa_med / r.image for r in pretrain}
    distances = [int(hamming(dhash(load_image(VQA_RAD / "images" / f"{s}.jpg")), dhash(load_image(by_name[s]))))
                 for s in overlaps]
    assert max(distances) <= DEFAULT_MAX_DISTANCE


def test_stats_and_lodo_split_on_vqa_rad(vqa_rad, tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["data", "stats", str(vqa_rad), "--png", str(png)]) == 0
    printed = capsys.readouterr().out
    organs = Counter(r.meta["image_organ"] for r in read_manifest(vqa_rad / "vqa.jsonl"))
    for organ, n in organs.items():
        assert any(line.split()[0] == organ and str(n) in line.split() for line in printed.splitlines() if line)
    with Image.open(png) as grid:
        assert grid.height > 3 * 250  # a row per organ
    assert main(["data", "split", str(vqa_rad), "--by", "image_organ", "--lodo", "--out", str(tmp_path / "s")]) == 0
    for organ in organs:
        card = json.loads((tmp_path / "s" / f"image_organ={organ}" / "split.json").read_text())
        assert "carved" in card["val"]["policy"]
        assert card["counts"]["vqa"]["test"] == organs[organ]
