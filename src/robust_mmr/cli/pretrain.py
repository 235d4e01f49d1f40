"""``robust-mmr pretrain``: pre-train mmr, mmr-aug or robust-mmr on an image–text dataset."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from robust_mmr.cli.tables import format_table
from robust_mmr.config import ON_BAD_SAMPLE, PRESETS, load_config
from robust_mmr.objectives import METHODS
from robust_mmr.runfolder import claim, data_identity, locked


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain", help="pre-train a model (mmr | mmr-aug | robust-mmr)")
    p.add_argument("--config", default="tiny", help=f"preset ({', '.join(PRESETS)}) or a YAML file")
    p.add_argument("--method", choices=METHODS, default="robust-mmr")
    p.add_argument("--data", type=Path, required=True,
                   help="dataset directory with image_text.jsonl, or a folder of tar shards (robust-mmr data shard)")
    p.add_argument("--out", type=Path, help="run directory (default runs/pretrain/CONFIG-METHOD-seedS)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run directory has a checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="clear a run directory that holds another run (another method, model, data ...) first")
    p.add_argument("--on-bad-sample", choices=ON_BAD_SAMPLE,
                   help="skip unusable samples and list them in the summary, or fail at the first "
                        "(default: the config's train.on_bad_sample, skip)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=50")
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    from lightning.pytorch.utilities import rank_zero_only  # heavy imports only when training

    from robust_mmr.training.module import NonFiniteLossError
    from robust_mmr.training.pretrain import require_manifest, run_pretraining

    say = print if rank_zero_only.rank == 0 else (lambda *_: None)  # a distributed run prints once
    bad = [f"train.on_bad_sample={args.on_bad_sample}"] if args.on_bad_sample else []
    cfg = load_config(args.config, [f"objective.method={args.method}", *args.overrides, *bad])
    name = Path(args.config).stem if args.config not in PRESETS else args.config
    run_dir = args.out or Path("runs") / "pretrain" / f"{name}-{cfg.objective.method}-seed{cfg.train.seed}"
    say(f"pre-training {cfg.objective.method} ({name}) on {args.data} → {run_dir}")
    require_manifest(args.data)  # before the run folder is made
    writer = rank_zero_only.rank == 0  # under torchrun every rank runs this command; rank 0 owns the folder
    if writer:
        status = claim(run_dir, "pretrain", pretrain_identity(cfg, args.data), overwrite=args.overwrite)
        say({"same": f"{run_dir} holds this run: resuming it", "cleared": f"cleared {run_dir} (--overwrite)",
             "new": f"new run in {run_dir}"}[status])
    try:
        with locked(run_dir) if writer else contextlib.nullcontext():
            summary = run_pretraining(cfg, args.data, run_dir, resume=not args.no_resume)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rows = [[k.removeprefix("train/"), v] for k, v in sorted(summary["final_metrics"].items()) if k.startswith("train/")]
    say(format_table(["loss term", "last value"], rows,
                     title=f"{summary['steps']} steps in {summary['seconds']} s"))
    if summary["skipped"]:
        say(format_table(["reason", "samples", "first ids"], _skipped_rows(summary["skipped"]),
                         title=f"{len(summary['skipped'])} samples skipped (all in summary.json)"))
    say(f"weights: {summary['weights']}  ({summary['parameters'] / 1e6:.1f} M parameters)")
    return 0


# train.* keys that say how and how long a run trains, not what it is: a resume may change them
EXECUTION_KEYS = ("max_steps", "accelerator", "devices", "num_nodes", "strategy", "num_workers", "log_every",
                  "checkpoint_every", "checkpoint_minutes", "precision", "on_bad_sample")


def pretrain_identity(cfg, data: Path) -> dict:
    """What a pre-training run is: its method, model and objective, the training settings that shape the weights,
    and the data (folder + manifest hash). Continuing it for more steps, on other hardware, keeps it the same run."""
    from dataclasses import asdict

    from robust_mmr.training.pretrain import data_manifest

    train = {k: v for k, v in asdict(cfg.train).items() if k not in EXECUTION_KEYS}
    return {"method": cfg.objective.method, "model": asdict(cfg.model), "objective": asdict(cfg.objective),
            "train": train, "data": data_identity(data, data_manifest(data))}


def _skipped_rows(skipped: list[dict[str, str]], shown: int = 3) -> list[list]:
    ids: dict[str, list[str]] = {}
    for s in skipped:
        ids.setdefault(s["reason"], []).append(s["id"])
    return [[reason, len(v), ", ".join(v[:shown]) + (" ..." if len(v) > shown else "")] for reason, v in sorted(ids.items())]
