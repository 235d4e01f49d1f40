"""``robust-mmr pretrain``: pre-train mmr, mmr-aug or robust-mmr on an image–text dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from robust_mmr.cli.tables import format_table
from robust_mmr.config import PRESETS, load_config
from robust_mmr.objectives import METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain", help="pre-train a model (mmr | mmr-aug | robust-mmr)")
    p.add_argument("--config", default="tiny", help=f"preset ({', '.join(PRESETS)}) or a YAML file")
    p.add_argument("--method", choices=METHODS, default="robust-mmr")
    p.add_argument("--data", type=Path, required=True, help="dataset directory with image_text.jsonl")
    p.add_argument("--out", type=Path, help="run directory (default runs/pretrain/CONFIG-METHOD-seedS)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run directory has a checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=50")
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    from robust_mmr.training.pretrain import run_pretraining  # heavy imports only when training

    cfg = load_config(args.config, [f"objective.method={args.method}", *args.overrides])
    name = Path(args.config).stem if args.config not in PRESETS else args.config
    run_dir = args.out or Path("runs") / "pretrain" / f"{name}-{cfg.objective.method}-seed{cfg.train.seed}"
    print(f"pre-training {cfg.objective.method} ({name}) on {args.data} → {run_dir}")
    summary = run_pretraining(cfg, args.data, run_dir, resume=not args.no_resume)
    rows = [[k.removeprefix("train/"), v] for k, v in sorted(summary["final_metrics"].items()) if k.startswith("train/")]
    print(format_table(["loss term", "last value"], rows, title=f"{summary['steps']} steps in {summary['seconds']} s"))
    print(f"weights: {summary['weights']}  ({summary['parameters'] / 1e6:.1f} M parameters)")
    return 0
