"""Vision encoder: a Hugging Face ViT that encodes only the visible patches (MAE-style).

Patches are embedded with their position embeddings *before* masking, so the encoder sees a
subset of tokens in any order; the keep indices tell the MIM decoder where each token belongs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import ViTConfig, ViTModel

from robust_mmr.config import EncoderConfig


def build_vit(cfg: EncoderConfig, image_size: int, patch_size: int, channels: int) -> ViTModel:
    """A ViT from ``cfg.init``: ``scratch`` builds from the sizes, anything else is a path or hub id."""
    if cfg.init == "scratch":
        config = ViTConfig(
            hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
            intermediate_size=cfg.hidden * cfg.mlp_ratio, image_size=image_size, patch_size=patch_size,
            num_channels=channels, qkv_bias=True,
        )
        return ViTModel(config, add_pooling_layer=False)
    return ViTModel.from_pretrained(cfg.init, add_pooling_layer=False)  # never trust_remote_code


PATCH_STEMS = ("linear", "conv")


class PatchConvStem(nn.Module):
    """A convolutional patch embedding that never looks across patches, so masking patches stays valid for MIM.

    Each P×P patch is embedded on its own: three 3×3 convolutions of stride 2 (zero padding at the *patch*
    border, GELU between) shrink it to (P/8)², then a linear layer maps the flattened map to the width D.
    Early convolutions give a ViT trained from small data the local inductive bias it lacks (Xiao et al. 2021,
    "Early convolutions help transformers see better"); a stem over the whole image would let the pixels of a
    masked patch leak into its visible neighbours' tokens.

    Shapes: (B, C, H, W) → (B, N, D) with N = (H / P) · (W / P), patches in row-major order (as the ViT's).
    """

    def __init__(self, channels: int, patch_size: int, hidden: int, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        if patch_size % 8:
            raise ValueError(f"the conv stem needs a patch size divisible by 8, got {patch_size}")
        layers, c = [], channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1)] + ([nn.GELU()] if i < len(widths) - 1 else [])
            c = w
        self.convs = nn.Sequential(*layers)
        self.patch_size = patch_size
        self.project = nn.Linear(c * (patch_size // 8) ** 2, hidden)

    def forward(self, pixels: Tensor) -> Tensor:
        b, c, h, w = pixels.shape
        p = self.patch_size
        patches = pixels.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/P, W/P, P, P)
        n = patches.shape[2] * patches.shape[3]
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b * n, c, p, p)
        return self.project(self.convs(patches).flatten(1)).view(b, n, -1)


class VisionEncoder(nn.Module):
    """Encodes the visible patches of an image batch.

    Shapes: pixels (B, C, H, W) in [0, 1]; keep (B, K) patch indices in [0, N); keep_valid (B, K)
    bool (False = padding when samples keep different counts). Output (B, 1 + K, D) with the CLS
    token first, and its key-padding mask (B, 1 + K). ``stem``: the ViT's linear patch embedding, or
    :class:`PatchConvStem`.
    """

    def __init__(self, vit: ViTModel, stem: str = "linear"):
        super().__init__()
        if stem not in PATCH_STEMS:
            raise ValueError(f"patch stem {stem!r}: choose one of {', '.join(PATCH_STEMS)}")
        self.vit = vit
        self.hidden = vit.config.hidden_size
        self.patch_size = vit.config.patch_size
        self.channels = vit.config.num_channels
        self.num_patches = vit.embeddings.patch_embeddings.num_patches
        self.conv_stem = PatchConvStem(self.channels, self.patch_size, self.hidden) if stem == "conv" else None

    def patch_tokens(self, pixels: Tensor) -> Tensor:
        """All patch embeddings with positions, (B, N, D)."""
        x = (pixels - 0.5) / 0.5
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)  # grayscale into an RGB backbone
        tokens = self.conv_stem(x) if self.conv_stem is not None else self.vit.embeddings.patch_embeddings(x)
        return tokens + self.vit.embeddings.position_embeddings[:, 1:]

    def forward(self, pixels: Tensor, keep: Tensor | None = None, keep_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        tokens = self.patch_tokens(pixels)
        b = tokens.shape[0]
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device) if keep_valid is None else keep_valid
        cls = self.vit.embeddings.cls_token + self.vit.embeddings.position_embeddings[:, :1]
        hidden = torch.cat([cls.expand(b, -1, -1), tokens], dim=1)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=valid.device), valid], dim=1)
        bias = additive_mask(valid, hidden.dtype)
        for layer in self.vit.layers:
            hidden = layer(hidden, attention_mask=bias)
        return self.vit.layernorm(hidden), valid


def additive_mask(valid: Tensor, dtype: torch.dtype) -> Tensor:
    """Key-padding mask (B, L) bool → additive attention bias (B, 1, 1, L): 0 or a large negative."""
    return (~valid).to(dtype)[:, None, None, :] * torch.finfo(dtype).min
