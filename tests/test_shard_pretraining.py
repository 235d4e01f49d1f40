"""Pre-training from tar shards: the stream's epochs and its resume position (a killed streamed run resumed to the
same weights: ``test_reliability_resume.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robust_mmr.errors import InputError
from robust_mmr.training.stream import ShardStream, StreamLoader


def _ids(samples) -> list[str]:
    return [s.record.id for s in samples]


def _loader(shards: Path, workers: int = 0) -> StreamLoader:
    stream = ShardStream(shards, image_size=32, channels=1, seed=5, rank=0, world_size=1, workers=workers)
    return StreamLoader(stream, batch_size=2, progress=lambda: (0, 0), collate_fn=_ids, num_workers=workers)


def test_each_iteration_is_the_next_epoch_in_its_own_order_and_a_resume_skips_the_batches_done(small_shards):
    loader = _loader(small_shards, workers=2)
    epochs = [list(loader) for _ in range(3)]
    assert all(len(e) == 4 for e in epochs)  # every sample once per epoch, in batches of 2
    assert all(sorted(sum(e, [])) == sorted(sum(epochs[0], [])) for e in epochs)
    assert len({tuple(map(tuple, e)) for e in epochs}) > 1  # the shard order changes with the epoch
    again = _loader(small_shards, workers=0)
    assert [list(again) for _ in range(3)] == epochs  # replayable, whatever the number of workers

    resumed = _loader(small_shards, workers=2)
    resumed.load_state_dict({"epoch": 1, "batches_done": 3})
    assert list(resumed) == epochs[1][3:]  # the rest of epoch 1
    assert list(resumed) == epochs[2]  # then the next epoch whole


def test_a_stream_with_fewer_shards_than_readers_is_refused(small_shards):
    with pytest.raises(InputError, match="4 shard.*for 6 readers"):
        ShardStream(small_shards, image_size=32, channels=1, seed=0, rank=0, world_size=2, workers=3)
