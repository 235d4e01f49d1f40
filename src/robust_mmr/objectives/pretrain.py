"""The three pre-training methods as one objective module returning a dict of named loss terms.

Every method makes two fused passes per sample per step, so equal steps are equal compute:

- ``mmr`` (vanilla, M3AE): MIM + MLM (+ ITM) on the clean pair, twice with independent masks;
- ``mmr-aug`` (the control): MIM + MLM on the clean pair and on the perturbed view, the
  perturbation used as plain augmentation (the perturbed view reconstructs itself);
- ``robust-mmr`` (DESIGN §1.2): the clean pass v0 plus the perturbed view v1
  (:mod:`robust_mmr.objectives.views`) with
  1. perturbation-aware masking and clean targets (``aware_masking``),
  2. ``domain_consistency``: symmetric InfoNCE between g(v0) and g(v1) per modality, on each
     encoder's own tokens, with the global batch of a distributed run as negatives (+ optional CORAL
     over a meta key, on the process's own batch),
  3. ``modality_resilience``: a modality of v1 dropped with ``drop_prob``; g of its fused pair
     pulled to stop_grad(g(v0)).
  With a component switched off its term is absent from the dict and v1 falls back to mmr-aug's
  treatment for that part.

One batch, collator → objective → model → losses: :class:`~robust_mmr.objectives.batch.PretrainBatch`
→ :meth:`PretrainObjective.forward` (``clean_pass``, then ``second_clean_pass`` or ``perturbed_pass``
and ``invariance_terms``) → :class:`~robust_mmr.model.mmr_model.MMRModel` (``encode_image``,
``encode_text``, ``fuse``) → :mod:`robust_mmr.objectives.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robust_mmr.config import METHODS, ObjectiveConfig
from robust_mmr.model.mmr_model import FusedOutput, MMRModel, mean_tokens
from robust_mmr.objectives.batch import PretrainBatch
from robust_mmr.objectives.losses import coral_loss, global_info_nce, mim_loss, mlm_loss, resilience_loss
from robust_mmr.objectives.masking import PatchMask, keep_count, mask_patches, mask_tokens, normalized_patches
from robust_mmr.objectives.views import perturbed_image_mask, perturbed_images, text_mask_prob, uses_aware_masking

WEIGHT_OF = {"domain_consistency": "dc_weight", "modality_resilience": "mr_weight", "coral": "coral_weight",
             "itm": "itm_weight"}  # loss term → its ObjectiveConfig weight (other terms weigh 1)


@dataclass
class Pass:
    """One fused pass: the unimodal tokens fed to fusion (image (B, 1 + K, D), text (B, L, D), with their
    validity) and the fused output."""

    image: Tensor
    image_valid: Tensor
    text: Tensor
    text_valid: Tensor
    fused: FusedOutput


class PretrainObjective(nn.Module):
    def __init__(self, model: MMRModel, cfg: ObjectiveConfig, mask_token_id: int, vocab_size: int):
        super().__init__()
        if cfg.method not in METHODS:
            raise ValueError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
        self.model, self.cfg = model, cfg
        self.mask_token_id, self.vocab_size = mask_token_id, vocab_size
        self.patch = model.cfg.patch_size

    def forward(self, batch: PretrainBatch, generator: torch.Generator) -> dict[str, Tensor]:
        """Named loss terms and their weighted sum ``loss`` for one batch."""
        clean_targets = normalized_patches(batch.pixels, self.patch)
        terms: dict[str, Tensor] = {}
        v0 = self.clean_pass(batch, clean_targets, generator, terms)
        if self.cfg.itm_weight > 0:
            terms["itm"] = self.itm(batch, generator)
        if self.cfg.method == "mmr":
            self.clean_pass(batch, clean_targets, generator, terms, suffix="_v1")
        else:
            v1, dropped = self.perturbed_pass(batch, clean_targets, generator, terms)
            if self.cfg.method == "robust-mmr":
                terms.update(self.invariance_terms(batch, v0, v1, dropped))
        terms["loss"] = sum((getattr(self.cfg, WEIGHT_OF[k]) if k in WEIGHT_OF else 1.0) * v for k, v in terms.items()
                            if k != "loss")
        return terms

    def clean_pass(self, batch: PretrainBatch, clean_targets: Tensor, generator: torch.Generator,
                   terms: dict[str, Tensor], suffix: str = "") -> Pass:
        """The clean pair with random masks (MAE image masking, BERT text masking): ``mim``, ``mlm``."""
        b, n = clean_targets.shape[:2]
        keep = torch.full((b,), keep_count(n, self.cfg.image_mask_ratio), device=batch.pixels.device)
        mask = mask_patches(torch.rand(b, n, generator=generator, device=batch.pixels.device), keep)
        ids, labels = mask_tokens(batch.input_ids, batch.maskable, self.cfg.text_mask_prob, self.mask_token_id,
                                  self.vocab_size, generator)
        out = self.encode_and_fuse(batch.pixels, mask, ids, batch.attention_mask)
        terms["mim" + suffix] = self.mim(out.fused, mask, clean_targets)
        terms["mlm" + suffix] = self.mlm(out.fused, labels)
        return out

    def perturbed_pass(self, batch: PretrainBatch, clean_targets: Tensor, generator: torch.Generator,
                       terms: dict[str, Tensor]) -> tuple[Pass, tuple[Tensor, Tensor] | None]:
        """v1: the perturbed view, reconstructing the clean signal when aware, itself otherwise:
        ``mim_v1``, ``mlm_v1``. Returns the pass and, with modality resilience, the (B,) drop flags."""
        view, cfg = batch.view, self.cfg
        pert_pixels = perturbed_images(batch.pixels, view.perturb_image, cfg, generator)
        mask = perturbed_image_mask(batch.pixels, pert_pixels, view.perturb_image, cfg, self.patch, generator)
        ids, labels = mask_tokens(view.input_ids, view.maskable, text_mask_prob(cfg, view.perturb_text),
                                  self.mask_token_id, self.vocab_size, generator)
        labels = torch.where(view.targets >= 0, view.targets, labels)  # pre-masked altered words: clean pieces
        dropped = self.draw_dropped_modality(batch.size, generator)
        out = self.encode_and_fuse(pert_pixels, mask, ids, view.attention_mask, *(dropped or (None, None)))
        targets = clean_targets if uses_aware_masking(cfg) else normalized_patches(pert_pixels, self.patch)
        keep_image = None
        if dropped is not None:  # a removed modality has nothing to reconstruct
            keep_image = ~dropped[0]
            labels = torch.where(dropped[1][:, None], torch.full_like(labels, -100), labels)
        terms["mim_v1"] = self.mim(out.fused, mask, targets, keep_image)
        terms["mlm_v1"] = self.mlm(out.fused, labels)
        return out, dropped

    def draw_dropped_modality(self, b: int, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
        """Modality resilience's drop: (drop_image, drop_text) (B,) bool, at most one per row, or None."""
        if not (self.cfg.method == "robust-mmr" and self.cfg.modality_resilience):
            return None
        device = generator.device
        drop = torch.rand(b, generator=generator, device=device) < self.cfg.drop_prob
        image = torch.rand(b, generator=generator, device=device) < 0.5
        return drop & image, drop & ~image

    def invariance_terms(self, batch: PretrainBatch, v0: Pass, v1: Pass,
                         dropped: tuple[Tensor, Tensor] | None) -> dict[str, Tensor]:
        """Robust-MMR's components 2 and 3 on the invariance projections g (never the pooler).

        ``domain_consistency``: InfoNCE between the two views of each study, per modality, on the
        encoders' own mean tokens (an image can only be matched by its image, a report by its text), the
        mean of the image and text terms; every row counts, so the term is defined for any batch. With
        several processes the negatives are every process's rows (``dc_local_loss``: this process's queries
        against them; :func:`~robust_mmr.objectives.losses.global_info_nce`), so loss and gradients equal
        one process with the global batch; with one process it is the plain InfoNCE.
        ``modality_resilience``: 1 − cos(g(v1 with a modality removed), stop_grad(g(v0))) on the fused
        pair, over the rows that dropped one (0 when none did).
        """
        g, cfg, out = self.model.projection, self.cfg, {}
        if cfg.domain_consistency:
            image0, image1 = (g.image(mean_tokens(v.image, v.image_valid)) for v in (v0, v1))
            text0, text1 = (g.text(mean_tokens(v.text, v.text_valid)) for v in (v0, v1))
            t, local = cfg.dc_temperature, cfg.dc_local_loss
            out["domain_consistency"] = 0.5 * (global_info_nce(image0, image1, t, local)
                                               + global_info_nce(text0, text1, t, local))
            if cfg.coral_key and cfg.coral_weight > 0:
                out["coral"] = coral_loss(torch.cat([image0, image1]), torch.cat([batch.domain, batch.domain]))
        if dropped is not None:
            partial = dropped[0] | dropped[1]
            pair0, pair1 = (g.pair(v.fused.mean_pair()) for v in (v0, v1))
            out["modality_resilience"] = (resilience_loss(pair1[partial], pair0[partial]) if partial.any()
                                          else pair1.sum() * 0.0)
        return out

    def encode_and_fuse(self, pixels: Tensor, mask: PatchMask, ids: Tensor, attention: Tensor,
                        drop_image: Tensor | None = None, drop_text: Tensor | None = None) -> Pass:
        image, image_valid = self.model.encode_image(pixels, mask.keep, mask.keep_valid)
        text, text_valid = self.model.encode_text(ids, attention)
        fused = self.model.fuse(image, image_valid, text, text_valid, drop_image, drop_text)
        return Pass(image, image_valid, text, text_valid, fused)

    def mim(self, out: FusedOutput, mask: PatchMask, targets: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """MIM from the decoder's fusion layer: MSE on the masked patches (rows with weight 0 left out)."""
        stream = out.image_layers[self.model.cfg.decoder.read_layer - 1]
        pred = self.model.mim_decoder(stream, mask.keep, mask.keep_valid)
        return mim_loss(pred, targets, mask.masked, sample_weight)

    def mlm(self, out: FusedOutput, labels: Tensor) -> Tensor:
        """MLM on the last fusion layer's text stream at the positions with a label."""
        chosen = labels >= 0
        return mlm_loss(self.model.mlm_head(out.text_layers[-1][chosen]), labels[chosen])

    def itm(self, batch: PretrainBatch, generator: torch.Generator) -> Tensor:
        """Image–text matching on the unmasked pair: half the rows get another sample's text."""
        b, device = batch.size, batch.pixels.device
        swap = torch.rand(b, generator=generator, device=device) < 0.5
        partner = torch.roll(torch.arange(b, device=device), 1)
        ids = torch.where(swap[:, None], batch.input_ids[partner], batch.input_ids)
        att = torch.where(swap[:, None], batch.attention_mask[partner], batch.attention_mask)
        pooled = self.model(batch.pixels, ids, att).pooled
        return nn.functional.cross_entropy(self.model.itm_head(pooled).float(), (~swap).long())

