"""Running a pre-training job: run directory, trainer, logs, checkpoints, resume, summary.

Checkpoints come every ``train.checkpoint_every`` optimizer steps, else every ``train.checkpoint_minutes``, and
always at the end, each with an export of ``model.safetensors``. ``train.accumulate_grad_batches`` sums the
gradients of several micro-batches per optimizer step; ``max_steps`` and the schedule count optimizer steps.

Reliability (see RELIABILITY.md): checkpoints are atomic and load with ``weights_only=True``; a run
killed at any point resumes from ``checkpoints/last.ckpt`` to the same weights as an uninterrupted
run (the data order, every view and every mask are functions of seed, epoch and step); bad samples
are skipped and listed in the summary (or stop the run with ``train.on_bad_sample=fail``); a
non-finite loss stops training. In a distributed run only rank 0 writes files.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only

from robust_mmr.config import RunConfig, save_config
from robust_mmr.errors import InputError
from robust_mmr.hardware import describe, precision_record
from robust_mmr.training.checkpoint import ExportWeights, ResumeCheckpoint, SafeCheckpointIO, remove_stale_temp_files
from robust_mmr.training.data import PretrainDataModule
from robust_mmr.training.module import NonFiniteLossError, PretrainModule
from robust_mmr.training.screening import MANIFEST, summarise_skipped
from robust_mmr.training.stream import SHARD_CARD, is_shard_dir


def run_pretraining(cfg: RunConfig, data_dir: Path, run_dir: Path, resume: bool = True, progress: bool = True) -> dict:
    """Pre-train ``cfg`` on the image–text manifest in ``data_dir``; everything is written to ``run_dir``.

    With ``resume`` and an existing ``run_dir/checkpoints/last.ckpt``, training continues from it.
    Returns the run summary (also written to ``run_dir/summary.json`` by rank 0). Raises
    :class:`NonFiniteLossError` (after writing the summary) when a loss term stops being finite.
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    require_manifest(data_dir)
    is_rank_zero = rank_zero_only.rank == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero:
        save_config(cfg, run_dir / "config.yaml")
        remove_stale_temp_files(run_dir / "checkpoints")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = PretrainModule(cfg)
    data = PretrainDataModule(data_dir, cfg.model, cfg.objective, cfg.train, module.tokenizer, index_dir=run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    precision = precision_record(cfg.train.precision, cfg.train.accelerator)
    if is_rank_zero:
        print(describe(precision), flush=True)
    callbacks = [ResumeCheckpoint(run_dir / "checkpoints", cfg.train.checkpoint_every, cfg.train.checkpoint_minutes),
                 ExportWeights(run_dir, cfg)]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    trainer = L.Trainer(
        accelerator=cfg.train.accelerator, devices=cfg.train.devices, num_nodes=cfg.train.num_nodes,
        strategy=_strategy(cfg.train.strategy), precision=precision["resolved"], max_steps=cfg.train.max_steps,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches, gradient_clip_val=cfg.train.grad_clip,
        log_every_n_steps=cfg.train.log_every,
        logger=CSVLogger(run_dir, name="logs"),  # logs/version_N per attempt: a resume keeps earlier logs
        callbacks=callbacks, plugins=[SafeCheckpointIO()],
        use_distributed_sampler=False,  # our EpochSampler shards by rank (see training/sampler.py)
        enable_progress_bar=progress, enable_model_summary=False, default_root_dir=run_dir, deterministic=False,
    )
    start = time.perf_counter()
    stopped = None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume and last.is_file() else None,
                        weights_only=True)
    except NonFiniteLossError as err:
        stopped = err
    summary = {
        "method": cfg.objective.method,
        "status": "completed" if stopped is None else f"stopped: {stopped}",
        "steps": trainer.global_step,
        "seconds": round(time.perf_counter() - start, 1),
        "final_metrics": {k: round(float(v), 5) for k, v in trainer.callback_metrics.items()},
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "data": str(data_dir),
        "train_pairs": data.train_pairs,
        "world_size": trainer.world_size,
        "precision": precision,
        "weights": str(run_dir / "model.safetensors"),
        # decode-time skips live on each rank; gathering needs the process group, gone after a stop
        **summarise_skipped(data.train_set.skipped + (module.skipped if stopped else
                                                      _all_ranks(module.skipped, trainer.world_size))),
    }
    if trainer.is_global_zero:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Lightning leaves the process group open; a gloo group still alive at interpreter exit can
        # abort the process ("terminate called without an active exception") after a finished run.
        torch.distributed.destroy_process_group()
    if stopped is not None:
        raise stopped
    return summary


def require_manifest(data_dir: Path) -> None:
    """An :class:`InputError` unless ``data_dir`` holds what pre-training reads: the image–text manifest, or the
    ``shards.json`` of a folder of tar shards."""
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file() and not is_shard_dir(data_dir):
        why = f"nor {SHARD_CARD}: not a shard folder" if data_dir.is_dir() else "the directory does not exist"
        raise InputError(f"data directory {data_dir}: no {MANIFEST} there ({why})")


def data_manifest(data_dir: Path) -> str:
    """The file that says what ``data_dir`` holds: the shard card of a shard folder, else the manifest."""
    return SHARD_CARD if is_shard_dir(data_dir) else MANIFEST


def _strategy(name: str):
    """``ddp`` tolerates parameters a step does not use (the ITM head with itm_weight 0, mmr's projection...)."""
    return DDPStrategy(find_unused_parameters=True) if name == "ddp" else name


def _all_ranks(items: list, world_size: int) -> list:
    """Every rank's list, concatenated in rank order (this rank's alone outside a process group)."""
    if world_size == 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return list(items)
    gathered: list = [None] * world_size
    torch.distributed.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]
