"""Running a fine-tuning job and loading its result.

A fine-tuning run directory holds ``model.safetensors`` (backbone + head), ``config.yaml`` (the
backbone's run config), ``task.json`` (task, label vocabulary, fine-tuning settings, init, hold-out,
notes, the epoch kept and every epoch's validation score) and ``logs/``. Model selection and early stopping
use the validation split of the training domains only; the test splits are never loaded here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from robust_mmr.config import RunConfig, load_config, save_config
from robust_mmr.errors import InputError
from robust_mmr.hardware import describe, precision_record
from robust_mmr.runfolder import file_sha256, write_json
from robust_mmr.model import build_model
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.data import (
    Holdout,
    TaskCollator,
    TaskDataset,
    load_task_records,
    record_target,
    screen_training,
    split_records,
    task_loader,
)
from robust_mmr.tasks.labels import NORMALISATION, LabelVocab
from robust_mmr.tasks.model import PairClassifier
from robust_mmr.tasks.module import ClassifierModule, fit_keeping_best, selection_summary
from robust_mmr.tasks.probe import fit_probe, unfreeze
from robust_mmr.training.checkpoint import load_pretrained


def build_backbone(init: str, preset: str, model_overrides: list[str] | None = None):
    """(backbone, tokenizer, run config): from a pre-training run directory, or ``scratch`` from a preset
    (with ``model.*`` overrides; a pre-trained backbone keeps its own config)."""
    if init == "scratch":
        cfg = load_config(preset, model_overrides)
        model, tokenizer = build_model(cfg.model)
        return model, tokenizer, cfg
    model, tokenizer, cfg = load_pretrained(init)
    return model.train(), tokenizer, cfg


def run_finetuning(cfg: FinetuneConfig, data_dir: Path, out: Path, init: str = "scratch", preset: str = "tiny",
                   holdout: Holdout | None = None, vocab_splits: tuple[str, ...] = ("train",),
                   model_overrides: list[str] | None = None, progress: bool = True, resume: bool = True) -> dict:
    """Fine-tune on ``data_dir`` (with ``cfg.freeze_backbone``, train a probe head on the frozen backbone's
    features; with ``cfg.lp_ft``, that probe first, then fine-tune everything) and write the run to ``out``.
    With ``resume``, the full fine-tuning stage checkpoints at epoch ends every few minutes and a killed run
    started again with the same arguments continues from there (:mod:`robust_mmr.tasks.module`; the cheap probe
    stage reruns).
    Returns the summary (also in ``task.json``)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    records = load_task_records(data_dir, cfg.task)
    parts, notes = split_records(records, holdout, cfg.val_fraction, cfg.val_carve)
    skipped: list[dict] = []
    if not cfg.blind:  # a blind run opens no image
        skipped, screened = screen_training(data_dir, parts, cfg.on_bad_sample)
        notes += screened
    vocab_source = [r for r in records if r.split in vocab_splits and (holdout is None or not holdout.is_held_out(r))]
    vocab = LabelVocab.build(record_target(r) for r in vocab_source)
    notes.append(f"answers normalised: {NORMALISATION}; vocabulary of {len(vocab)} from splits {', '.join(vocab_splits)}")
    backbone, tokenizer, run_cfg = build_backbone(init, preset, model_overrides)
    model = PairClassifier(backbone, len(vocab), features=head_features(asdict(cfg)), blind=cfg.blind)
    if cfg.blind:
        notes.append("blind: the image is removed in training and at test (the missing-image token; pixels unread)")
    size, channels = run_cfg.model.image_size, run_cfg.model.channels
    collate = TaskCollator(tokenizer, run_cfg.model.max_text_length, vocab)

    def loader(split: str, shuffle: bool) -> DataLoader:
        return task_loader(TaskDataset(data_dir, parts[split], size, channels, read_images=not cfg.blind,
                                       augment=cfg.augment and split == "train" and shuffle), cfg, collate, shuffle)

    seconds = 0.0
    if cfg.freeze_backbone or cfg.lp_ft:
        probe_cfg = replace(cfg, patience=cfg.max_epochs) if cfg.lp_ft else cfg  # LP-FT: the head to convergence
        module, seconds = fit_probe(model, loader("train", False), loader("val", False), probe_cfg, out, progress)
        notes.append(f"{'LP-FT stage 1, ' if cfg.lp_ft else ''}probe: backbone frozen; a head trained on the mean "
                     f"of each fused stream's tokens (validation {module.best_score:.4f} at epoch {module.best_epoch + 1})")
    if not cfg.freeze_backbone:
        if cfg.lp_ft:
            unfreeze(model.backbone)
        train_loader = loader("train", True)
        module = ClassifierModule(model, cfg, len(train_loader))
        key = resume_key(cfg, init, preset, data_dir, holdout, vocab, model_overrides) if resume else None
        seconds += fit_keeping_best(module, train_loader, loader("val", False), cfg, out, progress, resume_key=key)
    summary = {
        # init and data as absolute paths: the run's records work from any folder
        "task": cfg.task, "init": init if init == "scratch" else str(Path(init).resolve()),
        "preset": preset if init == "scratch" else None, "data": str(Path(data_dir).resolve()),
        "holdout": asdict(holdout) if holdout else None, "labels": list(vocab.labels),
        "finetune": asdict(cfg), "best_val_accuracy": round(module.best_score, 4), **selection_summary(module),
        "counts": {k: len(v) for k, v in parts.items()}, "seconds": seconds,
        "precision": precision_record(cfg.precision, cfg.accelerator), "skipped": skipped,
        "notes": notes,
    }
    notes.append(describe(summary["precision"]))
    save_task_run(out, model, run_cfg, summary)
    return summary


def resume_key(cfg: FinetuneConfig, init: str, preset: str, data_dir: Path, holdout: Holdout | None,
               vocab: LabelVocab, model_overrides: list[str] | None) -> dict:
    """What a fine-tuning run is, for resuming it: settings, the initial weights (by content), data and labels."""
    weights = Path(init) / "model.safetensors"
    return {"finetune": asdict(cfg), "init": init if init == "scratch" else file_sha256(weights),
            "preset": preset if init == "scratch" else None, "model_overrides": list(model_overrides or []),
            "data": str(Path(data_dir).resolve()), "holdout": asdict(holdout) if holdout else None,
            "labels": list(vocab.labels)}


def head_features(settings: dict) -> str:
    """The classifier head's input (:func:`robust_mmr.tasks.model.pair_features`) for fine-tuning ``settings``
    (a FinetuneConfig as a dict, as ``task.json`` records it, older runs included): the probe and LP-FT read the
    mean fused tokens that every pre-training method trains, full fine-tuning M3AE's pooled pair feature; a ``head``
    setting other than ``auto`` names the input itself."""
    if settings.get("head", "auto") != "auto":
        return settings["head"]
    return "mean" if settings.get("freeze_backbone") or settings.get("lp_ft") else "pooled"


def save_task_run(out: Path, model: torch.nn.Module, run_cfg: RunConfig, summary: dict) -> None:
    """Write a fine-tuning run: ``model.safetensors``, the backbone's ``config.yaml`` and ``task.json``. In a
    multi-process run every process holds the same kept weights; only rank 0 writes them."""
    if rank_zero_only.rank != 0:
        return
    # task.json goes first and comes back last, naming the weights' hash: an interrupted save leaves no run, never
    # new weights under old records (read_task_run checks the hash)
    (out / "task.json").unlink(missing_ok=True)
    weights = out / "model.safetensors"
    temp = out / ".model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(temp))
    os.replace(temp, weights)
    save_config(run_cfg, out / "config.yaml")
    write_json(out / "task.json", {**summary, "weights_sha256": file_sha256(weights)})


def read_task_run(run_dir: str | Path):
    """(backbone built from the saved config, tokenizer, run config, task summary, saved weights) of a run; a missing,
    truncated or foreign file, or weights that are not the ones ``task.json`` names, is an :class:`InputError`."""
    run_dir = Path(run_dir)
    for name in ("model.safetensors", "config.yaml", "task.json"):
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir}: missing {name} (not a fine-tuning run directory, or its save was "
                             "interrupted)")
    try:
        task = json.loads((run_dir / "task.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{run_dir / 'task.json'}: unreadable ({err}); the run's save was interrupted or the file "
                         "was changed") from err
    expected = task.get("weights_sha256")
    if expected is not None and file_sha256(run_dir / "model.safetensors") != expected:
        raise InputError(f"{run_dir / 'model.safetensors'}: not the weights task.json was written with (an "
                         "interrupted save, or a file copied in); fine-tune again or restore the file")
    run_cfg = load_config(str(run_dir / "config.yaml"))
    backbone, tokenizer = build_model(run_cfg.model)
    try:
        state = load_file(str(run_dir / "model.safetensors"))
    except Exception as err:  # safetensors raises its own error types for truncated and foreign files
        raise InputError(f"{run_dir / 'model.safetensors'}: not a readable safetensors file ({err})") from err
    return backbone, tokenizer, run_cfg, task, state


def load_finetuned(run_dir: str | Path) -> tuple[PairClassifier, object, RunConfig, dict]:
    """(classifier, tokenizer, backbone run config, task summary) from a fine-tuning run directory."""
    backbone, tokenizer, run_cfg, task, state = read_task_run(run_dir)
    if "labels" not in task:
        raise InputError(f"{run_dir}: a {task.get('task')!r} run, not a VQA or classification run")
    model = PairClassifier(backbone, len(task["labels"]), features=head_features(task["finetune"]),
                           blind=task["finetune"].get("blind", False))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InputError(f"{run_dir}: its weights do not fit its config.yaml and task.json ({str(err)[:200]})") from err
    return model.eval(), tokenizer, run_cfg, task
