"""Retrieval fine-tuning LightningModule: symmetric InfoNCE (+ hard-negative ITM when the backbone has an
ITM head), scored by the validation R@1 averaged over both directions (the shared base keeps the best
epoch). For the probe, batches carry cached unimodal features (``image_feature``, ``text_feature``) and
only the ITC projections and the temperature train. On several devices the ITC negatives are every
process's pairs (``itc_local_loss``; :func:`~robust_mmr.objectives.losses.global_info_nce`), as on one
device with the global batch; the ITM hard negatives are drawn from the process's own batch."""

from __future__ import annotations

import torch

from robust_mmr.evaluation.ranking import both_directions, group_images, retrieval_ranks
from robust_mmr.objectives.losses import global_info_nce
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.module import FinetuneModule
from robust_mmr.tasks.retrieval_model import RetrievalModel


class RetrievalModule(FinetuneModule):
    def __init__(self, model: RetrievalModel, cfg: FinetuneConfig, steps_per_epoch: int):
        super().__init__(model, cfg, steps_per_epoch)
        self._val: list[tuple[torch.Tensor, torch.Tensor, list[str]]] = []

    def embeddings(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, dim) image and caption unit vectors of a batch (pixels + tokens, or cached features)."""
        if "image_feature" in batch:
            return self.model.project_image(batch["image_feature"]), self.model.project_text(batch["text_feature"])
        return self.model.embed(batch["pixels"], batch["input_ids"], batch["attention_mask"])

    def itc(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE at the learned temperature, row i of each (B, dim) matrix the pair, every process's
        rows the negatives (one device: exactly ``RetrievalModel.itc_loss``)."""
        return global_info_nce(image_emb, text_emb, 1.0 / self.model.logit_scale(), self.cfg.itc_local_loss)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Named loss terms of a batch and their sum, ``loss``."""
        if "image_feature" in batch or not self.model.has_itm:
            return {"itc": (itc := self.itc(*self.embeddings(batch))), "loss": itc}
        backbone = self.model.backbone
        image, image_valid = backbone.encode_image(batch["pixels"])
        text, text_valid = backbone.encode_text(batch["input_ids"], batch["attention_mask"])
        image_emb, text_emb = self.model.image_embedding(image), self.model.text_embedding(text, text_valid)
        terms = {"itc": self.itc(image_emb, text_emb)}
        logits = (self.model.logit_scale() * image_emb @ text_emb.T).detach()
        terms["itm"] = self.model.itm_loss(image, image_valid, text, text_valid, logits)
        terms["loss"] = terms["itc"] + terms["itm"]
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch)
        size = len(batch["images"])
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=size)
        self.log("train/temperature", 1.0 / self.model.logit_scale().detach(), batch_size=size)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        image_emb, text_emb = self.embeddings(batch)
        self._val.append((image_emb.cpu(), text_emb.cpu(), list(batch["images"])))

    def validation_score(self) -> float:
        if not self._val:
            return 0.0
        image_emb, text_emb = torch.cat([v[0] for v in self._val]), torch.cat([v[1] for v in self._val])
        first, text_image = group_images([key for v in self._val for key in v[2]])
        self._val.clear()
        metrics = both_directions(retrieval_ranks(image_emb[first], text_emb, text_image))
        self.log("val/mean_rank", metrics["mean_rank"], sync_dist=self.trainer.world_size > 1)  # same everywhere
        return metrics["r1"]
