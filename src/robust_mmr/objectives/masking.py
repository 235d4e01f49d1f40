"""Masking for MIM and MLM, including Robust-MMR's perturbation-aware variants.

Image masking follows MAE: each patch gets a noise value, patches are sorted by it, and the first
``keep`` are visible. Perturbation-aware masking raises the noise of the patches the perturbation
changed most (their damage rank), so they are masked preferentially.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def patchify(pixels: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) → (B, N, patch² · C), patches in row-major order."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def normalized_patches(pixels: Tensor, patch: int, eps: float = 1e-6) -> Tensor:
    """MAE's per-patch normalised pixel targets: each patch minus its mean, over its std. (B, N, P)."""
    x = patchify(pixels, patch)
    mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


@dataclass
class PatchMask:
    """Visible patch indices (B, K), which of them are real (B, K), and the masked patches (B, N)."""

    keep: Tensor
    keep_valid: Tensor
    masked: Tensor


def mask_patches(noise: Tensor, keep_counts: Tensor) -> PatchMask:
    """Keep the ``keep_counts[b]`` lowest-noise patches of each row. noise (B, N), keep_counts (B,) long.

    Rows keeping fewer than the batch maximum are padded with masked patches (keep_valid False).
    """
    order = torch.argsort(noise, dim=1)
    k_max = int(keep_counts.max())
    keep = order[:, :k_max]
    keep_valid = torch.arange(k_max, device=noise.device)[None, :] < keep_counts[:, None]
    ranks = torch.argsort(order, dim=1)  # position of each patch in the sorted order
    masked = ranks >= keep_counts[:, None]
    return PatchMask(keep, keep_valid, masked)


def keep_count(num_patches: int, ratio: float) -> int:
    """Visible patches at a mask ratio (at least one)."""
    return max(1, int(round(num_patches * (1.0 - ratio))))


def damage_rank(clean_patches: Tensor, perturbed_patches: Tensor) -> Tensor:
    """Rank of each patch by ‖patch(x̃) − patch(x)‖², scaled to [0, 1] (1 = most changed). (B, N).

    Tied patches share their mean rank, so a corruption that changes every patch alike (a uniform
    brightness shift) biases no patch, whatever its position.
    """
    damage = (perturbed_patches - clean_patches).float().pow(2).sum(dim=-1)
    below = (damage[:, None, :] < damage[:, :, None]).sum(-1)
    tied = (damage[:, None, :] == damage[:, :, None]).sum(-1) - 1
    ranks = (below + 0.5 * tied).to(clean_patches.dtype)
    return ranks / max(damage.shape[1] - 1, 1)


def mask_tokens(
    input_ids: Tensor,
    maskable: Tensor,
    prob: Tensor,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """BERT masking with a per-token probability: of the chosen tokens 80% → [MASK], 10% → random, 10% kept.

    input_ids (B, L); maskable (B, L) bool (False for special and padding tokens); prob (B, L) or
    scalar. Returns (masked input ids, labels) with labels = -100 where nothing is predicted.
    """
    prob = torch.as_tensor(prob, dtype=torch.float32, device=input_ids.device).expand(input_ids.shape)
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    chosen = (draw < prob) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    out = torch.where(chosen & (action < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)
    out = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, out)
    return out, labels
