"""Pre-training runs: the loss falls, checkpoints load back exactly, a run resumes, `base` builds and trains two steps."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from robust_mmr.cli.main import main
from robust_mmr.config import load_config
from robust_mmr.errors import InputError
from robust_mmr.model import build_model
from robust_mmr.objectives.batch import PerturbedText, PretrainBatch
from robust_mmr.training import checkpoint as ckpt
from robust_mmr.training.checkpoint import export_weights, load_pretrained
from robust_mmr.training.data import ImageTextDataset, PretrainCollator
from robust_mmr.training.module import PretrainModule
from robust_mmr.training.pretrain import run_pretraining


def _losses(run_dir) -> list[float]:
    """Logged losses of every attempt of a run (logs/version_0, version_1, ...), in order."""
    losses = []
    for version in sorted((run_dir / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        with (version / "metrics.csv").open() as fh:
            losses += [float(row["train/loss"]) for row in csv.DictReader(fh) if row.get("train/loss")]
    return losses


@pytest.mark.slow
def test_tiny_loss_falls_over_50_steps(synth_dir, tmp_path):
    cfg = load_config("tiny", ["objective.method=robust-mmr", "train.max_steps=50", "train.batch_size=8",
                               "train.log_every=1", "train.num_workers=0", "train.warmup_steps=5"])
    summary = run_pretraining(cfg, synth_dir, tmp_path, progress=False)
    assert summary["steps"] == 50
    losses = _losses(tmp_path)
    assert len(losses) == 50
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.85 * first, (first, last)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.yaml").is_file()


def test_checkpoint_loads_back_to_identical_outputs(synth_dir, tmp_path):
    cfg = load_config("tiny", ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1"])
    model, tokenizer = build_model(cfg.model)
    export_weights(model, cfg, tmp_path)
    loaded, _, loaded_cfg = load_pretrained(tmp_path)
    assert loaded_cfg == cfg
    data = ImageTextDataset(synth_dir, "train", 64, 1)
    batch = PretrainCollator(tokenizer, cfg.model.max_text_length, cfg.objective, seed=0)([data[i] for i in range(4)])
    with torch.no_grad():
        a = model.eval()(batch.pixels, batch.input_ids, batch.attention_mask).pooled
        b = loaded(batch.pixels, batch.input_ids, batch.attention_mask).pooled
    assert torch.equal(a, b)
    assert not any(p.suffix in (".pt", ".ckpt", ".bin") for p in tmp_path.iterdir())  # tensors only


def test_load_pretrained_names_what_is_missing(tmp_path):
    with pytest.raises(InputError, match="model.safetensors"):
        load_pretrained(tmp_path)


def test_cli_pretrain_resumes_from_last_checkpoint(synth_dir, tmp_path, capsys):
    common = ["pretrain", "--config", "tiny", "--method", "mmr-aug", "--data", str(synth_dir), "--out", str(tmp_path),
              "model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "train.batch_size=4",
              "train.num_workers=0", "train.checkpoint_every=3", "train.log_every=1"]
    assert main(common + ["train.max_steps=3"]) == 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert "3 steps" in capsys.readouterr().out
    assert main(common + ["train.max_steps=5"]) == 0
    assert "5 steps" in capsys.readouterr().out
    assert len(_losses(tmp_path)) == 5  # 3 steps, then only steps 4 and 5: resumed, not restarted
    assert load_config(str(tmp_path / "config.yaml")).objective.method == "mmr-aug"


@pytest.mark.parametrize("schedule, saved_at", [
    (["train.checkpoint_minutes=0.000001"], [1, 2, 3]),  # "every 60 ms": after every optimizer step, none mid-window
    (["train.checkpoint_every=2"], [2, 3]),  # every 2 optimizer steps, and at the end
    (["train.checkpoint_minutes=0"], [3]),  # neither: at the end only
])
def test_accumulation_counts_optimizer_steps_and_checkpoints_follow_them(synth_dir, tmp_path, monkeypatch,
                                                                         schedule, saved_at):
    """Two micro-batches of 2 per optimizer step: max_steps=3 trains 6 batches in 3 optimizer and schedule steps;
    a checkpoint (with its safetensors export) is only ever written after an optimizer step, and always at the end."""
    saved, exported = [], []
    real_save, real_export = ckpt.SafeCheckpointIO.save_checkpoint, ckpt.export_weights

    def save(self, checkpoint, path, storage_options=None):
        saved.append((checkpoint["global_step"],
                      checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["processed"]))
        real_save(self, checkpoint, path, storage_options)

    def export(model, cfg, run_dir):
        exported.append(len(saved))
        return real_export(model, cfg, run_dir)

    monkeypatch.setattr(ckpt.SafeCheckpointIO, "save_checkpoint", save)
    monkeypatch.setattr(ckpt, "export_weights", export)
    cfg = load_config("tiny", ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1",
                               "model.fusion.layers=1", "model.decoder.layers=1", "train.num_workers=0",
                               "train.precision=32-true", "train.batch_size=2", "train.accumulate_grad_batches=2",
                               "train.max_steps=3", *schedule])
    assert run_pretraining(cfg, synth_dir, tmp_path, progress=False)["steps"] == 3
    assert saved == [(step, 2 * step) for step in saved_at]  # each after the second micro-batch of its step
    assert len(exported) == len(saved_at)  # the weights exported with each checkpoint, not again at the end
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 and last["lr_schedulers"][0]["last_epoch"] == 3  # the schedule counts steps
    assert {float(s["step"]) for s in last["optimizer_states"][0]["state"].values()} == {3.0}
    assert (tmp_path / "model.safetensors").is_file()


def test_cli_rejects_unknown_config_keys(synth_dir, tmp_path, capsys):
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(tmp_path), "train.max_stepz=3"]) == 2
    assert "unknown key(s) max_stepz" in capsys.readouterr().err


@pytest.mark.slow
def test_base_builds_and_trains_two_steps_at_batch_2():
    # The paper-scale preset on the CPU: the GPU settings swapped for CPU ones; no warm-up (full
    # learning rate at once) and no weight decay, so a weight moves only through its gradient.
    cfg = load_config("base", ["train.accelerator=cpu", "train.precision=32-true", "train.warmup_steps=0",
                               "train.weight_decay=0"])
    module = PretrainModule(cfg)
    n_params = sum(p.numel() for p in module.model.parameters())
    assert 300e6 < n_params < 400e6  # ViT-B/16 + BERT-base sizes + 6 co-attention layers at 768 + heads
    optimizer = module.configure_optimizers()["optimizer"]
    enc = module.tokenizer(["CT chest: 1 nodule R lung.", "MR head: NAD."], padding="max_length", max_length=64,
                           return_tensors="pt")
    maskable = enc.attention_mask.bool()
    view = PerturbedText(input_ids=enc.input_ids, attention_mask=enc.attention_mask, maskable=maskable,
                         targets=torch.full_like(enc.input_ids, -100), perturb_text=torch.tensor([False, True]),
                         perturb_image=torch.tensor([True, False]))
    batch = PretrainBatch(pixels=torch.rand(2, 3, 288, 288), input_ids=enc.input_ids,
                          attention_mask=enc.attention_mask, maskable=maskable, domain=torch.full((2,), -1), view=view)
    watched = {name: p.detach().clone() for name, p in module.model.named_parameters()
               if name.endswith(("patch_embeddings.projection.weight", "word_embeddings.weight"))}
    assert len(watched) == 2
    losses = []
    for step in range(2):
        terms = module.objective(batch, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(float(terms["loss"]))
        assert {"mim", "mlm", "itm", "mim_v1", "mlm_v1", "domain_consistency"} <= set(terms)
    assert all(math.isfinite(x) for x in losses)
    params = dict(module.model.named_parameters())
    assert all(not torch.equal(params[name], before) for name, before in watched.items())
