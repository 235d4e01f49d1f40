"""A resumable, rank-sharded training order: the data a step sees is a function of (seed, epoch, step).

- Order: each epoch is a permutation of the dataset drawn from ``derive_seed(seed, "pretrain-order",
  epoch)``; the tail that does not fill a *global* batch (``batch_size × world_size``) is dropped.
- Sharding: global batch ``j`` of the epoch is split into ``world_size`` consecutive slices of
  ``batch_size``; rank ``r`` takes slice ``r``. So the ranks' shards never overlap, and their union at
  every step is exactly the batch a single process with ``batch_size × world_size`` would draw.
- Resume: :class:`ResumableLoader` is a ``DataLoader`` with ``state_dict``/``load_state_dict`` (Lightning's
  ``_Stateful`` protocol). Lightning saves the state with every checkpoint and restores it before it
  creates the iterator; the sampler then skips the batches of that epoch that were already trained on.
- The sampler yields ``(index, epoch)`` pairs, so the epoch travels with each sample into DataLoader
  workers and the collator's per-(sample, epoch) draws need no hook to stay in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from robust_mmr.errors import InputError
from robust_mmr.perturbations.seeding import derive_seed


class EpochSampler(Sampler[tuple[int, int]]):
    """(index, epoch) pairs of one rank's shard of one epoch; ``len`` is the full per-epoch count."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if size < batch_size * world_size:
            raise InputError(f"train.batch_size={batch_size} on {world_size} process(es) needs at least "
                             f"{batch_size * world_size} usable training pairs; the dataset has {size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip_batches = 0  # applies to the next iteration over ``skip_epoch`` only
        self.skip_epoch = -1

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue ``epoch`` after its first ``batches_done`` batches (of this rank's shard)."""
        self.epoch, self.skip_epoch, self.skip_batches = epoch, epoch, batches_done

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``: (batches_per_epoch, batch_size) long."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "pretrain-order", "epoch", epoch))
        order = torch.randperm(self.size, generator=generator)
        per_global = self.batch_size * self.world_size
        batches = order[: self.batches_per_epoch * per_global].view(-1, self.world_size, self.batch_size)
        return batches[:, self.rank]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        skip = self.skip_batches if epoch == self.skip_epoch else 0
        self.skip_batches, self.skip_epoch = 0, -1
        for index in self.shard(epoch)[skip:].flatten().tolist():
            yield index, epoch


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` whose position is saved in Lightning checkpoints.

    ``progress()`` returns ``(epoch, batches of that epoch already trained)``; the data module reads it
    from the trainer, which knows exactly which batches were consumed (the loader's own iterator runs
    ahead by the prefetched batches).
    """

    def __init__(self, dataset, sampler: EpochSampler, progress: Callable[[], tuple[int, int]], **kwargs):
        super().__init__(dataset, batch_size=sampler.batch_size, sampler=sampler, drop_last=True, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress()
        if done >= self.sampler.batches_per_epoch:  # saved on the epoch's last batch: next epoch, from its start
            epoch, done = epoch + 1, 0
        return {"epoch": int(epoch), "batches_done": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.resume_at(int(state["epoch"]), int(state["batches_done"]))
