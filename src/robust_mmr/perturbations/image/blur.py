"""Blur corruptions: gaussian, defocus (disk), motion (line), zoom.

Sizes are in pixels of a 224-px reference image (see ``filters.to_pixels``). Images are
(B, C, H, W) floats in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from robust_mmr.perturbations.image.filters import gaussian_kernels, kernel_blur, separable_blur, to_pixels
from robust_mmr.perturbations.image.params import Uniform
from robust_mmr.perturbations.image.spec import IMAGENET_C, MODALITIES, CorruptionSpec

ZOOM_STEPS = 8  # zoomed copies averaged per sample


def gaussian_blur(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Gaussian blur with per-sample ``sigma`` (reference px)."""
    return separable_blur(x, gaussian_kernels(to_pixels(p["sigma"], x)))


def _kernel_taps(radius: torch.Tensor) -> torch.Tensor:
    """Integer offsets covering the largest radius in the batch: (K,)."""
    r = max(1, int(math.ceil(radius.max().item())))
    return torch.arange(-r, r + 1, device=radius.device, dtype=torch.float32)


def defocus_blur(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Out-of-focus blur: convolution with an anti-aliased disk of ``radius`` (reference px)."""
    radius = to_pixels(p["radius"], x).clamp_min(0.5)
    taps = _kernel_taps(radius)
    dist = torch.sqrt(taps[None, :, None] ** 2 + taps[None, None, :] ** 2)  # (1, K, K)
    disk = (radius[:, None, None] + 0.5 - dist).clamp(0.0, 1.0)
    return kernel_blur(x, disk / disk.sum(dim=(1, 2), keepdim=True))


def motion_blur(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Camera/patient motion: convolution with a centred line of ``length`` (reference px) at ``angle`` (deg)."""
    half = to_pixels(p["length"], x).clamp_min(1.0) / 2
    taps = _kernel_taps(half)
    yy, xx = taps[None, :, None], taps[None, None, :]
    theta = torch.deg2rad(p["angle"])[:, None, None]
    along = xx * torch.cos(theta) + yy * torch.sin(theta)
    across = -xx * torch.sin(theta) + yy * torch.cos(theta)
    beyond = (along.abs() - half[:, None, None]).clamp_min(0.0)
    line = (1.0 - torch.sqrt(across**2 + beyond**2)).clamp_min(0.0)  # 1-px wide anti-aliased segment
    return kernel_blur(x, line / line.sum(dim=(1, 2), keepdim=True))


def zoom_blur(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Average of ZOOM_STEPS centre zooms from 1 to ``max_zoom``."""
    b = x.shape[0]
    steps = torch.linspace(0.0, 1.0, ZOOM_STEPS, device=x.device)
    zoom = 1.0 + (p["max_zoom"][:, None] - 1.0) * steps[None]  # (B, S)
    theta = torch.zeros(b, ZOOM_STEPS, 2, 3, device=x.device)
    theta[..., 0, 0] = 1.0 / zoom
    theta[..., 1, 1] = 1.0 / zoom
    grid = F.affine_grid(theta.view(-1, 2, 3), [b * ZOOM_STEPS, *x.shape[1:]], align_corners=False)
    copies = x.repeat_interleave(ZOOM_STEPS, dim=0)
    zoomed = F.grid_sample(copies, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return zoomed.view(b, ZOOM_STEPS, *x.shape[1:]).mean(dim=1)


SPECS = (
    CorruptionSpec(
        name="gaussian_blur", family="blur", role="train", modalities=MODALITIES,
        levels=tuple({"sigma": s} for s in (1.5, 2.25, 3.0, 4.0, 6.0)),
        apply=gaussian_blur, source=f"{IMAGENET_C} sigma (1,2,3,4,6) reference px, severity 1-2 raised",
    ),
    CorruptionSpec(
        name="defocus_blur", family="blur", role="train", modalities=("xray", "mri", "us", "generic"),
        levels=tuple({"radius": r} for r in (3.0, 4.0, 6.0, 8.0, 10.0)),
        apply=defocus_blur, source=f"{IMAGENET_C} disk radii (reference px)",
    ),
    CorruptionSpec(
        name="motion_blur", family="blur", role="train", modalities=MODALITIES,
        levels=tuple({"length": n} for n in (6.0, 10.0, 15.0, 20.0, 28.0)),
        draws={"angle": Uniform(-90.0, 90.0)},
        apply=motion_blur, source="ours (line length, reference px; ImageNet-C uses radius 10-20)",
    ),
    CorruptionSpec(
        name="zoom_blur", family="blur", role="eval", modalities=MODALITIES,
        levels=tuple({"max_zoom": z} for z in (1.06, 1.11, 1.16, 1.21, 1.26)),
        apply=zoom_blur, source=f"{IMAGENET_C} max zoom (1.11,1.16,1.21,1.26,1.31) shifted down one level",
    ),
)
