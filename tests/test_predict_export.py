"""``robust-mmr predict`` (new images, per-row errors, DICOM) and ``robust-mmr export`` (a model directory with a
model card that loads back without pickle and predicts the same)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from robust_mmr.cli.main import main
from robust_mmr.config import load_config
from robust_mmr.data.manifest import read_manifest
from robust_mmr.tasks.predict import RunPredictor, read_rows
from robust_mmr.training.checkpoint import load_pretrained
from robust_mmr.training.pretrain import run_pretraining

SMALL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
         "model.decoder.layers=1"]


@pytest.fixture(scope="module")
def pretrained(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "run"
    cfg = load_config("tiny", [*SMALL, "objective.method=robust-mmr", "train.max_steps=2", "train.batch_size=8",
                               "train.num_workers=0"])
    run_pretraining(cfg, synth_dir, out, progress=False)
    return out


@pytest.fixture(scope="module")
def vqa_run(synth_dir, pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("vqa") / "run"
    assert main(["finetune", "--task", "vqa", "--init", str(pretrained), "--data", str(synth_dir), "--out", str(out),
                 "max_epochs=1", "batch_size=32"]) == 0
    assert main(["evaluate", str(out), "--data", str(synth_dir), "--corruptions", "jpeg", "--text-perturbations",
                 "synonym", "--severities", "3"]) == 0
    return out


@pytest.fixture
def rows_dir(synth_dir, tmp_path):
    """Four rows: a PNG from the synthetic set, a DICOM, a missing file, an unreadable file, one empty question."""
    record = read_manifest(synth_dir / "vqa.jsonl")[0]
    shutil.copy(synth_dir / record.image, tmp_path / "scan.png")
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    rows = [{"image": "scan.png", "question": record.question}, {"image": "ct.dcm", "question": "Is there a lesion?"},
            {"image": "nowhere.png", "question": "Is there a lesion?"},
            {"image": "broken.png", "question": "Is there a lesion?"}, {"image": "scan.png", "question": "  "}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "[1, 2]\n")
    return tmp_path


def test_predict_answers_good_rows_and_names_the_problem_of_each_bad_one(vqa_run, rows_dir):
    predictor = RunPredictor.load(vqa_run)
    results = predictor.predict(read_rows(rows_dir / "rows.jsonl"), root=rows_dir, top_k=2)
    assert [r["row"] for r in results] == list(range(6))
    labels = set(json.loads((vqa_run / "task.json").read_text())["labels"])
    for good in results[:2]:  # PNG and DICOM
        assert good["answer"] in labels and len(good["top"]) == 2
        assert good["top"][0]["p"] >= good["top"][1]["p"] and 0 < sum(t["p"] for t in good["top"]) <= 1.0001
    assert "missing" in results[2]["error"] and "nowhere.png" in results[2]["error"]
    assert "broken.png" in results[3]["error"] and "answer" not in results[3]
    assert results[4]["error"] == "empty question"
    assert "not a JSON object" in results[5]["error"]


def test_predict_is_the_fine_tuned_model_s_own_prediction(vqa_run, synth_dir):
    """The answer for a test record equals the evaluation predictor's (same pixels, same tokens, same model)."""
    from robust_mmr.evaluation.predict import Cell, Predictor
    from robust_mmr.tasks.finetune import load_finetuned
    from robust_mmr.tasks.labels import LabelVocab

    records = [r for r in read_manifest(synth_dir / "vqa.jsonl") if r.split == "test"][:12]
    model, tokenizer, _, task = load_finetuned(vqa_run)
    vocab = LabelVocab(tuple(task["labels"]))
    expected, _ = Predictor(model, tokenizer, vocab, synth_dir, records).predict(Cell())
    got = RunPredictor.load(vqa_run).predict([{"image": r.image, "question": r.question} for r in records],
                                             root=synth_dir)
    assert [g["answer"] for g in got] == [vocab.labels[i] for i in expected]


def test_cli_predict_one_image_and_a_csv(vqa_run, rows_dir, capsys, tmp_path):
    assert main(["predict", str(vqa_run), "--image", str(rows_dir / "ct.dcm"), "--question", "Is there a lesion?"]) == 0
    assert "1 answered, 0 with an error" in capsys.readouterr().out
    (rows_dir / "rows.csv").write_text("image,question\nscan.png,Is there a lesion?\nnowhere.png,Is it CT?\n")
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(vqa_run), "--input", str(rows_dir / "rows.csv"), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "1 answered, 1 with an error" in printed and "ERROR: image nowhere.png" in printed
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert "answer" in written[0] and "error" in written[1]
    (rows_dir / "bad.csv").write_text("path,question\nscan.png,q\n")
    assert main(["predict", str(vqa_run), "--input", str(rows_dir / "bad.csv")]) == 2
    assert "'image' column" in capsys.readouterr().err


def test_export_loads_back_without_pickle_and_predicts_the_same(vqa_run, rows_dir, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(vqa_run), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "model.safetensors", "results.json",
                                                      "run.json", "task.json"]  # run.json: an export of vqa_run
    rows = read_rows(rows_dir / "rows.jsonl")[:2]
    assert RunPredictor.load(out).predict(rows, root=rows_dir) == RunPredictor.load(vqa_run).predict(rows, root=rows_dir)
    card = (out / "README.md").read_text()
    results = json.loads((vqa_run / "results.json").read_text())
    assert "pre-training method: `robust-mmr`" in card and "2 steps at batch 8" in card
    assert f"| clean accuracy | {results['clean']['overall']:.3f}" in card
    assert f"question-only {results['clean']['baselines']['question_only']:.3f}" in card
    assert "Not a medical device" in card and "epoch 1 of 1 kept" in card


def test_export_of_a_pre_training_run_and_mean_std_over_seed_runs(pretrained, vqa_run, tmp_path):
    out = tmp_path / "pre-export"
    assert main(["export", str(pretrained), "--out", str(out)]) == 0
    model, _, cfg = load_pretrained(out)
    assert cfg.objective.method == "robust-mmr" and not any(p.suffix == ".ckpt" for p in out.rglob("*"))
    assert "Not evaluated yet" in (out / "README.md").read_text()
    twin = tmp_path / "twin"  # a second "seed": the same run with another clean accuracy
    shutil.copytree(vqa_run, twin)
    results = json.loads((twin / "results.json").read_text())
    first = results["clean"]["overall"]
    results["clean"]["overall"] = first + 0.1
    (twin / "results.json").write_text(json.dumps(results))
    assert main(["export", str(vqa_run), "--out", str(tmp_path / "e2"), "--seed-runs", str(twin)]) == 0
    card = (tmp_path / "e2" / "README.md").read_text()
    mean, std = first + 0.05, float(np.std([first, first + 0.1], ddof=1))
    assert "mean ± std over 2 seeds" in card and f"| clean accuracy | {mean:.3f} ± {std:.3f} |" in card


def test_export_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_predict_ranks_captions_with_a_retrieval_run(synth_dir, tmp_path):
    run = tmp_path / "rt"
    assert main(["finetune", "--task", "retrieve", "--data", str(synth_dir), "--out", str(run), "max_epochs=1",
                 "batch_size=16", *SMALL]) == 0
    pairs = [p for p in read_manifest(synth_dir / "image_text.jsonl") if p.split == "test"][:5]
    gallery = [p.text for p in pairs]
    results = RunPredictor.load(run).predict([{"image": p.image} for p in pairs], root=synth_dir, top_k=3,
                                             gallery=gallery)
    for r in results:
        assert len(r["captions"]) == 3 and all(c["caption"] in gallery for c in r["captions"])
        sims = [c["similarity"] for c in r["captions"]]
        assert sims == sorted(sims, reverse=True)

