"""Converters on small fixtures in the native layouts (tests/fixtures/<source>/), malformed rows included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from robust_mmr.cli.main import main
from robust_mmr.data.converters import convert_dataset
from robust_mmr.data.converters.common import modality_from_text, normalise_answer, normalise_answer_type
from robust_mmr.data.manifest import read_manifest
from robust_mmr.data.validate import validate_dataset
from robust_mmr.errors import InputError

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def native(tmp_path: Path, source: str, images: list[str]) -> Path:
    """Copy a fixture's text files to tmp and write tiny images at the given relative paths."""
    root = tmp_path / source
    shutil.copytree(FIXTURES / source, root)
    for rel in images:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (12, 10), color=len(rel) * 7 % 255).save(root / rel)
    return root


def converted(source: str, native_dir: Path, out: Path, **options) -> tuple[dict, list]:
    report = convert_dataset(source, native_dir, out, **options)
    kind = {"slake": "vqa", "melinda": "classification"}.get(source, "image_text")
    records = read_manifest(out / f"{kind}.jsonl")
    assert validate_dataset(out).rejected == 0  # every written record is valid and its image decodes
    assert report.kept == len(records)
    return json.loads((out / "conversion.json").read_text()), records


def test_slake_english_filter_splits_and_named_skips(tmp_path):
    src = native(tmp_path, "slake", ["imgs/xmlab1/source.jpg", "imgs/xmlab2/source.jpg", "imgs/xmlab3/source.jpg"])
    card, records = converted("slake", src, tmp_path / "out")
    assert [(r.id, r.split, r.answer_type) for r in records] == [
        ("slake-11", "train", "open"), ("slake-21", "val", "closed"), ("slake-31", "test", "open")]
    assert records[0].image == "imgs/xmlab1/source.jpg"
    assert records[0].meta["modality"] == "CT" and records[2].meta["location"] == "Chest_heart"
    assert card["skip_reasons"] == {"language filter": 1, "missing image": 1, "empty answer": 1, "malformed row": 1}
    assert any("train.json:3 field=img_name: missing image" in e for e in card["skip_examples"])
    _, both = converted("slake", src, tmp_path / "all", lang="all")
    assert {r.meta["q_lang"] for r in both} == {"en", "zh"}


def test_roco_missing_images_are_reported_not_fatal(tmp_path):
    images = ["train/radiology/images/chest-g01.jpg", "train/radiology/images/PMC2_brain-g02.jpg",
              "validation/non-radiology/images/specimen.jpg"]
    card, records = converted("roco", native(tmp_path, "roco", images), tmp_path / "out")
    by_id = {r.id: r for r in records}
    assert set(by_id) == {"roco-rad-ROCO_00001", "roco-rad-ROCO_00002", "roco-nonrad-ROCO_00001"}
    chest, brain = by_id["roco-rad-ROCO_00001"], by_id["roco-rad-ROCO_00002"]
    assert chest.meta["modality"] == "ct" and brain.meta["modality"] == "mri"
    assert brain.image.endswith("PMC2_brain-g02.jpg")  # dlinks name absent, licences name found
    assert chest.meta["keywords"] == "nodule|chest" and chest.meta["cuis"] == "C0028259|C0817096"
    assert chest.meta["licence"] == "CC BY" and by_id["roco-nonrad-ROCO_00001"].split == "val"
    assert card["skip_reasons"] == {"missing image": 1, "malformed row": 1, "empty caption": 1}
    assert any("ROCO_00003" in e and "missing image" in e for e in card["skip_examples"])


def test_melinda_label_column_and_skips(tmp_path):
    src = native(tmp_path, "melinda", [f"images/fig{i}.png" for i in (1, 2, 4, 5, 6)])
    card, records = converted("melinda", src, tmp_path / "out")
    assert [(r.id, r.label, r.split) for r in records] == [
        ("melinda-fig1.png", "molecular", "train"), ("melinda-fig2.png", "microscopy", "train"),
        ("melinda-fig5.png", "microscopy", "val")]
    assert records[0].text.startswith("Western blot of lysates, probed") and "p_meth_label" not in records[0].meta
    assert card["skip_reasons"] == {"missing image": 1, "malformed row": 1, "empty p_meth_label": 1}
    _, by_method = converted("melinda", src, tmp_path / "imeth", label_column="i_meth")
    assert [r.label for r in by_method] == ["Western blot", "Confocal microscopy", "TEM", "Gel"]
    with pytest.raises(InputError, match="p_meth_label"):
        convert_dataset("melinda", src, tmp_path / "bad", label_column="caption")


def test_medpix2_records_and_domain_meta(tmp_path):
    images = [f"images/{n}.png" for n in ("MPX1031_synpic20041", "MPX1040_synpic30001", "MPX2000_synpic40001",
                                          "MPX3000_synpic50001")]
    card, records = converted("medpix2", native(tmp_path, "medpix2", images), tmp_path / "out")
    assert [(r.id, r.split, r.meta["modality"]) for r in records] == [
        ("medpix2-MPX1031_synpic20041", "train", "CT"), ("medpix2-MPX1040_synpic30001", "train", "MR"),
        ("medpix2-MPX2000_synpic40001", "val", "CT")]
    first = records[0].meta
    assert (first["plane"], first["location_category"], first["synpic"]) == ("Axial", "Thorax", "synpic20041")
    assert card["skip_reasons"] == {"invalid JSON": 1, "missing image": 1, "empty Description.Caption": 1}


def test_generic_csv_and_jsonl_with_column_mapping(tmp_path):
    src = native(tmp_path, "csv", ["img/a1.png", "img/a2.png", "img/a3.png", "img/a5.png"])
    card, records = converted("csv", src / "table.csv", tmp_path / "out", columns="id=fig,image=path,text=caption")
    assert [(r.id, r.split, r.meta) for r in records] == [("a1", "train", {"site": "north"}),
                                                          ("a2", "val", {"site": "south"})]
    assert card["skip_reasons"] == {"invalid split": 1, "missing image": 1, "duplicate id": 1, "malformed row": 1}
    report = convert_dataset("csv", src / "vqa.jsonl", tmp_path / "vqa")
    vqa = read_manifest(tmp_path / "vqa" / "vqa.jsonl")
    assert [(r.id, r.answer_type) for r in vqa] == [("q1", "closed"), ("q2", "open")]
    assert dict(report.skip_counts) == {"empty question": 1, "invalid JSON": 1}
    with pytest.raises(InputError, match="no column 'text' for field 'text'"):
        convert_dataset("csv", src / "table.csv", tmp_path / "bad", columns="id=fig,image=path")
    # the VQA conversion into the folder of the image-text one: the earlier manifest does not pass for part of it
    convert_dataset("csv", src / "vqa.jsonl", tmp_path / "out")
    assert not (tmp_path / "out" / "image_text.jsonl").exists()
    assert [r.id for r in read_manifest(tmp_path / "out" / "vqa.jsonl")] == ["q1", "q2"]


def test_convert_cli_and_option_checks(tmp_path, capsys):
    src = native(tmp_path, "slake", ["imgs/xmlab1/source.jpg"])
    assert main(["data", "convert", "--source", "slake", "--in", str(src), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "kept 1, skipped 6" in out and "language filter" in out
    assert (tmp_path / "o" / "imgs").is_symlink()  # images are linked, never copied
    with pytest.raises(InputError, match="do not apply to --source slake"):
        convert_dataset("slake", src, tmp_path / "x", variant="original")
    with pytest.raises(InputError, match="valid: vqa-rad"):
        convert_dataset("nope", src, tmp_path / "x")


def test_normalisation_rules():
    assert normalise_answer_type("CLOSED ") == "closed" and normalise_answer_type("maybe") is None
    assert normalise_answer("  Left   Lung ") == "left lung"
    table = {"CT angiography of the aorta": "angiography", "PET-CT shows uptake": "pet", "T2 weighted image": "mri",
             "us - ultrasound": "ultrasound", "xr - plain film": "x-ray", "Axial CT": "ct", "a photograph": "other",
             "Bone scintigraphy": "nuclear", "mammograph": "x-ray", "contrast enhanced": "other"}
    assert {text: modality_from_text(text) for text in table} == table


def test_vqa_med_coarse_modality_reads_yes_no_modality_questions():
    from robust_mmr.data.converters.vqa_med_2019 import _coarse_modality

    organ = ("what organ system is shown in this image?", "skull and contents")
    assert _coarse_modality({"modality": ("is this a ct scan?", "yes"), "organ": organ}) == "ct"
    # a "no" says what the image is not: the modality comes from elsewhere, or stays unknown
    assert _coarse_modality({"modality": ("is this a ct scan?", "no"), "organ": organ}) == "unknown"
    assert _coarse_modality({"modality": ("is this a ct scan?", "no"),
                             "abnormality": ("what is abnormal in the mri?", "glioma")}) == "mri"
    assert _coarse_modality({"modality": ("what modality is shown?", "mr - flair"), "organ": organ}) == "mri"
