"""The honest baselines: lookups, the text classifier, the trained blind model (the image never reaches it), the
image-shuffled test (images permuted within groups, answers unchanged) and seen / unseen accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robust_mmr.cli.main import main
from robust_mmr.config import load_config
from robust_mmr.data.schema import VQARecord
from robust_mmr.errors import InputError
from robust_mmr.evaluation.baselines import (
    lookup_baselines,
    majority_hits,
    same_image_lookup_hits,
    text_classifier_hits,
)
from robust_mmr.evaluation.predict import Cell, Predictor
from robust_mmr.model import build_model
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.data import load_task_records
from robust_mmr.tasks.finetune import load_finetuned
from robust_mmr.tasks.labels import LabelVocab
from robust_mmr.tasks.model import PairClassifier

SMALL_MODEL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
               "model.decoder.layers=1", "model.max_text_length=24"]


def _vqa(rid, image, question, answer, split="train", organ="HEAD"):
    return VQARecord(rid, image, question, answer, "open", split, {"image_organ": organ})


def test_same_image_lookup_answers_from_the_most_similar_question_on_that_image():
    train = [_vqa("1", "a.png", "Is there a fracture of the skull?", "yes"),
             _vqa("2", "a.png", "What organ is shown?", "brain"),
             _vqa("3", "b.png", "Is there a fracture of the skull?", "no"),
             _vqa("4", "b.png", "Which plane is this?", "axial")]
    test = [_vqa("t1", "a.png", "Is a skull fracture present?", "yes"),  # same image: a.png's fracture answer
            _vqa("t2", "b.png", "Is a skull fracture present?", "no"),
            _vqa("t3", "c.png", "In which plane is the image?", "axial")]  # unseen image: most similar of all
    assert same_image_lookup_hits(train, test).tolist() == [True, True, True]
    assert majority_hits(train, test).tolist() == [True, False, False]  # a tie of single answers: the first, "yes"


def test_text_classifier_learns_question_words_and_picks_its_penalty_on_validation():
    rng = np.random.default_rng(0)
    subjects = {"brain": "head", "lung": "chest", "liver": "abdomen", "skull": "head", "heart": "chest"}
    def records(n, split):
        out = []
        for i in range(n):
            word = list(subjects)[rng.integers(len(subjects))]
            out.append(_vqa(f"{split}{i}", f"{i}.png", f"where is the {word} located in this scan", subjects[word],
                            split))
        return out
    train, val, test = records(120, "train"), records(30, "val"), records(40, "test")
    hits, info = text_classifier_hits(train, val, test)
    assert hits.mean() == 1.0 and info["val_accuracy"] == 1.0  # the subject word decides the answer
    assert hits.mean() > majority_hits(train, test).mean()
    assert set(lookup_baselines(train, val, test)) == {"majority", "question_only", "same_image_lookup",
                                                      "text_classifier"}


@pytest.fixture(scope="module")
def scratch_classifier():
    cfg = load_config("tiny", SMALL_MODEL)
    backbone, tokenizer = build_model(cfg.model)
    return backbone, tokenizer, cfg


def test_a_blind_classifier_never_reads_pixels(scratch_classifier):
    backbone, tokenizer, cfg = scratch_classifier
    model = PairClassifier(backbone, 5, blind=True).eval()
    called = []
    handle = backbone.vision.register_forward_hook(lambda *a: called.append(1))
    enc = tokenizer(["is there a lesion?", "which organ?"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(torch.full((2, 1, 64, 64), float("nan")), enc["input_ids"], enc["attention_mask"])
        b = model(torch.rand(2, 1, 64, 64), enc["input_ids"], enc["attention_mask"])
    handle.remove()
    assert not called and torch.isfinite(a).all() and torch.equal(a, b)
    with pytest.raises(InputError, match="blind"):
        FinetuneConfig(blind=True, freeze_backbone=True)


def test_blind_finetuning_and_evaluation_never_open_an_image(synth_dir, tmp_path, monkeypatch):
    """Fine-tuned and evaluated blind, no image file is decoded; the run records blind=true and loads back blind."""
    import robust_mmr.evaluation.predict as predict_module
    import robust_mmr.tasks.data as data_module

    def refuse(*args, **kwargs):
        raise AssertionError("a blind run read an image")

    monkeypatch.setattr(data_module, "load_image", refuse)
    monkeypatch.setattr(predict_module, "load_image", refuse)
    out = tmp_path / "blind"
    assert main(["finetune", "--task", "vqa", "--init", "scratch", "--data", str(synth_dir), "--out", str(out),
                 "max_epochs=1", "batch_size=32", "blind=true", *SMALL_MODEL]) == 0
    model, _, _, task = load_finetuned(out)
    assert model.blind and task["finetune"]["blind"] is True
    assert main(["evaluate", str(out), "--data", str(synth_dir), "--protocol", "clean,missing"]) == 0
    results = json.loads((out / "results.json").read_text())
    missing = results["missing"]
    assert missing["image_removed"] == missing["image_shuffled"] == results["clean"]["overall"]


def test_image_shuffle_permutes_images_within_groups_and_keeps_answers(synth_dir, scratch_classifier):
    backbone, tokenizer, cfg = scratch_classifier
    records = [r for r in load_task_records(synth_dir, "vqa") if r.split == "test"]
    vocab = LabelVocab.build(r.answer for r in records)
    model = PairClassifier(backbone, len(vocab)).eval()
    predictor = Predictor(model, tokenizer, vocab, synth_dir, records, seed=3)
    target = predictor.image_permutation()
    groups = predictor.shuffle_groups()
    by_group: dict = {}
    for image in predictor.images:
        by_group.setdefault(groups[image], []).append(image)
    for i, j in enumerate(target):
        a, b = predictor.images[i], predictor.images[j]
        assert groups[a] == groups[b]  # same organ / region and modality
        assert (a != b) == (len(by_group[groups[a]]) > 1)  # moved wherever its group has another image
    assert sorted(target) == list(range(len(target)))  # a permutation: every image shown once
    labels = predictor.labels.copy()
    shuffled, _ = predictor.predict(Cell(shuffle_images=True))
    assert np.array_equal(predictor.labels, labels)
    # the same as predicting records whose image was replaced by hand
    swapped = [VQARecord(r.id, predictor.images[target[predictor.images.index(r.image)]], r.question, r.answer,
                         r.answer_type, r.split, r.meta) for r in records]
    by_hand, _ = Predictor(model, tokenizer, vocab, synth_dir, swapped).predict(Cell())
    assert np.array_equal(shuffled, by_hand)


def test_evaluation_reports_seen_and_unseen_images_and_every_baseline(synth_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["finetune", "--task", "vqa", "--init", "scratch", "--data", str(synth_dir), "--out", str(out),
                 "max_epochs=1", "batch_size=32", *SMALL_MODEL]) == 0
    assert main(["evaluate", str(out), "--data", str(synth_dir), "--protocol", "clean,missing"]) == 0
    results = json.loads((out / "results.json").read_text())
    by_image = results["clean"]["by_image"]
    assert by_image["seen"]["n"] == 0 and by_image["unseen"]["n"] == results["n_test"]  # synthetic: unseen images
    assert by_image["unseen"]["overall"] == pytest.approx(results["clean"]["overall"])
    assert set(results["clean"]["baselines"]) == {"majority", "question_only", "same_image_lookup", "text_classifier"}
    assert "image_shuffled" in results["missing"]
