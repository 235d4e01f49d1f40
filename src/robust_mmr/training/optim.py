"""The one optimiser rule of the project, shared by pre-training and every fine-tuning task.

AdamW (nanoGPT's ``configure_optimizers`` rule): weights of matrices decay, biases, norms and learned
tokens (parameters with fewer than 2 dimensions) do not. Each parameter group has its own learning
rate (encoders vs fusion and heads in pre-training; backbone vs head in fine-tuning).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

BETAS = (0.9, 0.98)  # M3AE / BERT-style second-moment decay


def adamw(groups: Iterable[tuple[Iterable[nn.Parameter], float]], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``(parameters, learning rate)`` groups; each is split into decayed (ndim >= 2) and
    not decayed parameters. Parameters with ``requires_grad=False`` (a frozen backbone) are left out."""
    param_groups = []
    for params, lr in groups:
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        param_groups += [{"params": decay, "lr": lr, "weight_decay": weight_decay},
                         {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in param_groups if g["params"]], betas=BETAS)


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


class PlateauSchedule:
    """Learning-rate factor for fine-tuning: linear warm-up over ``warmup`` steps, then constant, halved
    each time the validation score has not improved for ``patience`` epochs in a row (call
    :meth:`epoch_end` once per validation). Fine-tuning then runs at a high rate while it still improves
    and anneals once it stops, whatever the epoch count the run ends at."""

    def __init__(self, warmup: int, patience: int, decay: float = 0.5):
        self.warmup, self.patience, self.decay = warmup, patience, decay
        self.scale, self.stale = 1.0, 0

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / max(1, self.warmup)) * self.scale

    def epoch_end(self, improved: bool) -> None:
        self.stale = 0 if improved else self.stale + 1
        if self.stale and self.stale % self.patience == 0:
            self.scale *= self.decay
