"""A classifier on the fused pair feature: VQA over an answer vocabulary, or image–text classification."""

from __future__ import annotations

from torch import Tensor, nn

from robust_mmr.model.mmr_model import FusedOutput, MMRModel

FEATURES = ("pooled", "mean")


def pair_features(fused: FusedOutput, kind: str) -> Tensor:
    """The classifier's input, (B, 2D): ``pooled`` — the tanh pooler on both CLS tokens (M3AE's VQA
    head input, trained with the task); ``mean`` — the mean of each stream's valid tokens after the last
    fusion layer (the probe's input: no pre-training method trains the pooler or the CLS tokens on
    purpose, so a frozen backbone is read where every method puts its information)."""
    if kind == "pooled":
        return fused.pooled
    features = fused.mean_pair()
    return nn.functional.layer_norm(features, features.shape[-1:])


class PairClassifier(nn.Module):
    """Backbone + MLP head (M3AE's VQA head shape: Linear → LayerNorm → GELU → Linear).

    forward: pixels (B, C, H, W), input_ids, attention_mask (B, L), optional drop flags (B,) →
    logits (B, num_classes). ``features`` picks the head's input (:func:`pair_features`).
    """

    def __init__(self, backbone: MMRModel, num_classes: int, features: str = "pooled"):
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features {features!r}: choose one of {', '.join(FEATURES)}")
        self.backbone, self.features = backbone, features
        dim = 2 * backbone.cfg.fusion.hidden
        self.head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, num_classes))

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor, drop_image: Tensor | None = None,
                drop_text: Tensor | None = None) -> Tensor:
        return self.classify(self.backbone(pixels, input_ids, attention_mask, drop_image=drop_image, drop_text=drop_text))

    def classify(self, fused: FusedOutput) -> Tensor:
        return self.head(pair_features(fused, self.features))

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters this task adds (trained at the head learning rate)."""
        return list(self.head.parameters())
