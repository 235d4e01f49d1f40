"""Fine-tuning settings (the backbone's own config travels with its pre-training run)."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("vqa", "classify", "retrieve")


@dataclass
class FinetuneConfig:
    task: str = "vqa"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-5  # backbone
    head_lr_multiplier: float = 20.0  # the new classifier head
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    precision: str = "32-true"
    accelerator: str = "cpu"  # Lightning's: cpu | gpu | auto ...; evaluation always runs on the CPU
    num_workers: int = 0
    seed: int = 0
    val_fraction: float = 0.1  # carved from train (by image) when the data has no val split
