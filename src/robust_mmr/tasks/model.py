"""A classifier on the fused pair feature: VQA over an answer vocabulary, or image–text classification."""

from __future__ import annotations

from torch import Tensor, nn

from robust_mmr.model.mmr_model import FusedOutput, MMRModel


class PairClassifier(nn.Module):
    """Backbone + MLP head (M3AE's VQA head shape: Linear → LayerNorm → GELU → Linear).

    forward: pixels (B, C, H, W), input_ids, attention_mask (B, L), optional drop flags (B,) →
    logits (B, num_classes).
    """

    def __init__(self, backbone: MMRModel, num_classes: int):
        super().__init__()
        self.backbone = backbone
        dim = 2 * backbone.cfg.fusion.hidden
        self.head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, num_classes))

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor, drop_image: Tensor | None = None,
                drop_text: Tensor | None = None) -> Tensor:
        return self.classify(self.backbone(pixels, input_ids, attention_mask, drop_image=drop_image, drop_text=drop_text))

    def classify(self, fused: FusedOutput) -> Tensor:
        return self.head(fused.pooled)
