"""Method benchmark on the synthetic domain-shift set: mmr vs mmr-aug vs Robust-MMR and its ablations.

Every variant pre-trains for the same number of steps at the same batch (equal compute up to Robust-MMR's
~17% extra FLOPs per step, BENCHMARKS.md) on its own corpus (the training split of sites a and b of the
generator's seed 1), once per seed; each pre-training then fine-tunes VQA on the downstream set (seed 0,
site-c held out) with early stopping, trains the probe (a head on the frozen backbone) and ITC retrieval,
and every run is evaluated clean, under image corruptions (two never used in training) and text
perturbations, with a modality removed and (VQA) on the unseen site. One job per variant × seed
(:mod:`robust_mmr.experiments.job`); output: ``<out>/summary.md``, ``summary.json``, ``summary.png`` and every
run under ``<out>/runs``.

    python benchmarks/method_synthetic.py --out runs/bench-synthetic --steps 1200 --n-images 1200 \\
        --pretrain-images 4000 --max-eval-items 300 --parallel 2 --threads 1 --variants mmr mmr-aug robust-mmr
    # on a GPU machine (not run on a GPU here), six jobs at a time:
    python benchmarks/method_synthetic.py --out runs/bench-synthetic-gpu --steps 5000 --accelerator gpu \\
        --parallel 6 --threads 2 --workers 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_mmr.errors import InputError
from robust_mmr.evaluation.report_methods import write_summary
from robust_mmr.experiments.arguments import (
    SEVERITIES,
    TEXT_PERTURBATIONS,
    add_common_arguments,
    command_line,
    probe_settings,
    resolve_variants,
    threads_per_job,
    training_overrides,
)
from robust_mmr.experiments.datasets import DOWNSTREAM_SEED, PRETRAIN_SEED, synthetic_set, training_domain_pairs
from robust_mmr.experiments.job import Job
from robust_mmr.experiments.logs import log
from robust_mmr.experiments.runner import finished_results, run_jobs

HOLDOUT = "domain=site-c"
MAX_TEXT_LENGTH = 40  # the longest synthetic report (a checklist) is 34 word pieces with [CLS] and [SEP]
# Fine-tuning: the FinetuneConfig defaults (early stopping on the training sites' validation split), batch 64.
FINETUNE = {"batch_size": 64, "patience": 4}
# training corruptions + two held out of training (impulse_noise, pixelate); see experiments.demo.PLANS
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast_down", "jpeg", "bias_field", "impulse_noise", "pixelate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--n-images", type=int, default=1200, help="downstream (VQA, retrieval) synthetic scans, 3 sites")
    parser.add_argument("--pretrain-images", type=int, default=4000,
                        help="scans of the pre-training corpus (3 sites; the training split of two is used)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4, help="pre-training learning rate")
    parser.add_argument("--no-retrieval", action="store_true", help="skip the retrieval fine-tuning and ΔMR")
    args = parser.parse_args(argv)
    variants = resolve_variants(args)
    try:
        data = synthetic_set(args.out / "data", args.n_images, args.image_size, DOWNSTREAM_SEED)
        corpus = synthetic_set(args.out / "pretrain_corpus", args.pretrain_images, args.image_size, PRETRAIN_SEED)
    except InputError as err:
        sys.exit(f"error: {err}")
    key, value = HOLDOUT.split("=")
    pretrain_data = training_domain_pairs(corpus, args.out / "pretrain_data", key, value)

    overrides = [f"model.image_size={args.image_size}", f"model.max_text_length={MAX_TEXT_LENGTH}",
                 f"train.lr={args.lr}", "train.warmup_steps=20", *training_overrides(args)]
    finetune = {**FINETUNE, "max_epochs": args.finetune_epochs, "accelerator": args.accelerator}
    jobs = [Job(variant=name, overrides=(*overrides, *extra), seed=seed, pretrain_data=str(pretrain_data),
                task_data=str(data), out=str(args.out / "runs" / name / f"seed{seed}"), holdouts=(HOLDOUT,),
                finetune=finetune, corruptions=CORRUPTIONS, text_perturbations=TEXT_PERTURBATIONS,
                severities=SEVERITIES, max_eval_items=args.max_eval_items, retrieval=not args.no_retrieval,
                threads=threads_per_job(args), preset=args.model,
                protocols=tuple(args.protocols), probe_finetune=probe_settings(args))
            for seed in args.seeds for name, extra in variants.items()]
    results = finished_results(jobs) if args.summary_only else run_jobs(jobs, args.parallel)
    title = (f"Synthetic method benchmark: {args.n_images} scans at {args.image_size} px (pre-training corpus: "
             f"{args.pretrain_images}), {args.model} backbone, {args.steps} pre-training steps at batch {args.batch}, "
             "site-c held out")
    path = write_summary(results, args.out, list(variants), title, command_line("benchmarks/method_synthetic.py", argv),
                         publish=args.publish)
    print(Path(path).read_text(encoding="utf-8"))
    log(f"summary: {path} (plot: {args.out / 'summary.png'})")


if __name__ == "__main__":
    main()
