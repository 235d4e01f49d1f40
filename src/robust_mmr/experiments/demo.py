"""The end-to-end experiment behind ``robust-mmr demo``: synthetic data → one method job per method and seed
(pre-train → fine-tune VQA with a held-out site → evaluate every protocol) → a report over seeds.

Plans are data (:data:`PLANS`). Each job is the method benchmarks' (:mod:`robust_mmr.experiments.job`) at
demo scale, without the probe and retrieval: every method pre-trains for the same number of steps, each
step making two fused passes per sample (nearly equal compute: robust-mmr's lower mask ratio on the clean
modality of its perturbed view costs ~17% more FLOPs, see BENCHMARKS.md). Pre-training reads its own corpus
(the training split of the training sites of another generator seed): the held-out site is unseen until the
final evaluation, and no downstream image, whose report states its answers, is pre-trained on. A rerun
into the same folder reuses the finished jobs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from robust_mmr.config import METHODS
from robust_mmr.experiments.datasets import DOWNSTREAM_SEED, PRETRAIN_SEED, synthetic_set, training_domain_pairs
from robust_mmr.experiments.job import Job, vqa_run_dir
from robust_mmr.experiments.logs import log, quiet_lightning
from robust_mmr.experiments.runner import cores_per_job, run_jobs
from robust_mmr.hardware import describe, precision_record


@dataclass(frozen=True)
class ExperimentPlan:
    n_images: int  # downstream (VQA) scans over 3 sites
    pretrain_images: int  # pre-training corpus scans over 3 sites (the training split of two is used)
    pretrain_steps: int
    finetune_epochs: int  # at most; early stopping on the training sites' validation split ends sooner
    finetune_patience: int
    seeds: tuple[int, ...]  # pre-training seeds (fine-tuning seeds follow them)
    corruptions: tuple[str, ...]
    text_perturbations: tuple[str, ...]
    severities: tuple[int, ...]
    max_eval_items: int
    holdout: str = "domain=site-c"
    preset: str = "demo"
    image_size: int = 64
    pretrain_batch: int = 32
    finetune_batch: int = 64
    methods: tuple[str, ...] = METHODS
    pretrain_overrides: tuple[str, ...] = ("train.lr=0.0005", "train.warmup_steps=10")
    precision: str = "auto"  # bf16 autocast where the CPU has native bf16, fp32 elsewhere (robust_mmr.hardware)
    parallel: int = 2  # jobs at a time, the machine's cores shared between them


PLANS = {
    # gaussian_noise, gaussian_blur, contrast_down, jpeg, bias_field are training corruptions;
    # impulse_noise and pixelate are held out of training (role "eval").
    # sized to the README's budget on 2 CPU cores: full ≤ 15 minutes, quick ≤ 3 (measured in BENCHMARKS.md)
    "full": ExperimentPlan(n_images=450, pretrain_images=900, pretrain_steps=60, finetune_epochs=10,
                           finetune_patience=2, seeds=(0, 1, 2),
                           corruptions=("gaussian_noise", "gaussian_blur", "contrast_down", "jpeg", "bias_field",
                                        "impulse_noise", "pixelate"),
                           text_perturbations=("keyboard_typo", "synonym", "word_drop", "abbreviate"),
                           severities=(1, 3, 5), max_eval_items=200),
    "quick": ExperimentPlan(n_images=240, pretrain_images=300, pretrain_steps=30, finetune_epochs=6,
                            finetune_patience=2, seeds=(0,), corruptions=("gaussian_noise", "jpeg", "pixelate"),
                            text_perturbations=("keyboard_typo",), severities=(1, 5), max_eval_items=120),
}


def plan_jobs(plan: ExperimentPlan, out: Path, pretrain_data: Path, data: Path) -> list[Job]:
    """One job per method and seed, in that order."""
    overrides = (f"model.image_size={plan.image_size}", f"train.max_steps={plan.pretrain_steps}",
                 f"train.batch_size={plan.pretrain_batch}", "train.num_workers=0", f"train.precision={plan.precision}",
                 *plan.pretrain_overrides)
    finetune = {"max_epochs": plan.finetune_epochs, "patience": plan.finetune_patience,
                "batch_size": plan.finetune_batch, "precision": plan.precision}
    threads = cores_per_job(plan.parallel)
    return [Job(variant=method, overrides=(f"objective.method={method}", *overrides), seed=seed,
                pretrain_data=str(pretrain_data), task_data=str(data), out=str(out / "runs" / method / f"seed{seed}"),
                holdouts=(plan.holdout,), finetune=finetune, corruptions=plan.corruptions,
                text_perturbations=plan.text_perturbations, severities=plan.severities,
                max_eval_items=plan.max_eval_items, preset=plan.preset, protocols=("vqa",), threads=threads)
            for method in plan.methods for seed in plan.seeds]


def run_experiment(plan: ExperimentPlan, out: Path, progress: bool = False) -> Path:
    """Run ``plan`` into ``out``; returns the path of the report's ``report.md``."""
    from robust_mmr.evaluation.report import build_report

    if not progress:
        quiet_lightning()
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    precision = precision_record(plan.precision)
    log(describe(precision))
    (out / "plan.json").write_text(json.dumps({**asdict(plan), "precision_used": precision}, indent=2) + "\n",
                                   encoding="utf-8")
    data = synthetic_set(out / "data", plan.n_images, plan.image_size, DOWNSTREAM_SEED)
    corpus = synthetic_set(out / "pretrain_corpus", plan.pretrain_images, plan.image_size, PRETRAIN_SEED)
    key, value = plan.holdout.split("=", 1)
    pretrain_data = training_domain_pairs(corpus, out / "pretrain_data", key, value)
    jobs = plan_jobs(plan, out, pretrain_data, data)
    results = run_jobs(jobs, parallel=plan.parallel, progress=progress)
    failed = [r["job"]["variant"] + f" seed {r['job']['seed']}" for r in results if "error" in r]
    if failed:
        raise RuntimeError(f"demo jobs failed: {', '.join(failed)} (tracebacks above)")
    report = build_report([vqa_run_dir(job, "vqa", plan.holdout) for job in jobs], out / "report", data_dir=data)
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
