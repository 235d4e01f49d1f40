"""Exported weights: ``model.safetensors`` + ``config.yaml`` in a run directory.

Loading builds the model from the saved config and reads tensors only (safetensors never
unpickles), so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from safetensors.torch import load_file, save_file

from robust_mmr.config import RunConfig, load_config, save_config
from robust_mmr.errors import InputError
from robust_mmr.model.mmr_model import MMRModel, build_model

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"


def export_weights(model: MMRModel, cfg: RunConfig, run_dir: Path) -> Path:
    """Write the model weights and the resolved config atomically (temp file + rename)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = run_dir / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(run_dir / WEIGHTS)
    save_config(cfg, run_dir / CONFIG)
    return run_dir / WEIGHTS


def load_pretrained(run_dir: str | Path, device: str = "cpu") -> tuple[MMRModel, object, RunConfig]:
    """(model, tokenizer, config) from a run directory written by :func:`export_weights`."""
    run_dir = Path(run_dir)
    if not (run_dir / WEIGHTS).is_file() or not (run_dir / CONFIG).is_file():
        raise InputError(f"{run_dir}: expected {WEIGHTS} and {CONFIG} (a pre-training run directory)")
    cfg = load_config(str(run_dir / CONFIG))
    model, tokenizer = build_model(cfg.model)
    model.load_state_dict(load_file(str(run_dir / WEIGHTS), device=device), strict=True)
    return model.to(device).eval(), tokenizer, cfg


class ExportWeights(L.Callback):
    """Exports safetensors weights every ``every`` steps and at the end of training."""

    def __init__(self, run_dir: Path, cfg: RunConfig, every: int):
        self.run_dir, self.cfg, self.every = run_dir, cfg, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero and self.every > 0 and trainer.global_step % self.every == 0:
            export_weights(pl_module.model, self.cfg, self.run_dir)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            export_weights(pl_module.model, self.cfg, self.run_dir)

