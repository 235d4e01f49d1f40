"""Running a pre-training job: run directory, trainer, logs, checkpoints, resume, summary."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from robust_mmr.config import RunConfig, save_config
from robust_mmr.training.checkpoint import ExportWeights
from robust_mmr.training.data import PretrainDataModule
from robust_mmr.training.module import PretrainModule


def run_pretraining(cfg: RunConfig, data_dir: Path, run_dir: Path, resume: bool = True, progress: bool = True) -> dict:
    """Pre-train ``cfg`` on the image–text manifest in ``data_dir``; everything is written to ``run_dir``.

    With ``resume`` and an existing ``run_dir/checkpoints/last.ckpt``, training continues from it.
    Returns the run summary (also written to ``run_dir/summary.json``).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = PretrainModule(cfg)
    data = PretrainDataModule(data_dir, cfg.model, cfg.objective, cfg.train, module.tokenizer)
    last = run_dir / "checkpoints" / "last.ckpt"
    callbacks = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                        every_n_train_steps=cfg.train.checkpoint_every),
        ExportWeights(run_dir, cfg, cfg.train.checkpoint_every),
    ]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    trainer = L.Trainer(
        accelerator=cfg.train.accelerator, devices=cfg.train.devices, num_nodes=cfg.train.num_nodes,
        strategy=cfg.train.strategy, precision=cfg.train.precision, max_steps=cfg.train.max_steps,
        gradient_clip_val=cfg.train.grad_clip, log_every_n_steps=cfg.train.log_every,
        logger=CSVLogger(run_dir, name="logs"),  # logs/version_N per attempt: a resume keeps earlier logs
        callbacks=callbacks,
        enable_progress_bar=progress, enable_model_summary=False, default_root_dir=run_dir, deterministic=False,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume and last.is_file() else None)
    summary = {
        "method": cfg.objective.method,
        "steps": trainer.global_step,
        "seconds": round(time.perf_counter() - start, 1),
        "final_metrics": {k: round(float(v), 5) for k, v in trainer.callback_metrics.items()},
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "train_pairs": len(data.train_set),
        "weights": str(run_dir / "model.safetensors"),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
