"""Heads on the fused streams: pooler, MLM, MIM decoder, the invariance projections g."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robust_mmr.model.fusion import Block


class PairPooler(nn.Module):
    """CLS of each stream through tanh(Linear), concatenated: (B, Li, D), (B, Lt, D) → (B, 2D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.image = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.text = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())

    def forward(self, image: Tensor, text: Tensor) -> Tensor:
        return torch.cat([self.image(image[:, 0]), self.text(text[:, 0])], dim=-1)


class MLMHead(nn.Module):
    """Token states (M, D) → vocabulary logits (M, V). Applied to masked positions only."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, states: Tensor) -> Tensor:
        return self.decoder(self.transform(states))


class MIMDecoder(nn.Module):
    """MAE-style decoder: visible tokens + mask tokens back in patch order → pixels of every patch.

    Input: image stream (B, 1 + K, D) (CLS first), keep (B, K), keep_valid (B, K). Padded slots
    (keep_valid False) must index masked patches; they are filled with the mask token.
    Output: (B, N, patch_size² · channels) predictions for all N patches.
    """

    def __init__(self, dim: int, hidden: int, layers: int, heads: int, num_patches: int, patch_pixels: int):
        super().__init__()
        self.embed = nn.Linear(dim, hidden)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.position = nn.Parameter(torch.zeros(1, 1 + num_patches, hidden))
        self.blocks = nn.ModuleList(Block(hidden, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.predict = nn.Linear(hidden, patch_pixels)
        self.num_patches = num_patches
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, stream: Tensor, keep: Tensor, keep_valid: Tensor) -> Tensor:
        x = self.embed(stream)
        b, _, h = x.shape
        visible = torch.where(keep_valid[..., None], x[:, 1:], self.mask_token.to(x.dtype))
        patches = self.mask_token.to(x.dtype).expand(b, self.num_patches, h).clone()
        patches = patches.scatter(1, keep[..., None].expand(-1, -1, h), visible)
        x = torch.cat([x[:, :1], patches], dim=1) + self.position
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        for block in self.blocks:
            x = block(x, valid)
        return self.predict(self.norm(x))[:, 1:]


class ProjectionHead(nn.Module):
    """One projection of g: features (B, F) → embedding (B, P) (Linear → GELU → Linear)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class InvarianceProjections(nn.Module):
    """g, the projections Robust-MMR's invariance terms read (DESIGN §1.2), apart from every downstream head.

    ``image`` and ``text``: the mean unimodal token of each encoder (fusion width D, before fusion) → P,
    for domain consistency — an encoder cannot match two views of a study through the other modality;
    ``pair``: the mean tokens of both fused streams (2D) → P, for modality resilience. They train at the
    encoders' learning rate (:meth:`MMRModel.parameter_groups`) and never feed the pooler.
    """

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.image = ProjectionHead(dim, out_dim)
        self.text = ProjectionHead(dim, out_dim)
        self.pair = ProjectionHead(2 * dim, out_dim)
