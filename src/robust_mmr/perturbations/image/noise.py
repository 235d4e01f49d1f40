"""Noise corruptions: gaussian, shot (Poisson), speckle, impulse (salt & pepper), Rician (MRI).

Noise is drawn independently per pixel and per channel. Images are (B, C, H, W) floats in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from robust_mmr.perturbations.image.filters import per_sample
from robust_mmr.perturbations.image.spec import IMAGENET_C, MODALITIES, CorruptionSpec


def gaussian_noise(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """x + N(0, sigma^2)."""
    return x + per_sample(p["sigma"]) * torch.randn(x.shape, generator=g, device=x.device)


def shot_noise(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Photon counting: Poisson(x * photons) / photons (fewer photons = more noise)."""
    photons = per_sample(p["photons"])
    return torch.poisson(x * photons, generator=g) / photons


def speckle_noise(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Multiplicative noise x * (1 + N(0, sigma^2)), the ultrasound model."""
    return x * (1.0 + per_sample(p["sigma"]) * torch.randn(x.shape, generator=g, device=x.device))


def impulse_noise(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """A fraction ``amount`` of pixels set to 0 or 1 (half each)."""
    hit = torch.rand(x.shape, generator=g, device=x.device) < per_sample(p["amount"])
    salt = torch.rand(x.shape, generator=g, device=x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def rician_noise(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """MRI magnitude noise: |x + sigma*(n1 + i*n2)|."""
    sigma = per_sample(p["sigma"])
    real = x + sigma * torch.randn(x.shape, generator=g, device=x.device)
    imag = sigma * torch.randn(x.shape, generator=g, device=x.device)
    return torch.sqrt(real * real + imag * imag)


SPECS = (
    CorruptionSpec(
        name="gaussian_noise", family="noise", role="train", modalities=("xray", "ct", "us", "generic"),
        levels=tuple({"sigma": s} for s in (0.04, 0.08, 0.12, 0.18, 0.26)),
        apply=gaussian_noise,
        source=f"{IMAGENET_C} sigma (.08,.12,.18,.26,.38) shifted down one level for subtler severity 1",
    ),
    CorruptionSpec(
        name="shot_noise", family="noise", role="train", modalities=("xray", "ct", "generic"),
        levels=tuple({"photons": c} for c in (120.0, 60.0, 25.0, 12.0, 5.0)),
        apply=shot_noise, source=f"{IMAGENET_C} photons (60,25,12,5,3) shifted down one level",
    ),
    CorruptionSpec(
        name="speckle_noise", family="noise", role="train", modalities=("us", "generic"),
        levels=tuple({"sigma": s} for s in (0.1, 0.2, 0.3, 0.45, 0.6)),
        apply=speckle_noise, source=f"{IMAGENET_C} sigma (.15,.2,.35,.45,.6), evened out",
    ),
    CorruptionSpec(
        name="impulse_noise", family="noise", role="eval", modalities=MODALITIES,
        levels=tuple({"amount": a} for a in (0.01, 0.03, 0.06, 0.09, 0.17)),
        apply=impulse_noise,
        source=f"{IMAGENET_C} amounts (.03,.06,.09,.17,.27) shifted down one level",
    ),
    CorruptionSpec(
        name="rician_noise", family="noise", role="train", modalities=("mri",),
        levels=tuple({"sigma": s} for s in (0.03, 0.05, 0.08, 0.12, 0.17)),
        apply=rician_noise, source="ours (MRI magnitude noise; matched to gaussian_noise strength)",
    ),
)
