"""Converged fine-tuning: early stopping, the best epoch kept, the plateau schedule, no test labels read,
and the probe protocol (frozen backbone)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from robust_mmr.cli.main import main
from robust_mmr.data.manifest import read_manifest, write_manifest
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.finetune import load_finetuned
from robust_mmr.tasks.module import FinetuneModule, fit_keeping_best
from robust_mmr.training.optim import PlateauSchedule

SMALL_MODEL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
               "model.decoder.layers=1", "model.max_text_length=24"]


def test_plateau_schedule_warms_up_then_halves_after_stale_epochs():
    schedule = PlateauSchedule(warmup=4, patience=2)
    assert [schedule(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    for improved, scale in [(True, 1.0), (False, 1.0), (False, 0.5), (True, 0.5), (False, 0.5), (False, 0.25)]:
        schedule.epoch_end(improved)
        assert schedule.scale == scale
    assert schedule(100) == 0.25


class ScriptedScore(FinetuneModule):
    """A one-weight model whose validation scores follow a script; each training step moves the weight by 1."""

    def __init__(self, scores: list[float], cfg: FinetuneConfig):
        model = nn.Linear(1, 1, bias=False)
        model.head_parameters = lambda: []  # the whole model is "backbone": one parameter group
        super().__init__(model, cfg, steps_per_epoch=1)
        self.scores = scores

    def training_step(self, batch, batch_idx):
        with torch.no_grad():
            self.model.weight += 1.0
        return (self.model.weight * 0.0).sum() + batch.sum() * 0.0

    def validation_step(self, batch, batch_idx):
        pass

    def validation_score(self) -> float:
        return self.scores[self.current_epoch]

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.0)


def _fit(scores: list[float], tmp_path, **settings) -> ScriptedScore:
    cfg = FinetuneConfig(**{"max_epochs": len(scores), "patience": 2, **settings})
    module = ScriptedScore(scores, cfg)
    with torch.no_grad():
        module.model.weight.zero_()
    data = DataLoader(torch.zeros(1, 1), batch_size=1)
    fit_keeping_best(module, data, data, cfg, tmp_path, progress=False)
    return module


def test_early_stopping_stops_after_patience_epochs_without_gain_and_keeps_the_best(tmp_path):
    module = _fit([0.5, 0.7, 0.6, 0.65, 0.69, 0.9, 0.95], tmp_path)
    assert len(module.history) == 4  # best at epoch 2 (0.7), then 2 epochs without a gain: stopped after epoch 4
    assert module.best_epoch == 1 and module.best_score == pytest.approx(0.7)
    assert module.model.weight.item() == 2.0  # the weights after epoch 2 (one step per epoch), not the last ones


def test_training_runs_to_max_epochs_while_it_keeps_improving(tmp_path):
    module = _fit([0.1, 0.2, 0.3, 0.4], tmp_path)
    assert len(module.history) == 4 and module.best_epoch == 3 and module.model.weight.item() == 4.0


def _scramble_test_answers(src, dst):
    dst.mkdir()
    (dst / "images").symlink_to(src / "images")
    records = read_manifest(src / "vqa.jsonl")
    write_manifest(dst / "vqa.jsonl", [replace(r, answer="zzz") if r.split == "test" else r for r in records])


def test_fine_tuning_never_reads_test_labels(synth_dir, tmp_path):
    """Changing every test answer changes nothing in fine-tuning: same epochs, scores and weights."""
    scrambled = tmp_path / "scrambled"
    _scramble_test_answers(synth_dir, scrambled)
    runs = []
    for data in (synth_dir, scrambled):
        out = tmp_path / f"run-{data.name}"
        assert main(["finetune", "--data", str(data), "--holdout", "domain=site-c", "--out", str(out), "max_epochs=3",
                     "patience=1", "batch_size=32", *SMALL_MODEL]) == 0
        runs.append(out)
    tasks = [json.loads((r / "task.json").read_text()) for r in runs]
    assert tasks[0]["val_history"] == tasks[1]["val_history"] and tasks[0]["best_epoch"] == tasks[1]["best_epoch"]
    assert tasks[0]["labels"] == tasks[1]["labels"]
    a, b = (load_file(str(r / "model.safetensors")) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_probe_trains_the_head_and_leaves_the_backbone_unchanged(synth_dir, tmp_path):
    pre = tmp_path / "pre"
    assert main(["pretrain", "--config", "tiny", "--method", "mmr", "--data", str(synth_dir), "--out", str(pre),
                 *SMALL_MODEL, "train.max_steps=2", "train.batch_size=4", "train.num_workers=0"]) == 0
    probe = tmp_path / "probe"
    assert main(["finetune", "--data", str(synth_dir), "--init", str(pre), "--out", str(probe), "max_epochs=3",
                 "batch_size=16", "freeze_backbone=true"]) == 0
    backbone = load_file(str(pre / "model.safetensors"))
    trained = load_file(str(probe / "model.safetensors"))
    assert all(torch.equal(trained[f"backbone.{k}"], v) for k, v in backbone.items())  # every backbone weight
    model, _, _, task = load_finetuned(probe)
    assert task["finetune"]["freeze_backbone"] and model.features == "mean"
    assert task["epochs_run"] >= 1 and any("probe" in n for n in task["notes"])
    assert main(["evaluate", str(probe), "--data", str(synth_dir), "--protocol", "clean,missing"]) == 0


def test_lp_ft_trains_the_head_on_frozen_features_first_then_everything(synth_dir, tmp_path, monkeypatch):
    """LP-FT: stage 1 is the probe (backbone untouched while the head learns), stage 2 fine-tunes the backbone
    starting from that head; the run loads back with the probe's head input."""
    import robust_mmr.tasks.finetune as finetune_module

    pre = tmp_path / "pre"
    assert main(["pretrain", "--config", "tiny", "--method", "mmr", "--data", str(synth_dir), "--out", str(pre),
                 *SMALL_MODEL, "train.max_steps=2", "train.batch_size=4", "train.num_workers=0"]) == 0
    seen = {}
    real_unfreeze = finetune_module.unfreeze

    def spy(backbone):  # between the stages: the backbone is still the pre-trained one, the head has learned
        seen["backbone"] = {k: v.clone() for k, v in backbone.state_dict().items()}
        real_unfreeze(backbone)

    monkeypatch.setattr(finetune_module, "unfreeze", spy)
    run = tmp_path / "lpft"
    assert main(["finetune", "--data", str(synth_dir), "--init", str(pre), "--out", str(run), "max_epochs=2",
                 "batch_size=16", "lp_ft=true"]) == 0
    pretrained = load_file(str(pre / "model.safetensors"))
    assert all(torch.equal(seen["backbone"][k], v) for k, v in pretrained.items())
    final = load_file(str(run / "model.safetensors"))
    assert any(not torch.equal(final[f"backbone.{k}"], v) for k, v in pretrained.items())  # stage 2 moved it
    model, _, _, task = load_finetuned(run)
    assert task["finetune"]["lp_ft"] and model.features == "mean"
    assert any(n.startswith("LP-FT stage 1, probe") for n in task["notes"])
    assert main(["finetune", "--data", str(synth_dir), "--init", str(pre), "--out", str(tmp_path / "x"),
                 "lp_ft=true", "freeze_backbone=true"]) == 2


class Interrupted(RuntimeError):
    """Stands for a kill: raised at the start of an epoch, after the checkpoint of the epoch before."""


def _head_module(cfg: FinetuneConfig, stop_at: int | None = None):
    """A dropout MLP on cached features (shuffled, seeded order), validated on unrelated labels (so the score
    stalls and the schedule halves); with ``stop_at``, the run dies as that epoch starts."""
    from robust_mmr.tasks.module import ClassifierModule
    from robust_mmr.tasks.probe import CachedBatches, HeadOnly

    torch.manual_seed(0)
    features = torch.randn(96, 8)
    batches = [{"features": features, "labels": (features[:, 0] > 0).long() + (features[:, 1] > 0).long()}]
    generator = torch.Generator().manual_seed(cfg.seed)
    train = DataLoader(CachedBatches(batches), batch_size=16, shuffle=True, generator=generator)
    unrelated = [{"features": torch.randn(64, 8), "labels": torch.randint(0, 3, (64,))}]  # scores that stall
    val = DataLoader(CachedBatches(unrelated), batch_size=32)
    head = HeadOnly(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3)))

    class Dying(ClassifierModule):
        def on_train_epoch_start(self):
            if self.current_epoch == stop_at:
                raise Interrupted

    return Dying(head, cfg, len(train)), train, val


def test_a_killed_fine_tuning_resumes_from_its_last_epoch_and_replays_the_uninterrupted_run(tmp_path, monkeypatch):
    """Same epochs, scores, learning-rate scales, kept epoch and weights as a run never stopped: the data order and
    dropout draws continue where they were; a finished run leaves no checkpoint; another key starts over."""
    import robust_mmr.tasks.module as module_module

    monkeypatch.setattr(module_module, "CHECKPOINT_MINUTES", 0.0)  # every epoch
    cfg = FinetuneConfig(max_epochs=6, patience=6, lr_patience=1, lr=3e-3, warmup_epochs=1, seed=3)
    key = {"run": "a"}

    def fit(out, stop_at=None, resume_key=key):
        module, train, val = _head_module(cfg, stop_at)
        fit_keeping_best(module, train, val, cfg, out, progress=False, resume_key=resume_key)
        return module

    reference = fit(tmp_path / "whole", resume_key=None)
    with pytest.raises(Interrupted):
        fit(tmp_path / "killed", stop_at=3)
    assert (tmp_path / "killed" / "checkpoints" / "last.ckpt").is_file()
    resumed = fit(tmp_path / "killed")
    assert [h["epoch"] for h in resumed.history] == list(range(6))
    assert resumed.history == reference.history and resumed.best_epoch == reference.best_epoch
    assert len({h["lr_scale"] for h in reference.history}) > 1  # the schedule's halving is part of what replays
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                 reference.model.state_dict().values()))
    assert not (tmp_path / "killed" / "checkpoints").exists()

    with pytest.raises(Interrupted):
        fit(tmp_path / "other", stop_at=2)
    restarted = fit(tmp_path / "other", stop_at=None, resume_key={"run": "b"})  # other settings: from epoch 1
    assert restarted.history == reference.history


def test_the_finetune_command_resumes_a_killed_run(synth_dir, tmp_path, monkeypatch, capsys):
    """``robust-mmr finetune`` killed after its second epoch and run again ends with the uninterrupted run's
    weights and validation history."""
    import robust_mmr.tasks.finetune as finetune_module
    import robust_mmr.tasks.module as module_module

    monkeypatch.setattr(module_module, "CHECKPOINT_MINUTES", 0.0)

    args = ["finetune", "--data", str(synth_dir), "max_epochs=3", "patience=3", "batch_size=32", *SMALL_MODEL]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0

    class Dying(finetune_module.ClassifierModule):
        def on_train_epoch_start(self):
            if self.current_epoch == 2:
                raise Interrupted

    monkeypatch.setattr(finetune_module, "ClassifierModule", Dying)
    with pytest.raises(Interrupted):
        main([*args, "--out", str(tmp_path / "killed")])
    monkeypatch.setattr(finetune_module, "ClassifierModule", Dying.__mro__[1])
    assert main([*args, "--out", str(tmp_path / "killed")]) == 0
    assert "continues from its last checkpointed epoch" in capsys.readouterr().out
    whole, killed = (json.loads((tmp_path / r / "task.json").read_text()) for r in ("whole", "killed"))
    assert killed["val_history"] == whole["val_history"] and len(whole["val_history"]) == 3
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
