"""Kill and resume, atomic checkpoints, safe loading, non-finite losses (RELIABILITY.md, cases 1, 3, 4)."""

from __future__ import annotations

import ast
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import robust_mmr
from robust_mmr.cli.main import main
from robust_mmr.config import load_config
from robust_mmr.errors import InputError
from robust_mmr.training import checkpoint as ckpt
from robust_mmr.training.module import NonFiniteLossError
from robust_mmr.training.pretrain import run_pretraining
from robust_mmr.training.sampler import EpochSampler

SMALL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
         "model.decoder.layers=1", "train.num_workers=0", "train.log_every=1"]


def test_sampler_order_is_a_function_of_seed_and_epoch_and_shards_do_not_overlap():
    single = EpochSampler(50, batch_size=8, seed=3)
    ranks = [EpochSampler(50, batch_size=4, seed=3, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 1):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        full = single.shard(epoch)  # (6, 8)
        shards = [r.shard(epoch) for r in ranks]  # (6, 4) each
        # every step, the two ranks' batches together are the single process's batch, with no overlap
        for step in range(full.shape[0]):
            union = torch.cat([shards[0][step], shards[1][step]])
            assert union.unique().numel() == 8 and set(union.tolist()) == set(full[step].tolist())
        assert [i for i, e in single] == full.flatten().tolist() and {e for _, e in single} == {epoch}
    assert not torch.equal(single.shard(0), single.shard(1))  # a new order each epoch
    assert torch.equal(single.shard(1), EpochSampler(50, batch_size=8, seed=3).shard(1))  # replayable
    assert not torch.equal(single.shard(1), EpochSampler(50, batch_size=8, seed=4).shard(1))


def test_sampler_resumes_after_the_batches_already_trained():
    s = EpochSampler(40, batch_size=4, seed=0)
    s.resume_at(epoch=2, batches_done=3)
    assert [i for i, _ in s] == s.shard(2)[3:].flatten().tolist()
    assert [i for i, _ in s] == s.shard(2).flatten().tolist()  # the skip applies once
    assert len(s) == 40  # Lightning's batch count stays that of a full epoch


def _cli(out: Path, data: Path, steps: int) -> list[str]:
    return ["pretrain", "--config", "tiny", "--method", "robust-mmr", "--data", str(data), "--out", str(out),
            *SMALL, "train.batch_size=2", "train.checkpoint_every=2", f"train.max_steps={steps}"]


@pytest.mark.parametrize("source", ["small_dir", "small_shards"])  # a manifest folder, or tar shards streamed
def test_sigkilled_run_resumes_to_bit_identical_weights(source, request, tmp_path):
    small_dir = request.getfixturevalue(source)
    steps = 6  # 4 batches per epoch: the resumed part crosses an epoch boundary
    assert main(_cli(tmp_path / "straight", small_dir, steps)) == 0
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["train_pairs"] == 8 and summary["skipped"] == []

    killed = tmp_path / "killed"
    # CPU results depend on the thread count: the killed process runs on as many threads as this one
    threads = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "robust_mmr.cli.main", *_cli(killed, small_dir, steps)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=threads)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "last.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "summary.json").exists()  # it really died before finishing
    saved_step = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 2 <= saved_step < steps

    assert main(_cli(killed, small_dir, steps)) == 0  # resumes from last.ckpt
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["steps"] == steps
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert not list((killed / "checkpoints").glob(".*.tmp-*"))


def _checkpoint(step: int) -> dict:
    return {"global_step": step, "state_dict": {"w": torch.full((256, 256), float(step))}}


def test_failed_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    io, path = ckpt.SafeCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint(_checkpoint(1), path)

    def half_then_fail(obj, fh):
        fh.write(b"\x80\x02partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint(_checkpoint(2), path)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert list(tmp_path.iterdir()) == [path]  # the temp file was cleaned up


def test_sigkill_during_save_leaves_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.SafeCheckpointIO().save_checkpoint(_checkpoint(1), path)
    script = f"""
import os, signal, torch
from robust_mmr.training import checkpoint as ckpt
def die_midway(obj, fh):
    fh.write(b"\\x80\\x02partial" * 1000); fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
ckpt.torch.save = die_midway
ckpt.SafeCheckpointIO().save_checkpoint({{"global_step": 2}}, {str(path)!r})
"""
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    leftovers = list(path.parent.glob(".*.tmp-*"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the half-written temp file
    assert ckpt.load_training_checkpoint(path)["global_step"] == 1
    assert ckpt.remove_stale_temp_files(path.parent) == leftovers and not list(path.parent.glob(".*.tmp-*"))


class _Payload:
    """Unpickling this runs a shell command (the marker file proves whether it ran)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_without_running(small_dir, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "run" / "checkpoints" / "last.ckpt"
    evil.parent.mkdir(parents=True)
    with evil.open("wb") as fh:
        pickle.dump({"state_dict": _Payload(marker)}, fh)
    with pytest.raises(InputError, match="refused without unpickling"):
        ckpt.load_training_checkpoint(evil)
    cfg = load_config("tiny", SMALL + ["train.batch_size=2", "train.max_steps=1"])
    with pytest.raises(InputError, match="refused without unpickling"):  # the resume path goes through it too
        run_pretraining(cfg, small_dir, tmp_path / "run", progress=False)
    assert not marker.exists()


def test_from_pretrained_never_enables_remote_code():
    calls = 0
    for path in Path(robust_mmr.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "from_pretrained":
                calls += 1
                names = [k.arg for k in node.keywords]
                assert None not in names, f"{path}: **kwargs could carry trust_remote_code"
                assert "trust_remote_code" not in names, f"{path}: passes trust_remote_code"
    assert calls >= 2  # the text and vision loaders were found


def test_non_finite_loss_term_stops_training_naming_it(small_dir, tmp_path, monkeypatch, capsys):
    import robust_mmr.objectives.pretrain as objective

    real, calls = objective.mlm_loss, {"n": 0}

    def nan_on_second_step(*args):
        calls["n"] += 1  # mmr computes mlm twice per step: steps 1 and 2 are calls 1-2 and 3-4
        value = real(*args)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(objective, "mlm_loss", nan_on_second_step)
    out = tmp_path / "run"
    args = ["pretrain", "--config", "tiny", "--method", "mmr", "--data", str(small_dir), "--out", str(out), *SMALL,
            "train.batch_size=2", "train.checkpoint_every=1", "train.max_steps=5"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "non-finite loss term(s) mlm at step 1" in err and "mlm_v1" not in err.split("(")[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["status"].startswith("stopped: non-finite loss term(s) mlm")
    weights = load_file(out / "model.safetensors")  # exported at step 1, before the bad step
    assert all(torch.isfinite(v).all() for v in weights.values())
    with pytest.raises(NonFiniteLossError):
        monkeypatch.setattr(objective, "mlm_loss", lambda *a: real(*a) * float("inf"))
        run_pretraining(load_config("tiny", SMALL + ["objective.method=mmr", "train.batch_size=2", "train.max_steps=1"]),
                        small_dir,
                        tmp_path / "run2", progress=False)
