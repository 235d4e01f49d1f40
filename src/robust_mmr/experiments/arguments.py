"""The method benchmarks' variants (as data) and the command-line arguments both benchmark scripts share.

A variant is a name and the config overrides that make it. The six built in are the three methods and
Robust-MMR with each of its three components removed (DESIGN §1.2); ``--variant NAME=KEY=VALUE,KEY=VALUE``
adds more (a sweep point, say).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_mmr.experiments.runner import cores_per_job

ROBUST = "objective.method=robust-mmr"
VARIANTS: dict[str, tuple[str, ...]] = {
    "mmr": ("objective.method=mmr",),
    "mmr-aug": ("objective.method=mmr-aug",),
    "robust-mmr": (ROBUST,),
    "no-aware": (ROBUST, "objective.aware_masking=false"),
    "no-dc": (ROBUST, "objective.domain_consistency=false"),
    "no-mr": (ROBUST, "objective.modality_resilience=false"),
}
TEXT_PERTURBATIONS = ("keyboard_typo", "synonym", "word_drop", "abbreviate")  # evaluated on the questions
SEVERITIES = (1, 3, 5)
# --model: the demo preset, demo with MiniLM text (real), the tiny preset, MiniLM-initialised small
BACKBONE_PRESETS = ("demo", "real", "tiny", "small")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (a rerun skips finished jobs)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS),
                        help=f"variants to run (built in: {', '.join(VARIANTS)})")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE,...",
                        help="define an extra variant from config overrides, e.g. "
                             "'dc2=objective.method=robust-mmr,objective.dc_weight=2'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, required=True, help="pre-training steps (every variant)")
    parser.add_argument("--batch", type=int, default=32, help="pre-training batch size")
    parser.add_argument("--model", choices=BACKBONE_PRESETS, default="demo", help="backbone preset")
    parser.add_argument("--finetune-epochs", type=int, default=30,
                        help="most fine-tuning epochs (early stopping on the validation split usually ends sooner)")
    parser.add_argument("--protocols", nargs="+", choices=("vqa", "probe", "lpft", "blind"),
                        default=["vqa", "probe", "blind"],
                        help="VQA full fine-tuning, the probe on the frozen backbone, LP-FT (a head on the frozen "
                             "features first, then full fine-tuning), the trained blind baseline (full fine-tuning "
                             "with the image removed in training and at test); a job finished with more protocols "
                             "serves fewer, one with other protocols reruns only the missing stages")
    parser.add_argument("--probe-patience", type=int, default=10,
                        help="the probe's early-stopping patience (it trains on cached features: cheap epochs)")
    parser.add_argument("--probe-max-epochs", type=int, default=60)
    parser.add_argument("--max-eval-items", type=int, default=None,
                        help="evaluate a fixed random subset of each test set (default: every test item)")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator for training (cpu, gpu)")
    parser.add_argument("--parallel", type=int, default=1, help="jobs run at once")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per job (default: the machine's cores / --parallel)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per pre-training run")
    parser.add_argument("--publish", type=Path, metavar="STEM",
                        help="also write the summary plot and the JSON of its tables as STEM.png / STEM.json "
                             "(e.g. docs/benchmarks/real-standard)")
    parser.add_argument("--summary-only", action="store_true",
                        help="only summarise the jobs already finished under --out (run nothing)")


def threads_per_job(args: argparse.Namespace) -> int:
    return args.threads or cores_per_job(args.parallel)


def resolve_variants(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """The variants to run, in order: the chosen built-in ones, then the ``--variant`` definitions."""
    chosen = {}
    for name in args.variants:
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name!r}; built in: {', '.join(VARIANTS)} (define others with --variant)")
        chosen[name] = VARIANTS[name]
    for item in args.variant:
        name, sep, overrides = item.partition("=")
        if not sep or not overrides:
            sys.exit(f"--variant {item!r}: expected NAME=KEY=VALUE[,KEY=VALUE...]")
        chosen[name] = tuple(overrides.split(","))
    return chosen


def training_overrides(args: argparse.Namespace) -> list[str]:
    """Pre-training overrides from the common arguments (the backbone is the ``--model`` preset)."""
    return [f"train.max_steps={args.steps}", f"train.batch_size={args.batch}", f"train.num_workers={args.workers}",
            f"train.accelerator={args.accelerator}", "train.precision=auto",
            f"train.checkpoint_every={args.steps}"]  # one checkpoint, at the end


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that was run, for the summary (arguments quoted as a shell would need them)."""
    import shlex

    return f"python {script} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def probe_settings(args: argparse.Namespace) -> dict:
    """The probe's fine-tuning settings over the job's (``Job.probe_finetune``)."""
    return {"patience": args.probe_patience, "max_epochs": args.probe_max_epochs}
