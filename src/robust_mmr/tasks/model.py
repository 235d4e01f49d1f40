"""A classifier on the fused pair feature: VQA over an answer vocabulary, or image–text classification."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robust_mmr.model.mmr_model import FusedOutput, MMRModel

FEATURES = ("pooled", "mean", "attention")


def pair_features(fused: FusedOutput, kind: str) -> Tensor:
    """The classifier's input, (B, 2D): ``pooled`` — the tanh pooler on both CLS tokens (M3AE's VQA
    head input, trained with the task); ``mean`` — the mean of each stream's valid tokens after the last
    fusion layer (the probe's input: no pre-training method trains the pooler or the CLS tokens on
    purpose, so a frozen backbone is read where every method puts its information). ``attention`` is read by
    :class:`PairClassifier` itself (:class:`AttentionPool` per stream)."""
    if kind == "pooled":
        return fused.pooled
    features = fused.mean_pair()
    return nn.functional.layer_norm(features, features.shape[-1:])


class AttentionPool(nn.Module):
    """A learned query attending over a stream's valid tokens: (B, L, D), (B, L) bool → (B, D). Lets a head
    read every fused image token rather than one pooled summary."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, states: Tensor, valid: Tensor) -> Tensor:
        query = self.query.expand(len(states), -1, -1).to(states.dtype)
        pooled, _ = self.attend(query, states, states, key_padding_mask=~valid, need_weights=False)
        return self.norm(pooled[:, 0])


class PairClassifier(nn.Module):
    """Backbone + MLP head (M3AE's VQA head shape: Linear → LayerNorm → GELU → Linear).

    forward: pixels (B, C, H, W), input_ids, attention_mask (B, L), optional drop flags (B,) →
    logits (B, num_classes). ``features`` picks the head's input (:func:`pair_features`). A ``blind``
    classifier never reads ``pixels``: its image stream is always the backbone's missing-image token (the
    trained blind baseline: the same recipe with the image removed in training and at test).
    """

    def __init__(self, backbone: MMRModel, num_classes: int, features: str = "pooled", blind: bool = False):
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features {features!r}: choose one of {', '.join(FEATURES)}")
        self.backbone, self.features, self.blind = backbone, features, blind
        hidden = backbone.cfg.fusion.hidden
        self.pools = nn.ModuleList([AttentionPool(hidden, backbone.cfg.fusion.heads) for _ in range(2)]) \
            if features == "attention" else None
        dim = 2 * hidden
        self.head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, num_classes))

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor, drop_image: Tensor | None = None,
                drop_text: Tensor | None = None) -> Tensor:
        if self.blind:
            return self.classify(self.fuse_blind(input_ids, attention_mask, drop_text))
        return self.classify(self.backbone(pixels, input_ids, attention_mask, drop_image=drop_image, drop_text=drop_text))

    def fuse_blind(self, input_ids: Tensor, attention_mask: Tensor, drop_text: Tensor | None = None) -> FusedOutput:
        """The fused pair with the image stream replaced by the missing-image token; no pixel is read."""
        text, text_valid = self.backbone.encode_text(input_ids, attention_mask)
        return self.backbone.fuse(*self.no_image(len(text), text), text, text_valid,
                                  torch.ones(len(text), dtype=torch.bool, device=text.device), drop_text)

    def no_image(self, batch: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """A placeholder image stream, (B, 1, D) zeros and (B, 1) valid, for ``fuse`` to replace by the missing token."""
        return (like.new_zeros(batch, 1, like.shape[-1]),
                torch.ones(batch, 1, dtype=torch.bool, device=like.device))

    def classify(self, fused: FusedOutput) -> Tensor:
        if self.pools is not None:
            features = torch.cat([self.pools[0](fused.image_layers[-1], fused.image_valid),
                                  self.pools[1](fused.text_layers[-1], fused.text_valid)], dim=-1)
            return self.head(features)
        return self.head(pair_features(fused, self.features))

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters this task adds (trained at the head learning rate)."""
        return list(self.head.parameters()) + (list(self.pools.parameters()) if self.pools is not None else [])
