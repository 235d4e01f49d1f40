"""Config validation (RELIABILITY.md, case 5): bad configs fail before any work, naming the key and what is allowed."""

from __future__ import annotations

import pytest

from robust_mmr.cli.main import main
from robust_mmr.config import PRESETS, load_config
from robust_mmr.errors import InputError


@pytest.mark.parametrize("override, key, allowed", [
    ("objective.image_mask_ratio=1.0", "objective.image_mask_ratio", "in (0, 1)"),
    ("objective.image_mask_ratio=0", "objective.image_mask_ratio", "in (0, 1)"),
    ("objective.text_mask_prob=1.5", "objective.text_mask_prob", "in (0, 1)"),
    ("train.batch_size=0", "train.batch_size", "> 0"),
    ("train.batch_size=-4", "train.batch_size", "> 0"),
    ("objective.mode_probs=[0, 0, 0]", "objective.mode_probs", "positive sum"),
    ("objective.mode_probs=[0.5, -0.1, 0.6]", "objective.mode_probs", ">= 0"),
    ("model.decoder.read_layer=3", "model.decoder.read_layer", "1..2"),
    ("model.decoder.read_layer=0", "model.decoder.read_layer", "1..2"),
    ("model.vision.hidden=100", "model.vision.hidden", "multiple of model.vision.heads (3)"),
    ("model.fusion.heads=5", "model.fusion.hidden", "multiple of model.fusion.heads (5)"),
    ("objective.itm_weight=1.0", "objective.itm_weight", "model.itm_head"),
    ("objective.method=mae", "objective.method", "mmr, mmr-aug, robust-mmr"),
    ("objective.modality=pet", "objective.modality", "xray"),
    ("train.precision=fp8", "train.precision", "bf16-mixed"),
    ("train.strategy=horovod", "train.strategy", "ddp"),
    ("train.strategy=fsdp", "train.strategy", "fsdp is not supported yet"),
    ("train.accumulate_grad_batches=0", "train.accumulate_grad_batches", "> 0"),
    ("train.checkpoint_minutes=-5", "train.checkpoint_minutes", ">= 0"),
    ("train.on_bad_sample=ignore", "train.on_bad_sample", "skip, fail"),
    ("model.image_size=100", "model.image_size", "multiple of patch_size (16)"),
    ("train.lr=0", "train.lr", "> 0"),
    ("objective.drop_prob=2", "objective.drop_prob", "in [0, 1]"),
])
def test_impossible_values_name_the_key_and_what_is_allowed(override, key, allowed):
    with pytest.raises(InputError) as err:
        load_config("tiny", [override])
    message = str(err.value)
    assert f"config key {key}:" in message and allowed in message


@pytest.mark.parametrize("override, message", [
    ("train.max_stepz=3", "unknown key(s) max_stepz; allowed:"),
    ("model.vision.depth=3", "unknown key(s) depth"),
    ("train.batch_size=eight", "train: batch_size: expected int, got 'eight'"),
    ("train.batch_size=true", "expected int, got True"),
    ("objective.mode_probs=[0.5, 0.5]", "expected a list of 3 values"),
])
def test_unknown_keys_and_wrong_types_are_rejected(override, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config("tiny", [override])


def test_presets_and_valid_overrides_pass():
    for preset in PRESETS:
        load_config(preset)
    cfg = load_config("base", ["objective.itm_weight=0.5", "model.decoder.read_layer=6", "train.on_bad_sample=fail"])
    assert cfg.objective.itm_weight == 0.5 and cfg.train.on_bad_sample == "fail"
    assert load_config("tiny", ["train.lr=5e-4"]).train.lr == 5e-4  # YAML 1.1 reads this as a string


def test_fsdp_is_refused_with_the_reason_and_the_alternative():
    with pytest.raises(InputError) as err:
        load_config("base", ["train.strategy=fsdp", "train.devices=8"])
    message = str(err.value)
    assert "allowed: one of auto, ddp, ddp_spawn, ddp_find_unused_parameters_true. fsdp is not supported yet" in message
    assert "use ddp" in message


def test_base_checkpoints_by_time_not_every_few_steps():
    train = load_config("base").train
    assert train.checkpoint_every == 0 and train.checkpoint_minutes == 30 and train.accumulate_grad_batches == 1
    assert load_config("base", ["train.checkpoint_every=1000"]).train.checkpoint_every == 1000


def test_a_non_number_for_a_float_key_is_rejected():
    with pytest.raises(InputError, match="train: lr: expected float, got 'fast'"):
        load_config("tiny", ["train.lr=fast"])


@pytest.mark.parametrize("args, message", [
    (["train.batch_size=0"], "config key train.batch_size"),
    (["objective.image_mask_ratio=1.5"], "config key objective.image_mask_ratio"),
])
def test_cli_fails_before_any_work(synth_dir, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # no run directory, no model built


def test_cli_names_a_missing_data_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere: no image_text.jsonl there (the directory does not exist)" in capsys.readouterr().err
    assert not out.exists()
