"""Loss terms. Each takes tensors and returns a scalar; the objectives combine them into a dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mim_loss(pred: Tensor, target: Tensor, masked: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """MSE over masked patches only. pred, target (B, N, P); masked (B, N) bool; sample_weight (B,) 0/1."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    weight = masked.float()
    if sample_weight is not None:
        weight = weight * sample_weight[:, None].float()
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over predicted tokens. logits (M, V); labels (M,). Zero when nothing is masked."""
    if labels.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels)


def info_nce(a: Tensor, b: Tensor, temperature: float | Tensor) -> Tensor:
    """Symmetric InfoNCE between paired rows of a and b (B, P): row i of a matches row i of b, every other
    row of the batch is a negative; rows are L2-normalised first (CLIP, Radford et al. 2021)."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def resilience_loss(unimodal: Tensor, full: Tensor) -> Tensor:
    """1 − cos(g(v_drop), stop_grad(g(v0))), averaged. (B, P), (B, P)."""
    return (1.0 - F.cosine_similarity(unimodal.float(), full.detach().float(), dim=-1)).mean()


def coral_loss(features: Tensor, domains: Tensor) -> Tensor:
    """Deep CORAL (Sun & Saenko 2016) averaged over pairs of domains present in the batch.

    features (B, P); domains (B,) long, negative = unknown. Each domain needs ≥ 2 samples.
    """
    groups = [features[domains == d].float() for d in domains.unique() if d >= 0]
    groups = [g for g in groups if g.shape[0] >= 2]
    if len(groups) < 2:
        return features.sum() * 0.0
    covs = [torch.cov(g.t()) for g in groups]
    dim = features.shape[1]
    terms = [(covs[i] - covs[j]).pow(2).sum() / (4 * dim * dim) for i in range(len(covs)) for j in range(i + 1, len(covs))]
    return torch.stack(terms).mean()
