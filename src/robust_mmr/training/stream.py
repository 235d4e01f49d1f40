"""Pre-training from tar shards (``robust-mmr data shard``): the streamed counterpart of the manifest loader.

A folder holding ``shards.json`` is read as a stream (:class:`robust_mmr.data.shards.ShardReader`): shards go to
consumers (rank × DataLoader worker) whole, in an order drawn per epoch from the seed; within a shard, samples come
in the order they were written. Samples were screened when the shards were written (``shards.json`` lists the
ones left out); an image that fails to decode is left out of its batch and listed, as with a manifest.

Resume: :class:`StreamLoader` saves ``(epoch, batches done)`` in Lightning checkpoints like
:class:`robust_mmr.training.sampler.ResumableLoader`; a resumed run re-reads the epoch's stream from its start and
discards the batches already trained on (the data path is read again, the model does not see them), so with the
same number of ranks and workers it trains on the same batches as an uninterrupted run.

A stream has no length: an epoch ends when the consumers' shards are read, and training is bounded by
``train.max_steps``. Every consumer needs at least one shard (refused otherwise); ranks whose shards hold different
numbers of samples reach the end of an epoch at different steps, which DDP tolerates since every step is one
gradient all-reduce, but equal shards (as ``data shard`` writes them) keep the ranks' epochs aligned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from torch.utils.data import DataLoader, IterableDataset

from robust_mmr.data.images import image_to_uint8
from robust_mmr.data.shards import ShardReader
from robust_mmr.errors import InputError
from robust_mmr.training.screening import Sample, Skipped

SHARD_CARD = "shards.json"


def is_shard_dir(path: Path) -> bool:
    """Whether ``path`` is a shard folder written by ``robust-mmr data shard``."""
    return (Path(path) / SHARD_CARD).is_file()


def read_card(path: Path) -> dict:
    """The folder's ``shards.json``: source, split, samples, shards, the records screened out."""
    try:
        return json.loads((Path(path) / SHARD_CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{Path(path) / SHARD_CARD}: unreadable ({err})") from None


class ShardStream(IterableDataset):
    """The samples of a shard folder as :class:`robust_mmr.training.screening.Sample` items, this consumer's share.

    ``pixels``: (C, size, size) uint8 for 8-bit images (float in [0, 1] otherwise), as the manifest dataset gives.
    ``samples``: the folder's sample count (every rank's); ``skipped``: the records screened out when the shards
    were written. No ``len``: Lightning counts an epoch's batches as it goes.
    """

    def __init__(self, root: Path, image_size: int, channels: int, seed: int, rank: int, world_size: int,
                 workers: int, on_bad_sample: str = "skip"):
        card = read_card(root)
        self.reader = ShardReader(root, rank=rank, world_size=world_size, min_size=image_size, seed=seed)
        consumers = world_size * max(workers, 1)
        if len(self.reader.shards) < consumers:
            raise InputError(f"{root}: {len(self.reader.shards)} shard(s) for {consumers} readers ({world_size} "
                             f"process(es) × {max(workers, 1)} DataLoader worker(s)); every reader needs one: write "
                             "smaller shards (data shard --samples-per-shard) or use fewer workers")
        self.samples = int(card["samples"])
        self.skipped = [Skipped(**s) for s in card.get("skipped", [])]
        self.image_size, self.channels, self.on_bad_sample = image_size, channels, on_bad_sample

    def set_epoch(self, epoch: int) -> None:
        self.reader.set_epoch(epoch)

    def __iter__(self) -> Iterator:
        epoch = self.reader.epoch
        for sample in self.reader:
            if sample.problem is not None:
                if self.on_bad_sample == "fail":
                    raise InputError(f"bad sample {sample.record.id}: {sample.problem.reason} "
                                     f"({sample.problem.detail})")
                yield Sample(sample.record, None, epoch, sample.problem)
            else:
                yield Sample(sample.record, image_to_uint8(sample.image, self.image_size, self.channels), epoch, None)


class StreamLoader(DataLoader):
    """Batches of a :class:`ShardStream`, one epoch per iteration, with its position saved in checkpoints.

    Each ``iter()`` starts the next epoch (the shard order is drawn from it) unless a checkpoint set the
    position; ``progress()`` returns ``(epoch, batches of it trained)`` as the trainer counts them.
    """

    def __init__(self, dataset: ShardStream, batch_size: int, progress: Callable[[], tuple[int, int]], **kwargs):
        super().__init__(dataset, batch_size=batch_size, drop_last=True, **kwargs)
        self.progress = progress
        self.next_epoch, self.skip = 0, 0

    def __iter__(self):
        self.dataset.set_epoch(self.next_epoch)  # before the workers copy the dataset
        skip, self.skip = self.skip, 0
        self.next_epoch += 1
        batches = super().__iter__()
        for _ in range(skip):
            if next(batches, None) is None:
                break
        return batches

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress()
        return {"epoch": int(epoch), "batches_done": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.next_epoch, self.skip = int(state["epoch"]), int(state["batches_done"])
