"""Fine-tuning (VQA), the evaluation protocols, metrics and baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robust_mmr.cli.main import main
from robust_mmr.data.schema import VQARecord
from robust_mmr.errors import InputError
from robust_mmr.evaluation.baselines import majority_hits, question_only_hits
from robust_mmr.evaluation.metrics import bootstrap_ci, domain_robustness, macro_f1, mean_std
from robust_mmr.evaluation.predict import Cell, Predictor
from robust_mmr.tasks.data import Holdout, TaskCollator, TaskDataset, load_task_records, split_records
from robust_mmr.tasks.finetune import load_finetuned
from robust_mmr.tasks.labels import LabelVocab, normalize_answer

SMALL_MODEL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
               "model.decoder.layers=1", "model.max_text_length=24"]


def _vqa(rid, image, question, answer, split="train", domain="a", answer_type="open"):
    return VQARecord(rid, image, question, answer, answer_type, split, {"domain": domain})


def test_vocab_normalises_and_marks_unknown_answers():
    vocab = LabelVocab.build(["Yes", "yes ", "No.", "left  kidney", "yes"])
    assert vocab.labels[0] == "yes" and len(vocab) == 3
    assert vocab.index("YES") == vocab.index("yes.") == 0
    assert vocab.index("right kidney") == -1
    assert normalize_answer("  Left   Kidney. ") == "left kidney"


def test_split_keeps_the_held_out_domain_out_of_training_and_carves_val_by_image():
    records = [_vqa(f"{d}{i}{q}", f"{d}{i}.png", "Q?", "yes", split, d)
               for d in "abc" for i, split in enumerate(["train"] * 8 + ["test"] * 2) for q in range(2)]
    parts, notes = split_records(records, Holdout("domain", "c"), val_fraction=0.25)
    assert {r.meta["domain"] for k in ("train", "val", "test") for r in parts[k]} == {"a", "b"}
    assert {r.meta["domain"] for r in parts["test_ood"]} == {"c"} and len(parts["test_ood"]) == 4
    assert not {r.image for r in parts["train"]} & {r.image for r in parts["val"]}
    assert any("carved" in n and "by image" in n for n in notes)  # auto: the test images are not training images
    with pytest.raises(InputError, match="no test records with domain=z"):
        split_records(records, Holdout("domain", "z"), 0.25)


def test_validation_is_carved_by_question_where_test_images_are_training_images_and_is_seed_free():
    """VQA-RAD's standard split asks its test questions about training images: validation then takes single
    questions (no image leaves training), never a test item, and the same ones whatever the fine-tuning seed."""
    records = [_vqa(f"q{i}-{q}", f"img{i}.png", f"Q{q}?", "yes", "train") for i in range(20) for q in range(5)]
    records += [_vqa(f"t{i}", f"img{i}.png", "Other?", "no", "test") for i in range(0, 20, 2)]
    parts, notes = split_records(records, None, val_fraction=0.2)
    assert len(parts["val"]) == 20 and len(parts["train"]) == 80
    assert {r.image for r in parts["train"]} == {f"img{i}.png" for i in range(20)}  # every image still trains
    assert not {r.id for r in parts["val"]} & {r.id for r in parts["test"]}
    assert all(r.split == "train" for r in parts["val"])
    assert any("by question" in n for n in notes)
    again, _ = split_records(list(reversed(records)), None, val_fraction=0.2)
    assert {r.id for r in again["val"]} == {r.id for r in parts["val"]}  # order- and seed-independent
    by_image, _ = split_records(records, None, val_fraction=0.2, carve="image")
    assert not {r.image for r in by_image["train"]} & {r.image for r in by_image["val"]}
    with pytest.raises(InputError, match="validation carve"):
        split_records(records, None, 0.2, carve="by-site")


def test_baselines():
    train = [_vqa("1", "i", "Is it CT?", "yes"), _vqa("2", "i", "Is it CT?", "yes"), _vqa("3", "i", "Side?", "left"),
             _vqa("4", "i", "Side?", "left"), _vqa("5", "i", "Side?", "left")]
    test = [_vqa("6", "i", "is it ct?", "yes", "test"), _vqa("7", "i", "Side?", "left", "test")]
    assert majority_hits(train, test).tolist() == [False, True]
    assert question_only_hits(train, test).tolist() == [True, True]


def test_metrics():
    hits = np.array([1, 0, 1, 1] * 25, dtype=bool)
    low, high = bootstrap_ci(hits, seed=0)
    assert low < 0.75 < high and high - low < 0.25
    assert macro_f1(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])) == 1.0
    assert macro_f1(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1])) == pytest.approx((2 / 3) / 2)
    assert domain_robustness(0.6, 0.8) == pytest.approx(0.75)
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)


@pytest.fixture(scope="module")
def finetuned(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    assert main(["finetune", "--task", "vqa", "--init", "scratch", "--data", str(synth_dir), "--holdout",
                 "domain=site-c", "--out", str(out), "max_epochs=2", "batch_size=32", *SMALL_MODEL]) == 0
    return out


def test_finetune_writes_a_loadable_run(finetuned, synth_dir):
    model, tokenizer, cfg, task = load_finetuned(finetuned)
    assert task["holdout"] == {"key": "domain", "value": "site-c"} and cfg.model.image_size == 64
    assert task["counts"]["test_ood"] > 0 and 0 <= task["best_val_accuracy"] <= 1
    assert task["finetune"]["precision"] == "auto"  # the default, resolved from the hardware and recorded
    assert task["precision"]["resolved"] in ("32-true", "bf16-mixed") and task["precision"]["cpu_capability"]


def test_predictor_reuse_matches_a_plain_forward(finetuned, synth_dir):
    """Cached per-image encodings + fusion must give exactly the predictions of a full forward pass."""
    model, tokenizer, cfg, task = load_finetuned(finetuned)
    vocab = LabelVocab(tuple(task["labels"]))
    records = [r for r in load_task_records(synth_dir, "vqa") if r.split == "test"][:40]
    predictor = Predictor(model, tokenizer, vocab, synth_dir, records, batch_size=16)
    hits, _ = predictor.hits(Cell())
    data = TaskDataset(synth_dir, records, 64, 1)
    batch = TaskCollator(tokenizer, cfg.model.max_text_length, vocab)([data[i] for i in range(len(records))])
    with torch.no_grad():
        pred = model(batch["pixels"], batch["input_ids"], batch["attention_mask"]).argmax(-1).numpy()
    assert np.array_equal(hits, pred == batch["labels"].numpy())
    # a perturbed cell is replayable and leaves the cache of the clean side untouched
    a, params = predictor.hits(Cell(image=("gaussian_noise", 5)))
    b, _ = predictor.hits(Cell(image=("gaussian_noise", 5)))
    assert np.array_equal(a, b) and params["image"]["corruption"] == "gaussian_noise"
    assert np.array_equal(predictor.hits(Cell())[0], hits)
    # bf16 autocast (the rule's choice on a native-bf16 CPU) agrees with fp32 on nearly every item
    bf16 = Predictor(model, tokenizer, vocab, synth_dir, records, batch_size=16, precision="bf16-mixed")
    assert (bf16.predict(Cell())[0] == predictor.predict(Cell())[0]).mean() >= 0.9
    for corruption in ("pixelate", "zoom_blur", "jpeg"):  # corruptions run in fp32 whatever the model's precision
        assert (bf16.predict(Cell(image=(corruption, 3)))[0] == predictor.predict(Cell(image=(corruption, 3)))[0]
                ).mean() >= 0.8


def test_evaluate_cli_writes_every_protocol(finetuned, synth_dir, capsys):
    assert main(["evaluate", str(finetuned), "--data", str(synth_dir), "--corruptions", "gaussian_noise,jpeg",
                 "--text-perturbations", "keyboard_typo", "--severities", "1,5"]) == 0
    results = json.loads((finetuned / "results.json").read_text())
    assert results["method"] == "scratch"
    assert results["precision"]["requested"] == "auto" and results["precision"]["resolved"] in ("32-true", "bf16-mixed")
    cells = results["perturbed"]["cells"]
    assert len(cells) == 2 * 2 + 1 * 2 + 1 * 2  # image cells + text cells + paired cells
    assert all("seed" in c and c["example_params"] for c in cells)
    assert set(results["missing"]) == {"image_removed", "text_removed", "image_shuffled"}
    cd = results["cross_domain"]
    assert cd["held_out"] == "domain=site-c" and cd["rr"] == pytest.approx(1 - (cd["iid"] - cd["ood"]["overall"]) / cd["iid"])
    printed = capsys.readouterr().out
    assert "question-only baseline" in printed and "held-out domain=site-c" in printed


def test_classification_finetune_and_macro_f1(synth_dir, tmp_path):
    """Image–text classification (MELINDA-style) on records derived from the synthetic pairs: label = modality."""
    from robust_mmr.data.manifest import read_manifest, write_manifest
    from robust_mmr.data.schema import ClassificationRecord

    pairs = read_manifest(synth_dir / "image_text.jsonl")
    data = tmp_path / "cls"
    data.mkdir()
    (data / "images").symlink_to(synth_dir / "images")
    write_manifest(data / "classification.jsonl",
                   [ClassificationRecord(p.id, p.image, p.text, p.meta["modality"], p.split, p.meta) for p in pairs])
    run = tmp_path / "run"
    assert main(["finetune", "--task", "classify", "--data", str(data), "--out", str(run), "max_epochs=1", *SMALL_MODEL]) == 0
    assert main(["evaluate", str(run), "--data", str(data), "--protocol", "clean,missing"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["task"] == "classify" and 0.0 <= results["clean"]["macro_f1"] <= 1.0
    assert "perturbed" not in results and "missing" in results


def test_corruption_error_against_a_reference():
    from robust_mmr.evaluation.protocols import corruption_errors

    def cell(name, severity, accuracy):
        return {"target": "image", "image": [name, severity], "text": None, "accuracy": accuracy}

    ours = [cell("jpeg", 1, 0.9), cell("jpeg", 5, 0.7), cell("blur", 1, 0.8)]
    ref = [cell("jpeg", 1, 0.8), cell("jpeg", 5, 0.6), cell("blur", 1, 0.8), cell("blur", 3, 0.5)]
    ce = corruption_errors(ours, ref)["image"]
    assert ce["ce"]["jpeg"] == pytest.approx((0.1 + 0.3) / (0.2 + 0.4))
    assert ce["ce"]["blur"] == pytest.approx(1.0)  # only the shared severity 1 counts
    assert ce["mce"] == pytest.approx((ce["ce"]["jpeg"] + 1.0) / 2)
    with pytest.raises(InputError, match="no perturbed cells in common"):
        corruption_errors(ours, [cell("pixelate", 1, 0.5)])


def test_evaluate_with_a_reference_run(finetuned, synth_dir, tmp_path, capsys):
    args = ["evaluate", str(finetuned), "--data", str(synth_dir), "--protocol", "clean,perturbed",
            "--corruptions", "jpeg", "--text-perturbations", "word_drop", "--severities", "5"]
    assert main(args + ["--out", str(tmp_path / "ref.json")]) == 0
    assert main(args + ["--reference", str(tmp_path / "ref.json"), "--out", str(tmp_path / "r.json")]) == 0
    ce = json.loads((tmp_path / "r.json").read_text())["perturbed"]["corruption_error"]
    assert ce["image"]["mce"] == pytest.approx(1.0)  # the same run as its own reference: CE = 1
    assert "mCE image vs reference" in capsys.readouterr().out
    assert main(args + ["--reference", str(tmp_path / "missing.json")]) == 2


def test_finetune_over_seeds_writes_one_run_per_seed(synth_dir, tmp_path, capsys):
    assert main(["finetune", "--data", str(synth_dir), "--out", str(tmp_path), "--seeds", "0,1", "max_epochs=1",
                 *SMALL_MODEL]) == 0
    seeds = [json.loads((tmp_path / f"seed{s}" / "task.json").read_text())["finetune"]["seed"] for s in (0, 1)]
    assert seeds == [0, 1]
    assert "2 runs in" in capsys.readouterr().out
