"""Pre-training from tar shards: the stream's epochs, its resume position, and a killed run resumed from shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robust_mmr.cli.main import main
from robust_mmr.errors import InputError
from robust_mmr.training.stream import ShardStream, StreamLoader

SMALL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
         "model.decoder.layers=1", "train.log_every=1"]


@pytest.fixture(scope="module")
def small_shards(small_dir, tmp_path_factory) -> Path:
    """The 8 training pairs of ``small_dir`` in 4 shards of 2, written by `data shard`."""
    out = tmp_path_factory.mktemp("shards")
    assert main(["data", "shard", str(small_dir), "--out", str(out), "--samples-per-shard", "2"]) == 0
    return out


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


def _cli(out: Path, data: Path, steps: int) -> list[str]:
    return ["pretrain", "--config", "tiny", "--method", "robust-mmr", "--data", str(data), "--out", str(out),
            *SMALL, "train.num_workers=1", "train.batch_size=2", "train.checkpoint_every=2",
            f"train.max_steps={steps}"]


def test_pretraining_from_shards_runs_and_a_killed_run_resumes_to_the_same_weights(small_shards, tmp_path):
    steps = 6  # 4 batches per epoch: the resumed part crosses an epoch boundary
    assert main(_cli(tmp_path / "straight", small_shards, steps)) == 0
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["steps"] == steps and summary["train_pairs"] == 8 and summary["skipped"] == []

    killed = tmp_path / "killed"
    threads = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # CPU results depend on it
    proc = subprocess.Popen([sys.executable, "-m", "robust_mmr.cli.main", *_cli(killed, small_shards, steps)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=threads)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "last.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    assert 2 <= torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] < steps

    assert main(_cli(killed, small_shards, steps)) == 0
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
