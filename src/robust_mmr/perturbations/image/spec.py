"""What a corruption is: a name, where it applies, its parameter table, and one batched function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from robust_mmr.config import IMAGE_MODALITIES as MODALITIES
from robust_mmr.perturbations.image.params import ParamRow

ROLES = ("train", "eval")
# Sources of parameter values, cited in each spec's ``source``.
IMAGENET_C = "ImageNet-C (Hendrycks & Dietterich 2019)"
MEDMNIST_C = "MedMNIST-C (Di Salvo et al. 2024)"

# apply(images (B, C, H, W) float in [0, 1], params name -> (B,) or (B, k), generator) -> (B, C, H, W)
CorruptionFn = Callable[[torch.Tensor, Mapping[str, torch.Tensor], torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class CorruptionSpec:
    """One image corruption.

    ``levels`` has five rows (severity 1–5) of parameters; ``draws`` holds severity-independent
    random parameters. ``apply`` is the only implementation, used by both evaluation and training.
    ``role`` "eval" means held out of training entirely. ``source`` cites where the values come from.
    """

    name: str
    family: str
    role: str
    modalities: tuple[str, ...]
    levels: tuple[ParamRow, ...]
    apply: CorruptionFn
    source: str
    draws: ParamRow = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.levels) != 5:
            raise ValueError(f"{self.name}: needs 5 severity rows, got {len(self.levels)}")
        keys = [tuple(row) for row in self.levels]
        if len(set(keys)) != 1:
            raise ValueError(f"{self.name}: every severity row must have the same parameters")
        kinds = {key: {type(row[key]) for row in self.levels} for key in keys[0]}
        if any(len(k) != 1 for k in kinds.values()):
            raise ValueError(f"{self.name}: a parameter mixes fixed and random values across severities")
        if self.role not in ROLES or not set(self.modalities) <= set(MODALITIES):
            raise ValueError(f"{self.name}: bad role {self.role!r} or modalities {self.modalities}")
