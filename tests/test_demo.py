"""The demo pipeline end to end on a miniature plan: every method pre-trains, fine-tunes, is evaluated and reported."""

from __future__ import annotations

import json
from dataclasses import replace

from robust_mmr.experiment import PLANS, SUMMARY_HEADERS, run_experiment, summary_rows


def test_miniature_demo_produces_a_report(tmp_path):
    plan = replace(PLANS["quick"], n_images=60, pretrain_steps=2, pretrain_batch=8, finetune_epochs=1,
                   finetune_batch=32, corruptions=("gaussian_noise",), severities=(5,), max_eval_items=40)
    markdown = run_experiment(plan, tmp_path)
    report = json.loads((markdown.parent / "results.json").read_text())
    assert [g["method"] for g in report["groups"]] == ["mmr", "mmr-aug", "robust-mmr"]
    for method in ("mmr", "mmr-aug", "robust-mmr"):
        assert (tmp_path / "pretrain" / method / "model.safetensors").is_file()
        results = json.loads((tmp_path / "finetune" / f"{method}-seed0" / "results.json").read_text())
        assert {"clean", "perturbed", "missing", "cross_domain"} <= set(results)
    # pre-training never saw the held-out site
    pairs = (tmp_path / "pretrain_data" / "image_text.jsonl").read_text()
    assert '"domain": "site-c"' not in pairs and '"domain": "site-a"' in pairs
    rows = summary_rows(report)
    assert len(rows) == 3 and all(len(r) == len(SUMMARY_HEADERS) for r in rows)
    assert (markdown.parent / "cross_domain.png").is_file()
