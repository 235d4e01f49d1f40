"""Co-attention fusion: two streams updated in parallel, layer by layer (M3AE / METER style).

Each layer, for each stream: self-attention → cross-attention to the *other stream's input to the
layer* → feed-forward, all pre-norm with residuals. Both streams read the same snapshot, so the
update is symmetric in the two modalities.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention. query (B, Lq, D), context (B, Lk, D), key_valid (B, Lk) bool → (B, Lq, D)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: Tensor, context: Tensor, key_valid: Tensor) -> Tensor:
        b, lq, d = query.shape
        q = self.q(query).view(b, lq, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_valid[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(b, lq, d))


class Block(nn.Module):
    """Pre-norm transformer block with optional cross-attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, cross: bool = False):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim) if cross else None
        self.cross_attn = Attention(dim, heads) if cross else None
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: Tensor, valid: Tensor, other: Tensor | None = None, other_valid: Tensor | None = None) -> Tensor:
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, valid)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm_cross(x), other, other_valid)
        return x + self.mlp(self.norm_mlp(x))


class CoAttentionLayer(nn.Module):
    """One fusion layer: image stream (B, Li, D) and text stream (B, Lt, D) → both updated."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.image_block = Block(dim, heads, mlp_ratio, cross=True)
        self.text_block = Block(dim, heads, mlp_ratio, cross=True)

    def forward(self, image: Tensor, image_valid: Tensor, text: Tensor, text_valid: Tensor) -> tuple[Tensor, Tensor]:
        new_image = self.image_block(image, image_valid, text, text_valid)
        new_text = self.text_block(text, text_valid, image, image_valid)
        return new_image, new_text


class Fusion(nn.Module):
    """Stacked co-attention layers; returns every layer's streams so heads can read any depth."""

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: int):
        super().__init__()
        self.layers = nn.ModuleList(CoAttentionLayer(dim, heads, mlp_ratio) for _ in range(layers))
        self.final_norm_image = nn.LayerNorm(dim)
        self.final_norm_text = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_valid: Tensor, text: Tensor, text_valid: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Returns lists of image (B, Li, D) and text (B, Lt, D) states after layers 1..N (last one normed)."""
        images, texts = [], []
        for layer in self.layers:
            image, text = layer(image, image_valid, text, text_valid)
            images.append(image)
            texts.append(text)
        images[-1] = self.final_norm_image(images[-1])
        texts[-1] = self.final_norm_text(texts[-1])
        return images, texts
