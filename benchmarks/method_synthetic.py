"""Method benchmark on the synthetic domain-shift set: mmr vs mmr-aug vs Robust-MMR and its ablations.

Every variant pre-trains for the same number of steps at the same batch (equal compute up to
Robust-MMR's ~17% extra FLOPs per step, BENCHMARKS.md) on the training sites only, once per seed;
each pre-training seed then fine-tunes VQA with the same seed (site-c held out) and ITC retrieval,
and both are evaluated clean, under image corruptions (two of them never used in training) and text
perturbations, with a modality removed and (VQA) on the unseen site. Output: ``<out>/summary.md``,
``summary.json``, ``summary.png`` and every run under ``<out>/runs``.

    python benchmarks/method_synthetic.py --out runs/bench-synthetic --steps 300 --finetune-epochs 2 \\
        --n-images 900 --max-eval-items 200 --parallel 2 --threads 1
    # on a GPU machine (not run on a GPU here), six jobs at a time:
    python benchmarks/method_synthetic.py --out runs/bench-synthetic-gpu --steps 2000 --finetune-epochs 4 \\
        --accelerator gpu --parallel 6 --threads 2 --workers 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from method_runs import (
    SEVERITIES,
    TEXT_PERTURBATIONS,
    Job,
    add_common_arguments,
    finished_results,
    log,
    resolve_variants,
    run_jobs,
    threads_per_job,
    training_overrides,
    write_summary,
)

from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.experiment import training_domain_pairs

HOLDOUT = "domain=site-c"
# Pre-training reads its own corpus (the training split of the training sites of another generator seed), as
# ROCO is to VQA-RAD: no downstream image, whose report states its answers, is ever pre-trained on.
DOWNSTREAM_SEED, PRETRAIN_SEED = 0, 1
MAX_TEXT_LENGTH = 40  # the longest synthetic report (a checklist) is 34 word pieces with [CLS] and [SEP]
# Fine-tuning: the FinetuneConfig defaults (early stopping on the training sites' validation split), batch 64.
FINETUNE = {"batch_size": 64, "patience": 4}
# training corruptions + two held out of training (impulse_noise, pixelate); see experiment.PLANS
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast_down", "jpeg", "bias_field", "impulse_noise", "pixelate")


def synthetic_set(data: Path, n_images: int, image_size: int, seed: int) -> Path:
    """Generate a synthetic set into ``data`` (3 sites), or reuse it when it was made with the same
    settings (``generate.json``); other settings stop the script rather than mixing runs."""
    settings = {"n_images": n_images, "image_size": image_size, "seed": seed, "domains": 3}
    record = data / "generate.json"
    if record.is_file():
        made = json.loads(record.read_text(encoding="utf-8"))
        if made != settings:
            sys.exit(f"{data} was generated with {made}, not {settings}; use another --out")
        return data
    log(f"synthetic set: {n_images} scans at {image_size} px → {data}")
    generate_dataset(data, n_images, seed=seed, num_domains=3, size=image_size, progress=False)
    record.write_text(json.dumps(settings) + "\n", encoding="utf-8")
    return data


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
    command = "python benchmarks/method_synthetic.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    data = synthetic_set(args.out / "data", args.n_images, args.image_size, DOWNSTREAM_SEED)
    corpus = synthetic_set(args.out / "pretrain_corpus", args.pretrain_images, args.image_size, PRETRAIN_SEED)
    key, value = HOLDOUT.split("=")
    pretrain_data = training_domain_pairs(corpus, args.out / "pretrain_data", key, value)

    overrides = [f"model.image_size={args.image_size}", f"model.max_text_length={MAX_TEXT_LENGTH}",
                 f"train.lr={args.lr}", "train.warmup_steps=20", *training_overrides(args)]
    finetune = {**FINETUNE, "max_epochs": args.finetune_epochs, "accelerator": args.accelerator}
    jobs = [Job(variant=name, overrides=(*overrides, *extra), seed=seed, pretrain_data=str(pretrain_data),
                task_data=str(data), out=str(args.out / "runs" / name / f"seed{seed}"), holdouts=(HOLDOUT,),
                finetune=finetune, corruptions=CORRUPTIONS, text_perturbations=TEXT_PERTURBATIONS,
                severities=SEVERITIES, max_eval_items=args.max_eval_items, retrieval=not args.no_retrieval,
                threads=threads_per_job(args))
            for seed in args.seeds for name, extra in variants.items()]
    results = finished_results(jobs) if args.summary_only else run_jobs(jobs, args.parallel)
    title = (f"Synthetic method benchmark: {args.n_images} scans at {args.image_size} px, {args.model} backbone, "
             f"{args.steps} pre-training steps at batch {args.batch}, site-c held out")
    path = write_summary(results, args.out, list(variants), title, command)
    print(Path(path).read_text(encoding="utf-8"))
    log(f"summary: {path} (plot: {args.out / 'summary.png'})")


if __name__ == "__main__":
    main()
