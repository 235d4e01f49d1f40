"""The probe protocol: a head trained on frozen pre-trained features (``finetune freeze_backbone=true``).

The standard way to compare pre-training methods without fine-tuning washing their differences out
(MAE's linear probing; here a small MLP, since VQA needs the interaction of image and question that
the fused features hold). The backbone is frozen (``requires_grad`` off, eval mode), its features for
the training and validation items are computed once, and the head trains on the cached tensors with
the same optimiser, schedule, early stopping and best-epoch selection as full fine-tuning
(:class:`robust_mmr.tasks.module.FinetuneModule`). The saved run holds the unchanged backbone weights
and the trained head, so every evaluation protocol runs on it as on a fine-tuned run.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

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


@torch.no_grad()
def classifier_features(model: PairClassifier, loader: DataLoader) -> list[dict[str, Tensor]]:
    """The classifier's input features of every batch of ``loader``: [{"features": (B, F), "labels": (B,)}]."""
    batches = []
    for batch in loader:
        fused = model.backbone(batch["pixels"], batch["input_ids"], batch["attention_mask"])
        batches.append({"features": pair_features(fused, model.features), "labels": batch["labels"]})
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
    train, val = cached_loaders(classifier_features(model, train_loader), classifier_features(model, val_loader), cfg)
    module = ClassifierModule(HeadOnly(model.head), cfg, len(train))
    return module, fit_keeping_best(module, train, val, cfg, out, progress)
