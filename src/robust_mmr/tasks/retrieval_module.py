"""Retrieval fine-tuning LightningModule: symmetric InfoNCE (+ hard-negative ITM when the backbone has an
ITM head); model selection on the validation R@1 averaged over both directions, best weights kept."""

from __future__ import annotations

import copy

import lightning as L
import torch

from robust_mmr.evaluation.retrieval import both_directions, group_images, retrieval_ranks
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.retrieval_model import RetrievalModel
from robust_mmr.training.module import warmup_cosine


class RetrievalModule(L.LightningModule):
    def __init__(self, model: RetrievalModel, cfg: FinetuneConfig, total_steps: int):
        super().__init__()
        self.model, self.cfg, self.total_steps = model, cfg, total_steps
        self.best_recall = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self._val: list[tuple[torch.Tensor, torch.Tensor, list[str]]] = []

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Named loss terms of a batch (pixels, input_ids, attention_mask) and their sum, ``loss``."""
        backbone = self.model.backbone
        image, image_valid = backbone.encode_image(batch["pixels"])
        text, text_valid = backbone.encode_text(batch["input_ids"], batch["attention_mask"])
        image_emb, text_emb = self.model.image_embedding(image), self.model.text_embedding(text, text_valid)
        terms = {"itc": self.model.itc_loss(image_emb, text_emb)}
        if self.model.has_itm:
            logits = (self.model.logit_scale() * image_emb @ text_emb.T).detach()
            terms["itm"] = self.model.itm_loss(image, image_valid, text, text_valid, logits)
        terms["loss"] = sum(terms.values())
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch)
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=len(batch["pixels"]))
        self.log("train/temperature", 1.0 / self.model.logit_scale().detach(), batch_size=len(batch["pixels"]))
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        image_emb, text_emb = self.model.embed(batch["pixels"], batch["input_ids"], batch["attention_mask"])
        self._val.append((image_emb.cpu(), text_emb.cpu(), list(batch["images"])))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        image_emb, text_emb = torch.cat([v[0] for v in self._val]), torch.cat([v[1] for v in self._val])
        first, text_image = group_images([key for v in self._val for key in v[2]])
        self._val.clear()
        metrics = both_directions(retrieval_ranks(image_emb[first], text_emb, text_image))
        self.log("val/r1", metrics["r1"], prog_bar=True)
        self.log("val/mean_rank", metrics["mean_rank"])
        if metrics["r1"] > self.best_recall and not self.trainer.sanity_checking:
            self.best_recall = metrics["r1"]
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def configure_optimizers(self):
        cfg = self.cfg
        head = self.model.head_parameters()
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.model.parameters() if id(p) not in head_ids]
        optimizer = torch.optim.AdamW([
            {"params": backbone, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": [p for p in head if p.ndim >= 2], "lr": cfg.lr * cfg.head_lr_multiplier,
             "weight_decay": cfg.weight_decay},
            {"params": [p for p in head if p.ndim < 2], "lr": cfg.lr * cfg.head_lr_multiplier, "weight_decay": 0.0},
        ])
        warmup = int(cfg.warmup_fraction * self.total_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, self.total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
