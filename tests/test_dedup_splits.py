"""Leakage dedup (synpic id and dHash) and leave-one-domain-out splits, on small generated data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from robust_mmr.cli.main import main
from robust_mmr.data.dedup import DEFAULT_MAX_DISTANCE, REASON_HASH, REASON_ID, dhash, hamming, remove_test_overlaps
from robust_mmr.data.manifest import read_manifest, write_records
from robust_mmr.data.schema import ImageTextRecord, VQARecord
from robust_mmr.data.splits import holdout_split, image_disjoint_split
from robust_mmr.data.synthetic import sample_image
from robust_mmr.data.validate import validate_dataset


def save(root: Path, rel: str, array: np.ndarray) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(root / rel)
    return rel


def test_dhash_tolerates_resize_and_gamma_but_separates_scans():
    scan = sample_image(seed=1, size=96)
    resized = np.asarray(Image.fromarray(scan).resize((64, 64), Image.Resampling.BILINEAR))
    brighter = np.clip(255.0 * (scan / 255.0) ** 0.8, 0, 255).astype(np.uint8)
    base = dhash(scan)
    assert base.shape == (32,) and base.dtype == np.uint8
    assert hamming(base, dhash(resized)) <= DEFAULT_MAX_DISTANCE
    assert hamming(base, dhash(brighter)) <= DEFAULT_MAX_DISTANCE
    others = [int(hamming(base, dhash(sample_image(seed=s, size=96)))) for s in range(2, 8)]
    assert min(others) > DEFAULT_MAX_DISTANCE


def test_remove_test_overlaps_by_id_and_by_pixels(tmp_path):
    test_root, pre_root = tmp_path / "test", tmp_path / "pre"
    test_img = sample_image(seed=3, size=128)
    tests = [VQARecord("t1", save(test_root, "images/synpic100.jpg", test_img), "q?", "yes", "closed", "test"),
             VQARecord("t2", save(test_root, "images/synpic200.png", sample_image(seed=4, size=128)), "q?", "no",
                       "closed", "test")]
    # the same picture under another name and size: a resize of the stored (JPEG-decoded) test image
    copy = np.asarray(Image.open(test_root / tests[0].image).resize((96, 96)))
    pretrain = [
        ImageTextRecord("p-id", save(pre_root, "images/a_synpic200.png", sample_image(seed=9, size=128)), "x", "train"),
        ImageTextRecord("p-pix", save(pre_root, "images/renamed.png", copy), "x", "train"),
        ImageTextRecord("p-ok", save(pre_root, "images/other.png", sample_image(seed=5, size=128)), "x", "train"),
    ]
    kept, report = remove_test_overlaps(pretrain, pre_root, [(tests, test_root)])
    assert [r.id for r in kept] == ["p-ok"]
    assert dict(report.removed) == {REASON_ID: 1, REASON_HASH: 1}
    assert {e["id"]: e["match"] for e in report.examples} == {"p-id": "images/synpic200.png",
                                                             "p-pix": "test/images/synpic100.jpg"}
    kept_ids_only, _ = remove_test_overlaps(pretrain, pre_root, [(tests, test_root)], max_distance=None)
    assert [r.id for r in kept_ids_only] == ["p-pix", "p-ok"]


def test_dedup_cli_writes_clean_dataset(tmp_path, capsys):
    test_root, pre_root = tmp_path / "test", tmp_path / "pre"
    write_records(test_root, [VQARecord("t", save(test_root, "images/synpic7.png", sample_image(1, 32)), "q", "a",
                                        "open", "test")])
    write_records(pre_root, [ImageTextRecord(f"p{i}", save(pre_root, f"images/synpic{i}.png", sample_image(i + 10, 32)),
                                             "r", "train") for i in (6, 7, 8)])
    out = tmp_path / "clean"
    assert main(["data", "dedup", "--pretrain", str(pre_root / "image_text.jsonl"), "--against", str(test_root),
                 "--out", str(out)]) == 0
    assert "same synpic id" in capsys.readouterr().out
    assert [r.id for r in read_manifest(out / "image_text.jsonl")] == ["p6", "p8"]
    assert validate_dataset(out).rejected == 0  # image folders linked into the clean dataset
    assert json.loads((out / "dedup.json").read_text())["reports"]["image_text"]["removed"] == 1


def test_lodo_cli_on_synthetic_set(synth_dir, tmp_path, capsys):
    out = tmp_path / "lodo"
    assert main(["data", "split", str(synth_dir), "--by", "domain", "--lodo", "--out", str(out)]) == 0
    domains = sorted({r.meta["domain"] for r in read_manifest(synth_dir / "image_text.jsonl")})
    assert sorted(p.name for p in out.iterdir()) == [f"domain={d}" for d in domains]
    for held in domains:
        split_dir = out / f"domain={held}"
        card = json.loads((split_dir / "split.json").read_text())
        assert card["val"]["policy"] == "kept from source"
        for name, digest in card["manifest_sha256"].items():
            assert hashlib.sha256((split_dir / name).read_bytes()).hexdigest() == digest
            records = read_manifest(split_dir / name)
            assert {r.split for r in records if r.meta["domain"] == held} == {"test"}
            assert {r.split for r in records if r.meta["domain"] != held} == {"train", "val"}
        assert validate_dataset(split_dir).rejected == 0


def test_val_carved_by_image_when_source_has_none(tmp_path):
    records = [VQARecord(f"q{i}-{j}", f"images/{i}.png", "q", "a", "open", "train" if i < 16 else "test",
                         {"organ": "HEAD" if i % 2 else "CHEST"}) for i in range(20) for j in range(3)]
    split, card = holdout_split({"vqa": records}, "organ", "HEAD", val_fraction=0.25, seed=3)
    recs = split["vqa"]
    val_images = {r.image for r in recs if r.split == "val"}
    assert val_images and not val_images & {r.image for r in recs if r.split == "train"}
    assert {r.meta["organ"] for r in recs if r.split in ("train", "val")} == {"CHEST"}
    assert len([r for r in recs if r.split == "test"]) == 30  # every HEAD question, native train or test
    assert card["excluded"]["in-domain test records"] == 6  # CHEST questions of native test images 16, 18
    assert card["val"]["images"] == 2 and "carved" in card["val"]["policy"]
    again, _ = holdout_split({"vqa": records}, "organ", "HEAD", val_fraction=0.25, seed=3)
    assert again == split


def test_image_disjoint_split_keeps_every_test_image_out_of_training(tmp_path):
    """Like VQA-RAD: native test questions are asked about training images; the image-disjoint split moves whole
    images (every record on them) to test, per organ, so no test image is a training image."""
    records = [VQARecord(f"q{i}-{j}", f"images/{i}.png", f"q{j}", "a", "open", "test" if j == 0 else "train",
                         {"organ": ("HEAD", "CHEST", "ABD")[i % 3]}) for i in range(30) for j in range(4)]
    split, card = image_disjoint_split({"vqa": records}, "organ", test_fraction=0.2, seed=0)
    recs = split["vqa"]
    train_images = {r.image for r in recs if r.split == "train"}
    test_images = {r.image for r in recs if r.split == "test"}
    assert test_images and not train_images & test_images
    assert len(recs) == len(records)  # nothing dropped: native test questions on training images now train
    assert {r.meta["organ"] for r in recs if r.split == "test"} == {"HEAD", "CHEST", "ABD"}
    assert card["test_images"] == len(test_images) == 6  # 20% of the 10 images of each organ
    assert all(len([r for r in recs if r.image == image]) == 4 for image in test_images)
    again, card2 = image_disjoint_split({"vqa": list(reversed(records))}, "organ", test_fraction=0.2, seed=0)
    assert card2["test_images_sha256"] == card["test_images_sha256"]  # fixed: not an accident of record order


def test_cli_image_disjoint_split_writes_a_hashed_card(tmp_path):
    root = tmp_path / "src"
    records = []
    for i in range(12):
        rel = save(root, f"images/{i}.png", sample_image(seed=i, size=32))
        records += [VQARecord(f"q{i}-{j}", rel, f"q{j}", "yes", "closed", "test" if j else "train",
                              {"organ": "HEAD" if i % 2 else "CHEST"}) for j in range(2)]
    write_records(root, records)
    out = tmp_path / "disjoint"
    assert main(["data", "split", str(root), "--by", "organ", "--image-disjoint", "--out", str(out)]) == 0
    card = json.loads((out / "split.json").read_text())
    assert card["kind"] == "image-disjoint" and card["test_images"] == 2
    digest = hashlib.sha256((out / "vqa.jsonl").read_bytes()).hexdigest()
    assert card["manifest_sha256"]["vqa.jsonl"] == digest
    assert validate_dataset(out).rejected == 0
