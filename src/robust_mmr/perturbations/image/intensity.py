"""Intensity corruptions: brightness ±, contrast ±, gamma ±, CT window/level jitter.

Images are (B, C, H, W) floats in [0, 1]; one transform per image, applied to every channel.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from robust_mmr.perturbations.image.filters import per_sample
from robust_mmr.perturbations.image.params import Choice
from robust_mmr.perturbations.image.spec import IMAGENET_C, MEDMNIST_C, MODALITIES, CorruptionSpec


def brightness_shift(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """x + shift (shift < 0 darkens)."""
    return x + per_sample(p["shift"])


def contrast_scale(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Scale deviations from the image mean by ``factor`` (< 1 flattens, > 1 stretches)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * per_sample(p["factor"])


def gamma_curve(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """x ** gamma (gamma > 1 darkens mid-tones, < 1 brightens them)."""
    return x.clamp_min(0.0) ** per_sample(p["gamma"])


def window_jitter(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Re-window a CT image already windowed to [0, 1]: level moved by ``level_shift`` * sign, width
    multiplied by 2 ** (``width_log2`` * sign). Values leaving the new window clip."""
    level = 0.5 + per_sample(p["level_shift"] * p["level_sign"])
    width = per_sample(torch.exp2(p["width_log2"] * p["width_sign"]))
    return (x - level) / width + 0.5


SPECS = (
    CorruptionSpec(
        name="brightness_up", family="intensity", role="train", modalities=MODALITIES,
        levels=tuple({"shift": s} for s in (0.05, 0.1, 0.15, 0.2, 0.3)),
        apply=brightness_shift, source=f"{IMAGENET_C} shifts (.1,.2,.3,.4,.5) lowered for dark medical images",
    ),
    CorruptionSpec(
        name="brightness_down", family="intensity", role="train", modalities=MODALITIES,
        levels=tuple({"shift": -s} for s in (0.05, 0.1, 0.15, 0.2, 0.3)),
        apply=brightness_shift, source=f"{MEDMNIST_C} family; mirror of brightness_up",
    ),
    CorruptionSpec(
        name="contrast_up", family="intensity", role="train", modalities=MODALITIES,
        levels=tuple({"factor": f} for f in (1.2, 1.4, 1.7, 2.1, 2.6)),
        apply=contrast_scale, source=f"{MEDMNIST_C} family; factors ours",
    ),
    CorruptionSpec(
        name="contrast_down", family="intensity", role="train", modalities=MODALITIES,
        levels=tuple({"factor": f} for f in (0.8, 0.65, 0.5, 0.35, 0.2)),
        apply=contrast_scale, source=f"{IMAGENET_C} factor (.4,.3,.2,.1,.05) softened; ours",
    ),
    CorruptionSpec(
        name="gamma_up", family="intensity", role="train", modalities=MODALITIES,
        levels=tuple({"gamma": v} for v in (1.2, 1.4, 1.7, 2.1, 2.6)),
        apply=gamma_curve, source=f"{MEDMNIST_C} family (gamma correction); values ours",
    ),
    CorruptionSpec(
        name="gamma_down", family="intensity", role="train", modalities=MODALITIES,
        levels=tuple({"gamma": 1.0 / v} for v in (1.2, 1.4, 1.7, 2.1, 2.6)),
        apply=gamma_curve, source=f"{MEDMNIST_C} family; reciprocal of gamma_up",
    ),
    CorruptionSpec(
        name="ct_window_jitter", family="intensity", role="train", modalities=("ct",),
        levels=tuple(
            {"level_shift": s, "width_log2": w}
            for s, w in ((0.03, 0.1), (0.05, 0.2), (0.08, 0.3), (0.12, 0.45), (0.16, 0.6))
        ),
        draws={"level_sign": Choice((-1.0, 1.0)), "width_sign": Choice((-1.0, 1.0))},
        apply=window_jitter, source="ours (level shift as fraction of the window, width factor 2**±w)",
    ),
)
