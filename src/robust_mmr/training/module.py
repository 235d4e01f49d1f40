"""The pre-training LightningModule: model + objective, optimiser groups, schedule, logging."""

from __future__ import annotations

import math

import lightning as L
import torch

from robust_mmr.config import RunConfig
from robust_mmr.model import build_model
from robust_mmr.objectives import PretrainObjective
from robust_mmr.perturbations.seeding import derive_seed


class PretrainModule(L.LightningModule):
    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        self.model, self.tokenizer = build_model(cfg.model)
        self.objective = PretrainObjective(self.model, cfg.objective, self.tokenizer.mask_token_id, len(self.tokenizer))

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            datamodule.collator.epoch = self.current_epoch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # The step's random stream depends only on (seed, step): masks and corruptions replay on resume.
        seed = derive_seed(self.cfg.train.seed, f"step-{self.global_step}", "pretrain", 1)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        terms = self.objective(batch, generator)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=False,
                      batch_size=batch["pixels"].shape[0])
        self.log("loss", terms["loss"].detach(), prog_bar=True, batch_size=batch["pixels"].shape[0])
        return terms["loss"]

    def configure_optimizers(self):
        train = self.cfg.train
        encoders, rest = self.model.parameter_groups()
        groups = []
        for params, lr in ((encoders, train.lr), (rest, train.lr * train.head_lr_multiplier)):
            decay = [p for p in params if p.ndim >= 2]
            no_decay = [p for p in params if p.ndim < 2]  # biases, norms, tokens
            groups += [{"params": decay, "lr": lr, "weight_decay": train.weight_decay},
                       {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(train.warmup_steps, train.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def warmup_cosine(warmup: int, total: int):
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor
