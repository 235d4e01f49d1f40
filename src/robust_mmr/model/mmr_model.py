"""The assembled model: encoders → projections into the fusion width → co-attention → heads.

A missing modality (DESIGN §1.2, modality resilience) is a stream of one learned "missing" token;
the model accepts it in pre-training and at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robust_mmr.config import ModelConfig
from robust_mmr.data.images import pixels_to_float
from robust_mmr.model.fusion import Fusion
from robust_mmr.model.heads import InvarianceProjections, MIMDecoder, MLMHead, PairPooler
from robust_mmr.model.text import TextEncoder, build_text_model, build_tokenizer
from robust_mmr.model.vision import VisionEncoder, build_vit


@dataclass
class FusedOutput:
    """Streams after each fusion layer (1..N), their key-padding masks, and the pooled pair feature."""

    image_layers: list[Tensor]  # each (B, 1 + K, D)
    text_layers: list[Tensor]  # each (B, L, D)
    image_valid: Tensor  # (B, 1 + K) bool
    text_valid: Tensor  # (B, L) bool
    pooled: Tensor  # (B, 2D)

    def mean_pair(self) -> Tensor:
        """The mean valid token of each stream after the last layer, concatenated: (B, 2D)."""
        return torch.cat([mean_tokens(self.image_layers[-1], self.image_valid),
                          mean_tokens(self.text_layers[-1], self.text_valid)], dim=-1)


def mean_tokens(states: Tensor, valid: Tensor) -> Tensor:
    """Mean of the valid token states: (B, L, D), (B, L) bool → (B, D)."""
    weight = valid[..., None].to(states.dtype)
    return (states * weight).sum(1) / weight.sum(1).clamp_min(1.0)


class MMRModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vision = VisionEncoder(build_vit(cfg.vision, cfg.image_size, cfg.patch_size, cfg.channels), cfg.patch_stem)
        self.text = TextEncoder(build_text_model(cfg.text, vocab_size, cfg.max_text_length))
        dim = cfg.fusion.hidden
        self.image_proj = nn.Linear(self.vision.hidden, dim)
        self.text_proj = nn.Linear(self.text.hidden, dim)
        self.image_type = nn.Parameter(torch.zeros(1, 1, dim))
        self.text_type = nn.Parameter(torch.zeros(1, 1, dim))
        self.missing_image = nn.Parameter(torch.zeros(1, 1, dim))
        self.missing_text = nn.Parameter(torch.zeros(1, 1, dim))
        for p in (self.image_type, self.text_type, self.missing_image, self.missing_text):
            nn.init.normal_(p, std=0.02)
        self.fusion = Fusion(dim, cfg.fusion.heads, cfg.fusion.layers, cfg.fusion.mlp_ratio)
        self.pooler = PairPooler(dim)
        self.mlm_head = MLMHead(dim, vocab_size)
        self.mim_decoder = MIMDecoder(dim, cfg.decoder.hidden, cfg.decoder.layers, cfg.decoder.heads,
                                      self.vision.num_patches, cfg.patch_size**2 * cfg.channels)
        self.projection = InvarianceProjections(dim, cfg.projection_dim)
        self.itm_head = nn.Linear(2 * dim, 2) if cfg.itm_head else None

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor, keep: Tensor | None = None,
                keep_valid: Tensor | None = None, drop_image: Tensor | None = None,
                drop_text: Tensor | None = None) -> FusedOutput:
        """pixels (B, C, H, W) float in [0, 1] or uint8 (0–255, converted on the model's device); input_ids,
        attention_mask (B, L); keep/keep_valid (B, K) visible patches (None: all); drop_image/drop_text (B,) bool
        replace that modality by its missing token."""
        image, image_valid = self.encode_image(pixels, keep, keep_valid)
        text, text_valid = self.encode_text(input_ids, attention_mask)
        return self.fuse(image, image_valid, text, text_valid, drop_image, drop_text)

    def encode_image(self, pixels: Tensor, keep: Tensor | None = None,
                     keep_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """pixels (B, C, H, W) float in [0, 1] or uint8 → unimodal image tokens in the fusion width (B, 1 + K, D)
        and their validity (B, 1 + K). uint8 pixels (fine-tuning batches) become float here, on the device."""
        image, image_valid = self.vision(pixels_to_float(pixels), keep, keep_valid)
        return self.image_proj(image) + self.image_type, image_valid

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Unimodal text tokens in the fusion width: (B, L, D) and their validity (B, L)."""
        return self.text_proj(self.text(input_ids, attention_mask)) + self.text_type, attention_mask.bool()

    def fuse(self, image: Tensor, image_valid: Tensor, text: Tensor, text_valid: Tensor,
             drop_image: Tensor | None = None, drop_text: Tensor | None = None) -> FusedOutput:
        """Co-attention over encoded streams (so evaluation can reuse one modality's encoding)."""
        if drop_image is not None:
            image, image_valid = _replace_with_missing(image, image_valid, drop_image, self.missing_image)
        if drop_text is not None:
            text, text_valid = _replace_with_missing(text, text_valid, drop_text, self.missing_text)
        images, texts = self.fusion(image, image_valid, text, text_valid)
        return FusedOutput(images, texts, image_valid, text_valid, self.pooler(images[-1], texts[-1]))

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(encoders + the invariance projections g, fusion + reconstruction heads): the second group trains
        at ``head_lr_multiplier`` × the learning rate, the first at the base rate."""
        base_ids = {id(p) for m in (self.vision, self.text, self.projection) for p in m.parameters()}
        base = [p for p in self.parameters() if id(p) in base_ids]
        rest = [p for p in self.parameters() if id(p) not in base_ids]
        return base, rest


def _replace_with_missing(stream: Tensor, valid: Tensor, drop: Tensor, missing: Tensor) -> tuple[Tensor, Tensor]:
    """Rows where ``drop`` is True become [missing, padding...]: (B, L, D), (B, L) → same shapes."""
    first = torch.zeros_like(valid)
    first[:, 0] = True
    stream = torch.where(drop[:, None, None], torch.where(first[..., None], missing.to(stream.dtype), 0.0), stream)
    return stream, torch.where(drop[:, None], first, valid)


def build_model(cfg: ModelConfig):
    """The model and its tokenizer, from a model config."""
    tokenizer = build_tokenizer(cfg.text)
    return MMRModel(cfg, vocab_size=len(tokenizer)), tokenizer
