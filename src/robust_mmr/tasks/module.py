"""Fine-tuning LightningModules: one base for every downstream task, and the classifier task on it.

:class:`FinetuneModule` holds what every task shares: the optimiser rule of
:mod:`robust_mmr.training.optim` over a backbone group and a head group, the warm-up + plateau
learning-rate schedule, and model selection — the weights of the best validation epoch are kept
(``best_state``, ``best_epoch``, ``best_score``). A task subclass says how a batch gives a loss
(``training_step``), what validation collects (``validation_step``) and how that becomes the epoch's
score (:meth:`validation_score`). Early stopping on the same score is Lightning's ``EarlyStopping``
(:func:`fit_keeping_best`); only training and validation batches are seen.

A run given a ``resume_key`` (what the run is: its settings, init and data) writes ``checkpoints/last.ckpt`` in its
folder at the end of an epoch once ``CHECKPOINT_MINUTES`` have passed since the last one (a checkpoint of the real
preset is ~0.7 GB: 2–7 s to write on the 2-core Intel Xeon of the benchmarks with both cores busy, against 30–45 s
an epoch there in bf16 autocast) and removes it when the run ends. Not every few steps as pre-training's
``ResumeCheckpoint`` can: a mid-epoch checkpoint would lose the epoch's data order. Started again with the same key
after a kill, it continues from the last checkpointed epoch — weights, optimiser, schedule, early-stopping counter,
the best epoch so far and the random state of the data order and dropout — so it replays the uninterrupted run
(exactly on one device with ``num_workers`` 0; worker processes and other ranks re-draw their seeds). A checkpoint of
another key is discarded.

With ``devices`` > 1 (DDP) each process trains on its shard of every epoch (``batch_size`` per process)
and validates on the whole validation set, so every process selects the same epoch; every process
returns from :func:`fit_keeping_best` with the best weights loaded, and whatever the caller writes
afterwards should be written by rank 0 only.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from robust_mmr.hardware import resolve_precision
from robust_mmr.runfolder import write_json
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.training.checkpoint import SafeCheckpointIO
from robust_mmr.training.optim import PlateauSchedule, adamw

SCORE = "val/score"  # the logged model-selection score (accuracy, or mean R@1 for retrieval)
CHECKPOINTS = "checkpoints"  # in a fine-tuning run's folder while it trains: last.ckpt and the key it belongs to
CHECKPOINT_MINUTES = 5.0  # training minutes between resume checkpoints (at epoch ends); a kill loses at most this


class FinetuneModule(L.LightningModule):
    """Base of the fine-tuning modules. ``model`` must expose ``head_parameters()``."""

    def __init__(self, model: nn.Module, cfg: FinetuneConfig, steps_per_epoch: int):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.steps_per_epoch = steps_per_epoch
        self.schedule = PlateauSchedule(cfg.warmup_epochs * steps_per_epoch, cfg.lr_patience)
        self.best_score, self.best_epoch = -float("inf"), -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []  # per validated epoch: epoch, score, learning-rate scale
        self.seconds_before = 0.0  # training time of the earlier processes of a resumed run
        self._started = time.perf_counter()

    def validation_score(self) -> float:
        """The epoch's validation score from what ``validation_step`` collected (and clear it)."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """With several processes each takes 1/world_size of an epoch's steps: the warm-up (in epochs) is
        counted in those (before ``configure_optimizers`` builds the schedule's first step)."""
        if self.trainer.world_size > 1:
            self.schedule.warmup = self.cfg.warmup_epochs * math.ceil(self.steps_per_epoch / self.trainer.world_size)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        score = self.validation_score()
        self.log(SCORE, score, prog_bar=True, sync_dist=self.trainer.world_size > 1)  # the same on every process
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch = score, self.current_epoch
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        self.history.append({"epoch": self.current_epoch, "score": round(score, 4), "lr_scale": self.schedule.scale})
        self.schedule.epoch_end(improved)

    def on_fit_start(self) -> None:
        self._started = time.perf_counter()

    def training_seconds(self) -> float:
        """Seconds of training so far, the earlier processes of a resumed run included."""
        return self.seconds_before + time.perf_counter() - self._started

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Model selection and time so far (the schedule's state travels with its LambdaLR)."""
        checkpoint["selection"] = {"best_score": self.best_score, "best_epoch": self.best_epoch,
                                   "best_state": self.best_state, "history": self.history,
                                   "seconds": self.training_seconds()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        selection = checkpoint["selection"]
        self.best_score, self.best_epoch = selection["best_score"], selection["best_epoch"]
        self.best_state, self.history = selection["best_state"], selection["history"]
        self.seconds_before = selection["seconds"]

    def configure_optimizers(self):
        head = list(self.model.head_parameters())
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.model.parameters() if id(p) not in head_ids]
        optimizer = adamw([(backbone, self.cfg.lr), (head, self.cfg.lr * self.cfg.head_lr_multiplier)],
                          self.cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class ClassifierModule(FinetuneModule):
    """VQA over an answer vocabulary, or image–text classification: cross-entropy, scored by accuracy.

    Batches hold ``pixels``, ``input_ids``, ``attention_mask`` and ``labels`` (-1: an answer outside the
    vocabulary, never learned, always wrong), or — for the probe — precomputed ``features`` and
    ``labels`` (then ``model`` is the head alone)."""

    def __init__(self, model: nn.Module, cfg: FinetuneConfig, steps_per_epoch: int):
        super().__init__(model, cfg, steps_per_epoch)
        self._val_hits: list[torch.Tensor] = []

    def logits(self, batch: dict) -> torch.Tensor:
        if "features" in batch:
            return self.model(batch["features"])
        return self.model(batch["pixels"], batch["input_ids"], batch["attention_mask"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.logits(batch)
        known = batch["labels"] >= 0
        loss = F.cross_entropy(logits[known].float(), batch["labels"][known]) if known.any() else logits.sum() * 0
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._val_hits.append((self.logits(batch).argmax(-1) == batch["labels"]).cpu())

    def validation_score(self) -> float:
        accuracy = torch.cat(self._val_hits).float().mean().item() if self._val_hits else 0.0
        self._val_hits.clear()
        return accuracy


def selection_summary(module: FinetuneModule) -> dict:
    """Which epoch was kept and the validation score of every epoch (for ``task.json``)."""
    return {"best_epoch": module.best_epoch, "epochs_run": len(module.history), "val_history": module.history}


class RandomState(L.Callback):
    """Saves and restores the random state a fine-tuning epoch draws from: the training loader's generator (the
    data order) and torch's global generators (dropout, augmentation)."""

    def __init__(self, generator: torch.Generator | None):
        self.generator = generator

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if self.generator is not None:
            state["loader"] = self.generator.get_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        if self.generator is not None and "loader" in state:
            self.generator.set_state(state["loader"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class EpochCheckpoint(ModelCheckpoint):
    """``last.ckpt`` at the end of an epoch (its validation and early-stopping check included) once ``minutes``
    have passed since the last save or the start (0: every epoch). Lightning's own ``save_last`` writes only
    beside a top-k checkpoint, which a resume checkpoint does not need."""

    def __init__(self, dirpath: Path, minutes: float):
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0)
        self.minutes, self.saved_at = minutes, time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        due = time.monotonic() - self.saved_at >= 60 * self.minutes
        if due and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self.saved_at = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        pass  # saved once per epoch, above


def resume_checkpoint(folder: Path, key: dict, clear: bool = True) -> Path | None:
    """``folder/last.ckpt`` if it belongs to the run ``key`` describes; otherwise (with ``clear``: the first
    process of a run only) clear ``folder`` of another run's checkpoint and record ``key`` there for this one."""
    record, last = folder / "key.json", folder / "last.ckpt"
    key = json.loads(json.dumps(key))  # as JSON reads it back (tuples become lists)
    if last.is_file() and record.is_file() and json.loads(record.read_text(encoding="utf-8")) == key:
        return last
    if not clear:
        return None
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_json(record, key)
    return None


def fit_keeping_best(module: FinetuneModule, train_loader: DataLoader, val_loader: DataLoader,
                     cfg: FinetuneConfig, out: Path, progress: bool, resume_key: dict | None = None) -> float:
    """Fit a fine-tuning module (CSV logs in ``out/logs``) until its validation score has not improved for
    ``cfg.patience`` epochs or ``cfg.max_epochs`` have run, then load the weights of its best validation
    epoch into ``module.model`` and say which epoch that was. With ``resume_key``, checkpoint at epoch ends in
    ``out/checkpoints`` (every ``CHECKPOINT_MINUTES``) and continue from a checkpoint of the same key left there
    by a killed run (module docstring). Returns the seconds spent training (a resumed run's included)."""
    out.mkdir(parents=True, exist_ok=True)
    stop = EarlyStopping(monitor=SCORE, mode="max", patience=cfg.patience, check_finite=False)
    if cfg.devices > 1:
        val_loader = unsharded(val_loader)
    callbacks: list[L.Callback] = [stop]
    resume_from, folder = None, out / CHECKPOINTS
    if resume_key is not None:
        first = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"  # before the trainer knows
        resume_from = resume_checkpoint(folder, resume_key, clear=first)
        callbacks += [RandomState(train_loader.generator), EpochCheckpoint(folder, CHECKPOINT_MINUTES)]
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, strategy=_strategy(cfg),
                        max_epochs=cfg.max_epochs, precision=resolve_precision(cfg.precision, cfg.accelerator),
                        gradient_clip_val=cfg.grad_clip, logger=CSVLogger(out, name="logs"),
                        enable_checkpointing=resume_key is not None, plugins=[SafeCheckpointIO()],
                        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10,
                        num_sanity_val_steps=0, callbacks=callbacks)
    if resume_from is not None and progress and trainer.is_global_zero:
        print(f"resuming from {resume_from} (a stopped run of the same settings)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # a probe's frozen backbone
        trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from)
    if resume_key is not None and trainer.is_global_zero:
        shutil.rmtree(folder, ignore_errors=True)  # finished: nothing to resume
    module.model.cpu().load_state_dict(module.best_state)
    seconds = round(module.training_seconds(), 1)
    if progress and trainer.is_global_zero:
        print(f"kept epoch {module.best_epoch + 1} of {len(module.history)} (validation score {module.best_score:.4f}; "
              f"{'stopped early' if len(module.history) < cfg.max_epochs else 'max_epochs reached'}) in {seconds} s")
    return seconds


def _strategy(cfg: FinetuneConfig):
    """Lightning's strategy for ``cfg``: ``auto`` on one device, else DDP that tolerates parameters a step does
    not use (the backbone's MIM decoder and MLM head, unused by every fine-tuning task)."""
    if cfg.devices == 1 and cfg.strategy == "auto":
        return "auto"
    return DDPStrategy(find_unused_parameters=True)


def unsharded(loader: DataLoader) -> DataLoader:
    """``loader`` with every item on every process, in order: a one-replica ``DistributedSampler``, which
    Lightning keeps instead of sharding (validation scores then need no gathering and are the same everywhere)."""
    sampler = DistributedSampler(loader.dataset, num_replicas=1, rank=0, shuffle=False)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)
