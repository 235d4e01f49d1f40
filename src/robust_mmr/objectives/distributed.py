"""Global negatives: contrastive embeddings gathered across the processes of a distributed run.

Under DDP each of the W processes holds its own slice of the global batch. An InfoNCE term computed on
the local rows alone contrasts each query with the local rows only, so its loss differs from one process
with the whole batch. :func:`gather_with_grad` all-gathers the rows (in rank order) so that every process
sees the global batch; in the backward pass the gradient reaching each gathered row is summed over the
processes and handed to the process that owns the row.

Why this gives the single-process gradients under DDP's averaging. Let L be the loss of one process on the
global batch and L_r what process r computes: with ``local_loss`` (open_clip's option; r's own queries
against every process's keys) L_r is the mean over r's queries, so L = mean_r L_r at equal slice sizes;
without it every process computes the full matrix, L_r = L. Either way Σ_r L_r = W·L, and the summed
backward gives the owner of row i the gradient ∂(Σ_r L_r)/∂x_i = W·∂L/∂x_i, which it back-propagates into
its parameters; DDP then divides the sum over processes by W: ∂L/∂θ. A parameter used after the gather (a
learnable temperature) gets ∂L_r/∂τ on each process, whose average is again ∂L/∂τ. Nothing is scaled by
hand. ``tests/test_global_negatives.py`` checks both modes against one process.

Every process must call the gather the same number of times in the same order (as every training step
does). Outside a process group, or with one process, everything here is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) outside one."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def row_counts(local: Tensor) -> list[int]:
    """The number of rows each process holds, in rank order (slices may differ in size, e.g. a last batch)."""
    count = torch.tensor([local.shape[0]], dtype=torch.long, device=local.device)
    counts = [torch.zeros_like(count) for _ in range(world()[1])]
    dist.all_gather(counts, count)
    return [int(c.item()) for c in counts]


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradients over processes and keeps this one's rows."""

    @staticmethod
    def forward(ctx, local: Tensor, counts: list[int], rank: int) -> Tensor:
        """local (n_rank, ...) → (Σ counts, ...): every process's rows in rank order."""
        longest = max(counts)
        padded = local.new_zeros((longest, *local.shape[1:]))
        padded[: local.shape[0]] = local
        slots = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(slots, padded.contiguous())
        ctx.start, ctx.stop = sum(counts[:rank]), sum(counts[: rank + 1])
        return torch.cat([slot[:n] for slot, n in zip(slots, counts)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        """grad (Σ counts, ...) → (n_rank, ...): the sum over processes of the gradient of this process's rows."""
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.start: ctx.stop], None, None


def gather_with_grad(local: Tensor) -> tuple[Tensor, int]:
    """This process's rows (n, ...) → (every process's rows (N, ...) in rank order, the index of this process's
    first row in them). Gradients reach ``local`` summed over processes (see the module docstring).
    Outside a process group: ``(local, 0)``, the same tensor."""
    rank, size = world()
    if size == 1:
        return local, 0
    counts = row_counts(local)
    return _GatherRows.apply(local, counts, rank), sum(counts[:rank])
