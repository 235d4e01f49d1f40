"""Fine-tuning LightningModules: one base for every downstream task, and the classifier task on it.

:class:`FinetuneModule` holds what every task shares: the optimiser rule of
:mod:`robust_mmr.training.optim` over a backbone group and a head group, the warm-up + plateau
learning-rate schedule, and model selection — the weights of the best validation epoch are kept
(``best_state``, ``best_epoch``, ``best_score``). A task subclass says how a batch gives a loss
(``training_step``), what validation collects (``validation_step``) and how that becomes the epoch's
score (:meth:`validation_score`). Early stopping on the same score is Lightning's ``EarlyStopping``
(:func:`fit_keeping_best`); only training and validation batches are seen.

With ``devices`` > 1 (DDP) each process trains on its shard of every epoch (``batch_size`` per process)
and validates on the whole validation set, so every process selects the same epoch; every process
returns from :func:`fit_keeping_best` with the best weights loaded, and whatever the caller writes
afterwards should be written by rank 0 only.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from robust_mmr.hardware import resolve_precision
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.training.optim import PlateauSchedule, adamw

SCORE = "val/score"  # the logged model-selection score (accuracy, or mean R@1 for retrieval)


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


def fit_keeping_best(module: FinetuneModule, train_loader: DataLoader, val_loader: DataLoader,
                     cfg: FinetuneConfig, out: Path, progress: bool) -> float:
    """Fit a fine-tuning module (CSV logs in ``out/logs``) until its validation score has not improved for
    ``cfg.patience`` epochs or ``cfg.max_epochs`` have run, then load the weights of its best validation
    epoch into ``module.model`` and say which epoch that was. Returns the seconds spent."""
    out.mkdir(parents=True, exist_ok=True)
    stop = EarlyStopping(monitor=SCORE, mode="max", patience=cfg.patience, check_finite=False)
    if cfg.devices > 1:
        val_loader = unsharded(val_loader)
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, strategy=_strategy(cfg),
                        max_epochs=cfg.max_epochs, precision=resolve_precision(cfg.precision, cfg.accelerator),
                        gradient_clip_val=cfg.grad_clip, logger=CSVLogger(out, name="logs"), enable_checkpointing=False,
                        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10,
                        num_sanity_val_steps=0, callbacks=[stop])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # a probe's frozen backbone
        trainer.fit(module, train_loader, val_loader)
    module.model.cpu().load_state_dict(module.best_state)
    seconds = round(time.perf_counter() - start, 1)
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
