"""Exported weights (``model.safetensors`` + ``config.yaml``), when resume checkpoints are written, and their file I/O.

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
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
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
    """Exports safetensors weights whenever a resume checkpoint is written and at the end of training (once per
    optimizer step: a checkpoint written at the end does not export the same weights twice)."""

    def __init__(self, run_dir: Path, cfg: RunConfig):
        self.run_dir, self.cfg = run_dir, cfg
        self.exported_step: int | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._export(trainer, pl_module)

    def _export(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.exported_step != trainer.global_step:
            export_weights(pl_module.model, self.cfg, self.run_dir)
            self.exported_step = trainer.global_step


class ResumeCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt`` every ``every_steps`` optimizer steps, or else every ``minutes`` minutes of
    training (0 and 0: none during training), and always at the end of training.

    Lightning's ModelCheckpoint takes one trigger (steps or time) and writes ``last.ckpt`` at the end only when it
    wrote nothing before; here a finished run always ends with a checkpoint of its last step, so it can be
    extended. A timed save waits for the end of a gradient-accumulation window: a checkpoint in the middle of one
    would lose the gradients already summed, and the resumed run would differ from an uninterrupted one.
    """

    def __init__(self, dirpath: Path, every_steps: int, minutes: float):
        interval = timedelta(minutes=minutes) if every_steps == 0 and minutes > 0 else None
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, every_n_train_steps=every_steps,
                         train_time_interval=interval)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.fit_loop.epoch_loop._should_accumulate():  # an optimizer step just ran
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


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
