"""The end-to-end experiment behind ``robust-mmr demo``: synthetic data → pre-train each method →
fine-tune VQA with a held-out domain over seeds → evaluate every protocol → report.

Plans are data (:data:`PLANS`). All methods pre-train for the same number of steps, and each step
makes two fused passes per sample for every method (nearly equal compute: robust-mmr's lower mask
ratio on the clean modality of its perturbed view costs ~17% more FLOPs, see BENCHMARKS.md). Pre-training sees
only the training split of the training domains: the held-out domain is unseen until the final evaluation, and
no validation or test image (whose report states its answers) is pre-trained on.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from robust_mmr.config import load_config
from robust_mmr.data.manifest import read_manifest, write_manifest
from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.objectives import METHODS

# A tiny backbone at 64 px (2 + 2 encoder layers, 1 fusion layer): the size that fits the demo's
# time budget on 2 CPU cores.
DEMO_MODEL = ["model.image_size=64", "model.max_text_length=32", "model.vision.layers=2", "model.text.layers=2",
              "model.fusion.layers=1", "model.decoder.layers=1", "model.decoder.read_layer=1"]


@dataclass(frozen=True)
class ExperimentPlan:
    n_images: int
    pretrain_steps: int
    finetune_epochs: int
    seeds: tuple[int, ...]
    corruptions: tuple[str, ...]
    text_perturbations: tuple[str, ...]
    severities: tuple[int, ...]
    max_eval_items: int
    holdout: str = "domain=site-c"
    image_size: int = 64
    pretrain_batch: int = 32
    finetune_batch: int = 64
    finetune_patience: int = 2  # early stopping on the training sites' validation split, within finetune_epochs
    methods: tuple[str, ...] = METHODS
    model_overrides: tuple[str, ...] = tuple(DEMO_MODEL)
    pretrain_overrides: tuple[str, ...] = field(default=("train.lr=0.0005", "train.warmup_steps=10"))


PLANS = {
    # gaussian_noise, gaussian_blur, contrast_down, jpeg, bias_field are training corruptions;
    # impulse_noise and pixelate are held out of training (role "eval").
    "full": ExperimentPlan(n_images=600, pretrain_steps=150, finetune_epochs=3, seeds=(0, 1, 2),
                           corruptions=("gaussian_noise", "gaussian_blur", "contrast_down", "jpeg", "bias_field",
                                        "impulse_noise", "pixelate"),
                           text_perturbations=("keyboard_typo", "synonym", "word_drop", "abbreviate"),
                           severities=(1, 3, 5), max_eval_items=300),
    "quick": ExperimentPlan(n_images=240, pretrain_steps=40, finetune_epochs=4, seeds=(0,),
                            corruptions=("gaussian_noise", "jpeg", "pixelate"), text_perturbations=("keyboard_typo",),
                            severities=(1, 5), max_eval_items=120),
}


def quiet_lightning() -> None:
    """Keep the demo's output to its own progress lines: Lightning's per-fit banners and tips, and two
    harmless warnings (a deprecation inside Lightning, short epochs vs the logging interval), are hidden."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def training_domain_pairs(data_dir: Path, out: Path, holdout_key: str, holdout_value: str) -> Path:
    """A pre-training dataset directory with the image–text pairs of the training split of the training
    domains: neither the held-out domain nor any image whose questions are validated or tested is seen."""
    pairs = [r for r in read_manifest(data_dir / "image_text.jsonl")
             if str(r.meta.get(holdout_key)) != holdout_value and r.split == "train"]
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out / "image_text.jsonl", pairs)
    link = out / "images"
    if not link.exists():
        os.symlink((data_dir / "images").resolve(), link)
    return out


def run_experiment(plan: ExperimentPlan, out: Path, progress: bool = False) -> Path:
    """Run ``plan`` into ``out``; returns the path of the report's ``report.md``."""
    from robust_mmr.evaluation.protocols import evaluate_run
    from robust_mmr.evaluation.report import build_report
    from robust_mmr.tasks.config import FinetuneConfig
    from robust_mmr.tasks.data import Holdout
    from robust_mmr.tasks.finetune import run_finetuning
    from robust_mmr.training.pretrain import run_pretraining

    if not progress:
        quiet_lightning()
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(asdict(plan), indent=2) + "\n", encoding="utf-8")
    holdout = Holdout.parse(plan.holdout)
    data = out / "data"
    log(f"1/4 synthetic domain-shift set: {plan.n_images} scans at {plan.image_size} px → {data}")
    generate_dataset(data, plan.n_images, seed=0, num_domains=3, size=plan.image_size, progress=progress)
    pretrain_data = training_domain_pairs(data, out / "pretrain_data", holdout.key, holdout.value)

    runs = []
    for method in plan.methods:
        pre_dir = out / "pretrain" / method
        log(f"2/4 pre-training {method}: {plan.pretrain_steps} steps at batch {plan.pretrain_batch} "
            f"(held-out {plan.holdout} never seen)")
        cfg = load_config("tiny", [*plan.model_overrides, f"objective.method={method}",
                                   f"train.max_steps={plan.pretrain_steps}", f"train.batch_size={plan.pretrain_batch}",
                                   "train.num_workers=0", *plan.pretrain_overrides])
        summary = run_pretraining(cfg, pretrain_data, pre_dir, progress=progress)
        log(f"    {method}: final loss {summary['final_metrics'].get('train/loss', float('nan')):.3f} "
            f"in {summary['seconds']:.0f} s")
        for seed in plan.seeds:
            ft_dir = out / "finetune" / f"{method}-seed{seed}"
            log(f"3/4 fine-tuning VQA from {method}, seed {seed}")
            ft_cfg = FinetuneConfig(task="vqa", max_epochs=plan.finetune_epochs, patience=plan.finetune_patience,
                                    batch_size=plan.finetune_batch, seed=seed)
            result = run_finetuning(ft_cfg, data, ft_dir, init=str(pre_dir), holdout=holdout, progress=progress)
            log(f"    kept epoch {result['best_epoch'] + 1} of {result['epochs_run']}: validation accuracy "
                f"{result['best_val_accuracy']:.3f}")
            runs.append(ft_dir)
    for ft_dir in runs:
        log(f"4/4 evaluating {ft_dir.name}: clean, {len(plan.corruptions)} corruptions and "
            f"{len(plan.text_perturbations)} text perturbations x severities {plan.severities}, missing, held-out domain")
        results = evaluate_run(ft_dir, data, seed=0, corruptions=list(plan.corruptions),
                               text_perts=list(plan.text_perturbations), severities=plan.severities,
                               max_items=plan.max_eval_items, progress=progress)
        (ft_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report = build_report(runs, out / "report", data_dir=data)
    log(f"done in {time.perf_counter() - start:.0f} s")
    return report


SUMMARY_HEADERS = ["method", "runs", "clean", "perturbed (mean)", "image removed", "held-out domain", "domain RR"]


def summary_rows(report: dict) -> list[list[str]]:
    """One row per method from a report's aggregated results: the headline numbers, mean ± std over runs."""
    from robust_mmr.evaluation.report_tables import format_stat

    rows = []
    for g in report["groups"]:
        n = len(g["runs"])
        cross = g.get("cross_domain", {})
        rows.append([g["label"], str(n), format_stat(g["clean"]["overall"], n),
                     format_stat(g.get("perturbed", {}).get("all", {}).get("mean_accuracy"), n),
                     format_stat(g.get("missing", {}).get("image_removed"), n),
                     format_stat(cross.get("ood", {}).get("overall"), n), format_stat(cross.get("rr"), n)])
    return rows
