"""Fine-tuning LightningModule for classifier tasks; keeps the weights of the best validation epoch."""

from __future__ import annotations

import copy

import lightning as L
import torch
import torch.nn.functional as F

from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.model import PairClassifier
from robust_mmr.training.module import warmup_cosine


class FinetuneModule(L.LightningModule):
    def __init__(self, model: PairClassifier, cfg: FinetuneConfig, total_steps: int):
        super().__init__()
        self.model, self.cfg, self.total_steps = model, cfg, total_steps
        self.best_accuracy = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self._val_hits: list[torch.Tensor] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["pixels"], batch["input_ids"], batch["attention_mask"])
        known = batch["labels"] >= 0  # answers outside the vocabulary cannot be learned
        loss = F.cross_entropy(logits[known].float(), batch["labels"][known]) if known.any() else logits.sum() * 0
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.model(batch["pixels"], batch["input_ids"], batch["attention_mask"])
        self._val_hits.append((logits.argmax(-1) == batch["labels"]).cpu())

    def on_validation_epoch_end(self) -> None:
        accuracy = torch.cat(self._val_hits).float().mean().item() if self._val_hits else 0.0
        self._val_hits.clear()
        self.log("val/acc", accuracy, prog_bar=True)
        if accuracy > self.best_accuracy and not self.trainer.sanity_checking:
            self.best_accuracy = accuracy
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def configure_optimizers(self):
        cfg = self.cfg
        head = list(self.model.head.parameters())
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.model.parameters() if id(p) not in head_ids]
        optimizer = torch.optim.AdamW([
            {"params": backbone, "lr": cfg.lr},
            {"params": head, "lr": cfg.lr * cfg.head_lr_multiplier},
        ], weight_decay=cfg.weight_decay)
        warmup = int(cfg.warmup_fraction * self.total_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, self.total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
