"""The three pre-training methods as one objective module returning a dict of named loss terms.

Every method makes two fused passes per sample per step, so equal steps are equal compute:

- ``mmr`` (vanilla, M3AE): MIM + MLM (+ ITM) on the clean pair, twice with independent masks;
- ``mmr-aug`` (the control): MIM + MLM on the clean pair and on the perturbed view, the
  perturbation used as plain augmentation (the perturbed view reconstructs itself);
- ``robust-mmr`` (DESIGN §1.2): clean pass v0 plus the perturbed view v1 with
  1. perturbation-aware masking and clean targets (``aware_masking``),
  2. domain-consistency InfoNCE between g(v0) and g(v1), + optional CORAL (``domain_consistency``),
  3. modality resilience: a modality of v1 dropped with ``drop_prob``, its g pulled to g(v0)
     (``modality_resilience``).
  With a component switched off its term is absent from the dict and v1 falls back to mmr-aug's
  treatment for that part.

Batch keys (built by :class:`robust_mmr.training.data.PretrainCollator`):
``pixels`` (B, C, H, W) in [0, 1]; ``input_ids``, ``attention_mask``, ``maskable`` (B, L);
``pert_input_ids``, ``pert_attention_mask``, ``pert_maskable``, ``pert_targets``, ``text_altered`` (B, L);
``perturb_image``, ``perturb_text`` (B,) bool; ``domain`` (B,) long (-1 unknown).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robust_mmr.config import ObjectiveConfig
from robust_mmr.model.mmr_model import FusedOutput, MMRModel
from robust_mmr.objectives.losses import coral_loss, info_nce, mim_loss, mlm_loss, resilience_loss
from robust_mmr.objectives.masking import (
    PatchMask,
    damage_rank,
    keep_count,
    mask_patches,
    mask_tokens,
    normalized_patches,
    patchify,
)
from robust_mmr.perturbations.image.api import corrupt_batch, sample_training_corruptions

METHODS = ("mmr", "mmr-aug", "robust-mmr")


class PretrainObjective(nn.Module):
    def __init__(self, model: MMRModel, cfg: ObjectiveConfig, mask_token_id: int, vocab_size: int):
        super().__init__()
        if cfg.method not in METHODS:
            raise ValueError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
        self.model = model
        self.cfg = cfg
        self.mask_token_id = mask_token_id
        self.vocab_size = vocab_size
        self.patch = model.cfg.patch_size

    @property
    def uses_perturbed_view(self) -> bool:
        return self.cfg.method != "mmr"

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        cfg = self.cfg
        pixels = batch["pixels"]
        b = pixels.shape[0]
        clean_targets = normalized_patches(pixels, self.patch)
        n = clean_targets.shape[1]
        base_keep = torch.full((b,), keep_count(n, cfg.image_mask_ratio), device=pixels.device)

        # v0: the clean pair.
        mask0 = mask_patches(torch.rand(b, n, generator=generator, device=pixels.device), base_keep)
        ids0, labels0 = mask_tokens(batch["input_ids"], batch["maskable"], cfg.text_mask_prob,
                                    self.mask_token_id, self.vocab_size, generator)
        out0 = self.model(pixels, ids0, batch["attention_mask"], mask0.keep, mask0.keep_valid)
        terms = {"mim": self._mim(out0, mask0, clean_targets), "mlm": self._mlm(out0, labels0)}
        if cfg.itm_weight > 0:
            terms["itm"] = self._itm(pixels, batch, generator)

        if cfg.method == "mmr":  # a second, independently masked clean pass: equal compute
            mask1 = mask_patches(torch.rand(b, n, generator=generator, device=pixels.device), base_keep)
            ids1, labels1 = mask_tokens(batch["input_ids"], batch["maskable"], cfg.text_mask_prob,
                                        self.mask_token_id, self.vocab_size, generator)
            out1 = self.model(pixels, ids1, batch["attention_mask"], mask1.keep, mask1.keep_valid)
            terms["mim_v1"], terms["mlm_v1"] = self._mim(out1, mask1, clean_targets), self._mlm(out1, labels1)
            return self._total(terms)

        # v1: the perturbed view (image corruptions on device; text perturbed by the collator).
        names, severities = sample_training_corruptions(b, cfg.modality, generator)
        names = [name if flag else None for name, flag in zip(names, batch["perturb_image"].tolist())]
        with torch.autocast(pixels.device.type, enabled=False):  # corruptions run in the pixels' own dtype
            pert_pixels = corrupt_batch(pixels, names, severities, generator)
        robust = cfg.method == "robust-mmr"
        aware = robust and cfg.aware_masking
        mask1 = self._perturbed_view_mask(pixels, pert_pixels, batch, aware, generator)
        text_prob = self._perturbed_view_text_prob(batch, aware)
        ids1, labels1 = mask_tokens(batch["pert_input_ids"], batch["pert_maskable"], text_prob,
                                    self.mask_token_id, self.vocab_size, generator)
        if aware:  # predict the clean tokens where the perturbation kept word alignment
            labels1 = torch.where(labels1 >= 0, batch["pert_targets"], labels1)
        drop_image = drop_text = None
        if robust and cfg.modality_resilience:
            drop = torch.rand(b, generator=generator, device=pixels.device) < cfg.drop_prob
            which = torch.rand(b, generator=generator, device=pixels.device) < 0.5
            drop_image, drop_text = drop & which, drop & ~which
        out1 = self.model(pert_pixels, ids1, batch["pert_attention_mask"], mask1.keep, mask1.keep_valid,
                          drop_image, drop_text)
        v1_targets = clean_targets if aware else normalized_patches(pert_pixels, self.patch)
        keep_image = None if drop_image is None else ~drop_image
        if drop_text is not None:
            labels1 = torch.where(drop_text[:, None], torch.full_like(labels1, -100), labels1)
        terms["mim_v1"] = self._mim(out1, mask1, v1_targets, keep_image)
        terms["mlm_v1"] = self._mlm(out1, labels1)
        if not robust:
            return self._total(terms)

        g0, g1 = self.model.projection(out0.pooled), self.model.projection(out1.pooled)
        full = torch.ones(b, dtype=torch.bool, device=pixels.device)
        if drop_image is not None:
            full = ~(drop_image | drop_text)
            terms["mr"] = resilience_loss(g1[~full], g0[~full]) if (~full).any() else g1.sum() * 0.0
        if cfg.domain_consistency:
            terms["dc"] = info_nce(g0[full], g1[full], cfg.dc_temperature)
            if cfg.coral_key and cfg.coral_weight > 0:
                terms["coral"] = coral_loss(torch.cat([g0, g1]), torch.cat([batch["domain"], batch["domain"]]))
        return self._total(terms)

    def _perturbed_view_mask(self, pixels: Tensor, pert_pixels: Tensor, batch: dict[str, Tensor], aware: bool,
                             generator: torch.Generator) -> PatchMask:
        """Random masking; with ``aware``, damaged patches masked first and a clean image masked less."""
        b = pixels.shape[0]
        clean_patches, pert_patches = patchify(pixels, self.patch), patchify(pert_pixels, self.patch)
        n = clean_patches.shape[1]
        noise = torch.rand(b, n, generator=generator, device=pixels.device)
        ratio = self.cfg.image_mask_ratio
        keep = torch.full((b,), keep_count(n, ratio), device=pixels.device)
        if aware:
            hit = batch["perturb_image"]
            noise = noise + self.cfg.aware_beta * damage_rank(clean_patches, pert_patches) * hit[:, None]
            keep = torch.where(hit, keep, torch.full_like(keep, keep_count(n, ratio * self.cfg.clean_mask_scale)))
        return mask_patches(noise, keep)

    def _perturbed_view_text_prob(self, batch: dict[str, Tensor], aware: bool) -> Tensor | float:
        """Per-token mask probability of v1's text: altered tokens boosted, a clean text masked less."""
        p = self.cfg.text_mask_prob
        if not aware:
            return p
        prob = torch.where(batch["text_altered"], min(1.0, p * self.cfg.altered_token_boost), p)
        clean_text = ~batch["perturb_text"]
        return torch.where(clean_text[:, None], p * self.cfg.clean_mask_scale, prob)

    def _mim(self, out: FusedOutput, mask: PatchMask, targets: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        stream = out.image_layers[self.model.cfg.decoder.read_layer - 1]
        pred = self.model.mim_decoder(stream, mask.keep, mask.keep_valid)
        return mim_loss(pred, targets, mask.masked, sample_weight)

    def _mlm(self, out: FusedOutput, labels: Tensor) -> Tensor:
        chosen = labels >= 0
        return mlm_loss(self.model.mlm_head(out.text_layers[-1][chosen]), labels[chosen])

    def _itm(self, pixels: Tensor, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        """Image–text matching on the unmasked pair: half the rows get another sample's text."""
        b = pixels.shape[0]
        swap = torch.rand(b, generator=generator, device=pixels.device) < 0.5
        partner = torch.roll(torch.arange(b, device=pixels.device), 1)
        ids = torch.where(swap[:, None], batch["input_ids"][partner], batch["input_ids"])
        att = torch.where(swap[:, None], batch["attention_mask"][partner], batch["attention_mask"])
        pooled = self.model(pixels, ids, att).pooled
        return nn.functional.cross_entropy(self.model.itm_head(pooled).float(), (~swap).long())

    def _total(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        weights = {"dc": self.cfg.dc_weight, "mr": self.cfg.mr_weight, "coral": self.cfg.coral_weight,
                   "itm": self.cfg.itm_weight}
        terms["loss"] = sum(weights.get(name, 1.0) * value for name, value in terms.items())
        return terms
