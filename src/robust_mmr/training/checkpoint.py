"""Exported weights (``model.safetensors`` + ``config.yaml``) and the training checkpoints' file I/O.

Loading builds the model from the saved config and reads tensors only (safetensors never
unpickles), so a checkpoint from an untrusted source cannot run code. Lightning's resume
checkpoints (``checkpoints/last.ckpt``) go through :class:`SafeCheckpointIO`: written to a temp file,
fsynced and renamed over the old one (a kill mid-save leaves the previous checkpoint intact), and
read with ``torch.load(weights_only=True)`` (tensors and plain containers only; a pickle that would
run code is refused before anything runs).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
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



class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic saves (temp file + fsync + rename) and ``weights_only`` loads for Lightning checkpoints."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with tmp.open("wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_training_checkpoint(path, map_location)


def load_training_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint's dict, unpickled with ``weights_only=True``; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"checkpoint {path} holds more than tensors and plain containers; refused without "
                         f"unpickling it (weights_only=True): {first_line}") from None


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete temp files a killed save left behind (``.NAME.tmp-PID``); returns what was removed."""
    stale = sorted(Path(directory).glob(".*.tmp-*")) if Path(directory).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
