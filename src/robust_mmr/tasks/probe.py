"""The probe protocol: a head trained on frozen pre-trained features (``finetune freeze_backbone=true``).

The standard way to compare pre-training methods without fine-tuning washing their differences out
(MAE's linear probing; here a small MLP, since VQA needs the interaction of image and question that
the fused features hold). The backbone is frozen (``requires_grad`` off, eval mode), its features for
the training and validation items are computed once, and the head trains on the cached tensors with
the same optimiser, schedule, early stopping and best-epoch selection as full fine-tuning
(:class:`robust_mmr.tasks.module.FinetuneModule`). The saved run holds the unchanged backbone weights
and the trained head, so every evaluation protocol runs on it as on a fine-tuned run. The features are
computed on the training device (:func:`feature_placement`) and cached on the CPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from robust_mmr.hardware import FP32, autocast, resolve_precision, uses_cuda
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.model import PairClassifier, pair_features
from robust_mmr.tasks.module import ClassifierModule, fit_keeping_best


class HeadOnly(nn.Module):
    """A head as a model of its own: features (B, F) → output; every parameter is a head parameter."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())


def freeze(backbone: nn.Module) -> None:
    """No gradients and eval mode (no dropout) for the backbone."""
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)


def unfreeze(backbone: nn.Module) -> None:
    """Gradients and train mode again (the fine-tuning stage of LP-FT)."""
    backbone.train()
    for p in backbone.parameters():
        p.requires_grad_(True)


def feature_placement(cfg: FinetuneConfig) -> tuple[torch.device, str]:
    """Where and at which resolved precision frozen-backbone features are computed: this process's CUDA GPU (by
    ``LOCAL_RANK`` in a multi-GPU run) under the precision rule's autocast when ``cfg.accelerator`` trains on one;
    else the CPU in fp32, as the features always were there."""
    if uses_cuda(cfg.accelerator) and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))), resolve_precision(cfg.precision, "gpu")
    return torch.device("cpu"), FP32


@torch.no_grad()
def classifier_features(model: PairClassifier, loader: DataLoader, device: str | torch.device = "cpu",
                        precision: str = FP32) -> list[dict[str, Tensor]]:
    """The classifier's input features of every batch of ``loader``: [{"features": (B, F) float32, "labels": (B,)}]
    on the CPU. The model runs on ``device`` at ``precision`` (a resolved one), then goes back to the CPU."""
    model.to(device)
    batches = []
    for batch in loader:
        with autocast(precision, device):
            fused = model.backbone(*(batch[k].to(device) for k in ("pixels", "input_ids", "attention_mask")))
            features = pair_features(fused, model.features)
        batches.append({"features": features.float().cpu(), "labels": batch["labels"]})
    model.cpu()
    return batches


class CachedBatches(torch.utils.data.Dataset):
    """Precomputed batches (tensors, or lists such as image keys) as a dataset of items, for a shuffled
    DataLoader over cached features."""

    def __init__(self, batches: list[dict]):
        self.items = {k: torch.cat([b[k] for b in batches]) if isinstance(batches[0][k], Tensor)
                      else [v for b in batches for v in b[k]] for k in batches[0]}

    def __len__(self) -> int:
        return len(next(iter(self.items.values())))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.items.items()}


def cached_loaders(train: list[dict], val: list[dict], cfg: FinetuneConfig) -> tuple[DataLoader, DataLoader]:
    """Shuffled (seeded) training and plain validation loaders over cached feature batches."""
    generator = torch.Generator().manual_seed(cfg.seed)
    train_set = CachedBatches(train)
    return (DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                       drop_last=len(train_set) > cfg.batch_size),
            DataLoader(CachedBatches(val), batch_size=cfg.batch_size))


def fit_probe(model: PairClassifier, train_loader: DataLoader, val_loader: DataLoader, cfg: FinetuneConfig,
              out, progress: bool):
    """Freeze ``model.backbone``, cache the features of both loaders, train ``model.head`` on them and keep
    its best validation epoch. Returns (the fitted module, seconds)."""
    freeze(model.backbone)
    device, precision = feature_placement(cfg)
    train, val = cached_loaders(classifier_features(model, train_loader, device, precision),
                                classifier_features(model, val_loader, device, precision), cfg)
    module = ClassifierModule(HeadOnly(model.head), cfg, len(train))
    return module, fit_keeping_best(module, train, val, cfg, out, progress)
