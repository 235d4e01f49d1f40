"""The demo pipeline end to end on a miniature plan: every method pre-trains, fine-tunes, is evaluated and reported."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from robust_mmr.experiments.demo import PLANS, SUMMARY_HEADERS, run_experiment, summary_rows


def test_miniature_demo_produces_a_report(tmp_path, capsys):
    plan = replace(PLANS["quick"], n_images=60, pretrain_images=150, pretrain_steps=2, pretrain_batch=8,
                   finetune_epochs=1, finetune_batch=32, corruptions=("gaussian_noise",), severities=(5,),
                   max_eval_items=40)
    markdown = run_experiment(plan, tmp_path)
    report = json.loads((markdown.parent / "results.json").read_text())
    assert [g["method"] for g in report["groups"]] == ["mmr", "mmr-aug", "robust-mmr"]
    for method in ("mmr", "mmr-aug", "robust-mmr"):
        job = tmp_path / "runs" / method / "seed0"
        assert (job / "pretrain" / "model.safetensors").is_file()
        results = json.loads((job / "vqa-domain-site-c" / "results.json").read_text())
        assert {"clean", "perturbed", "missing", "cross_domain"} <= set(results)
        assert not (job / "probe-domain-site-c").exists()  # the demo runs no probe
    # pre-training saw neither the held-out site nor any downstream image
    pairs = [json.loads(line) for line in (tmp_path / "pretrain_data" / "image_text.jsonl").read_text().splitlines()]
    assert {p["meta"]["domain"] for p in pairs} == {"site-a", "site-b"} and {p["split"] for p in pairs} == {"train"}
    def digests(root, records):
        return {hashlib.sha256((root / r["image"]).read_bytes()).hexdigest() for r in records}

    downstream = [json.loads(line) for line in (tmp_path / "data" / "image_text.jsonl").read_text().splitlines()]
    assert not digests(tmp_path / "pretrain_data", pairs) & digests(tmp_path / "data", downstream)
    rows = summary_rows(report)
    assert len(rows) == 3 and all(len(r) == len(SUMMARY_HEADERS) for r in rows)
    assert (markdown.parent / "cross_domain.png").is_file()
    # a rerun into the same folder reuses every finished job
    capsys.readouterr()
    run_experiment(plan, tmp_path)
    assert "3 jobs (3 already finished)" in capsys.readouterr().out
