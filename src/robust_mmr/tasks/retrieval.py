"""Running a retrieval fine-tuning job (image–caption pairs of ``image_text.jsonl``) and loading its result.

The run directory has the layout of :mod:`robust_mmr.tasks.finetune`: ``model.safetensors`` (backbone
+ ITC projections + temperature), ``config.yaml`` (the backbone's run config), ``task.json``
(``"task": "retrieve"``, the embedding width, fine-tuning settings, init, notes) and ``logs/``.
Model selection uses the validation pairs (val R@1, mean of both directions), never the test split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from robust_mmr.config import RunConfig
from robust_mmr.data.images import stack_pixels
from robust_mmr.data.manifest import read_manifest
from robust_mmr.data.schema import ImageTextRecord
from robust_mmr.errors import InputError
from robust_mmr.hardware import FP32, autocast, describe, precision_record
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.data import Holdout, TaskDataset, screen_training, split_records, task_loader
from robust_mmr.tasks.finetune import build_backbone, read_task_run, save_task_run
from robust_mmr.tasks.module import fit_keeping_best, selection_summary
from robust_mmr.tasks.probe import cached_loaders, feature_placement, freeze
from robust_mmr.tasks.retrieval_model import RetrievalModel
from robust_mmr.tasks.retrieval_module import RetrievalModule

PAIRS_MANIFEST = "image_text.jsonl"


def load_pairs(root: Path) -> list[ImageTextRecord]:
    path = Path(root) / PAIRS_MANIFEST
    if not path.is_file():
        raise InputError(f"{root}: no {PAIRS_MANIFEST} for task 'retrieve'")
    return read_manifest(path)


def is_retrieval_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a retrieval fine-tuning run (its task.json says ``"task": "retrieve"``)."""
    path = Path(run_dir) / "task.json"
    return path.is_file() and json.loads(path.read_text()).get("task") == "retrieve"


@dataclass
class PairCollator:
    """Batch: pixels (B, C, H, W), input_ids / attention_mask (B, L) of the captions, images (B,) keys."""

    tokenizer: object
    max_length: int

    def __call__(self, items: list[tuple[ImageTextRecord, torch.Tensor]]) -> dict:
        records, images = zip(*items)
        enc = self.tokenizer([r.text for r in records], padding="longest", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"pixels": stack_pixels(images), "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "images": [r.image for r in records]}


def run_retrieval_finetuning(cfg: FinetuneConfig, data_dir: Path, out: Path, init: str = "scratch",
                             preset: str = "tiny", model_overrides: list[str] | None = None,
                             holdout: Holdout | None = None, progress: bool = True) -> dict:
    """Fine-tune ITC retrieval on ``data_dir`` (with ``cfg.freeze_backbone``: train only the ITC projections
    on the frozen backbone's features, the probe) and write the run to ``out``. Returns the summary (also
    in ``task.json``). ``preset`` and ``model_overrides`` (``model.*=...``) build a scratch backbone;
    ``holdout`` leaves a domain out of training and validation (for the cross-domain protocol)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts, notes = split_records(load_pairs(data_dir), holdout, cfg.val_fraction, cfg.val_carve)
    skipped, screened = screen_training(data_dir, parts, cfg.on_bad_sample)
    notes += screened
    backbone, tokenizer, run_cfg = build_backbone(init, preset, model_overrides)
    dim = run_cfg.model.projection_dim
    model = RetrievalModel(backbone, dim)
    if model.has_itm and not cfg.freeze_backbone:
        notes.append("backbone has an ITM head: trained with hard negatives beside ITC (for top-k re-ranking)")
    size, channels = run_cfg.model.image_size, run_cfg.model.channels
    collate = PairCollator(tokenizer, run_cfg.model.max_text_length)

    def loader(split: str, shuffle: bool) -> DataLoader:
        return task_loader(TaskDataset(data_dir, parts[split], size, channels), cfg, collate, shuffle,
                           drop_last=shuffle and len(parts[split]) > cfg.batch_size)

    if cfg.freeze_backbone:
        freeze(backbone)
        device, precision = feature_placement(cfg)
        train, val = cached_loaders(unimodal_features(model, loader("train", False), device, precision),
                                    unimodal_features(model, loader("val", False), device, precision), cfg)
        notes.append("probe: backbone frozen; ITC projections trained on its image CLS and mean caption tokens")
    else:
        train, val = loader("train", True), loader("val", False)
    module = RetrievalModule(model, cfg, len(train))
    seconds = fit_keeping_best(module, train, val, cfg, out, progress)
    summary = {
        "task": "retrieve", "init": init if init == "scratch" else str(Path(init).resolve()),
        "preset": preset if init == "scratch" else None, "data": str(Path(data_dir).resolve()),
        "holdout": asdict(holdout) if holdout else None,
        "dim": dim, "finetune": asdict(cfg), "best_val_r1": round(module.best_score, 4), **selection_summary(module),
        "temperature": round(1.0 / model.logit_scale().item(), 4),
        "counts": {k: len(v) for k, v in parts.items() if k != "test_ood"},
        "seconds": seconds, "notes": notes,
        "precision": precision_record(cfg.precision, cfg.accelerator), "skipped": skipped,
    }
    notes.append(describe(summary["precision"]))
    save_task_run(out, model, run_cfg, summary)
    return summary


@torch.no_grad()
def unimodal_features(model: RetrievalModel, loader: DataLoader, device: str | torch.device = "cpu",
                      precision: str = FP32) -> list[dict]:
    """Per batch: the backbone's image (B, D) and caption (B, D) features (float32, on the CPU) and the image keys
    (for the probe). The model runs on ``device`` at ``precision`` (a resolved one), then goes back to the CPU."""
    model.to(device)
    batches = []
    for batch in loader:
        with autocast(precision, device):
            image_tokens, _ = model.backbone.encode_image(batch["pixels"].to(device))
            text_tokens, text_valid = model.backbone.encode_text(batch["input_ids"].to(device),
                                                                 batch["attention_mask"].to(device))
            image, text = model.image_feature(image_tokens), model.text_feature(text_tokens, text_valid)
        batches.append({"image_feature": image.float().cpu(), "text_feature": text.float().cpu(),
                        "images": batch["images"]})
    model.cpu()
    return batches


def load_retrieval(run_dir: str | Path) -> tuple[RetrievalModel, object, RunConfig, dict]:
    """(retrieval model, tokenizer, backbone run config, task summary) from a retrieval run directory."""
    backbone, tokenizer, run_cfg, task, state = read_task_run(run_dir)
    if task.get("task") != "retrieve":
        raise InputError(f"{run_dir}: a {task.get('task')!r} run, not a retrieval run")
    model = RetrievalModel(backbone, task["dim"])
    model.load_state_dict(state, strict=True)
    return model.eval(), tokenizer, run_cfg, task
