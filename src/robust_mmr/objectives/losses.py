"""Loss terms. Each takes tensors and returns a scalar; the objectives combine them into a dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robust_mmr.objectives.distributed import gather_with_grad, world


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


def global_info_nce(a: Tensor, b: Tensor, temperature: float | Tensor, local_loss: bool = True) -> Tensor:
    """:func:`info_nce` with the global batch of a distributed run as negatives. a, b (n, P): this process's
    paired rows; every process's rows are gathered (:mod:`robust_mmr.objectives.distributed`).

    ``local_loss`` (open_clip's option): this process's n queries against all N keys, logits (n, N), each
    row's target its own index in the global batch; the mean over processes is the single-process loss.
    Otherwise every process computes the full (N, N) matrix, the single-process loss itself. Both give the
    single-process gradients after DDP's averaging; ``local_loss`` costs n × N instead of N × N.
    With one process (or outside a process group) this is :func:`info_nce` exactly.
    """
    if world()[1] == 1:
        return info_nce(a, b, temperature)
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    all_a, start = gather_with_grad(a)
    all_b, _ = gather_with_grad(b)
    if local_loss:
        target = torch.arange(start, start + a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(a @ all_b.t() / temperature, target)
                      + F.cross_entropy(b @ all_a.t() / temperature, target))
    logits = all_a @ all_b.t() / temperature
    target = torch.arange(all_a.shape[0], device=a.device)
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
