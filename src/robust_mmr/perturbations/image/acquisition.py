"""Acquisition artefacts: bias field (MRI/US/X-ray shading), MRI N/2 ghosting, CT rings and CT metal streaks.

Images are (B, C, H, W) floats in [0, 1]; one artefact per image, identical on every channel.
Positions use :func:`filters.coordinate_grid` units (shorter side spans [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from robust_mmr.perturbations.image.filters import coordinate_grid, per_sample, reference_to_unit
from robust_mmr.perturbations.image.params import Choice, Uniform
from robust_mmr.perturbations.image.spec import CorruptionSpec

MAX_RINGS = 8
MAX_STREAKS = 10
RADIAL_BINS = 1024  # ring profile samples along the radius
RING_WIDTH = reference_to_unit(1.0)  # Gaussian profile sigma of one ring / streak
STREAK_WIDTH = reference_to_unit(1.5)
METAL_RADIUS = reference_to_unit(3.0)


def bias_field(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Smooth multiplicative shading x * exp(amplitude * f), f a random quadratic surface scaled to max |f| = 1.

    ``coefficients`` (B, 5) weight the basis (x, y, x^2, y^2, xy).
    """
    yy, xx = coordinate_grid(x)
    basis = torch.stack([xx, yy, xx * xx, yy * yy, xx * yy], dim=1)  # (1, 5, H, W)
    surface = (p["coefficients"][:, :, None, None] * basis).sum(dim=1)  # (B, H, W)
    surface = surface / surface.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    return x * torch.exp(per_sample(p["amplitude"]) * surface[:, None])


def mri_ghosting(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """N/2 ghost: odd k-space lines along the phase-encoding ``axis`` (0 rows, 1 columns) carry a
    phase error ``phase`` (rad). Closed form of the magnitude image:
    |x (1 + e^{i phase}) / 2 + roll(x, N/2) (1 - e^{i phase}) / 2|."""
    h, w = x.shape[-2:]
    vertical = torch.roll(x, shifts=h // 2, dims=-2)
    horizontal = torch.roll(x, shifts=w // 2, dims=-1)
    ghost = torch.where(per_sample(p["axis"]) == 0, vertical, horizontal)
    cos, sin = per_sample(torch.cos(p["phase"])), per_sample(torch.sin(p["phase"]))
    real = x * (1 + cos) / 2 + ghost * (1 - cos) / 2
    imag = (x - ghost) * sin / 2
    return torch.sqrt(real * real + imag * imag)


def _active(count: torch.Tensor, slots: int) -> torch.Tensor:
    """(B,) counts -> (B, slots) 1.0 for the first ``count`` slots, else 0."""
    return (torch.arange(slots, device=count.device)[None] < count[:, None]).float()


def ct_ring(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Detector-miscalibration rings: ``count`` thin circles of random radius around a point near the
    centre, each brightening or darkening by ``amplitude``.

    The ring pattern depends on the radius only, so it is tabulated on a fine 1-D radius grid
    (B, RADIAL_BINS) and looked up per pixel by linear interpolation.
    """
    yy, xx = coordinate_grid(x)
    centre = p["centre"]  # (B, 2) as (y, x)
    r = torch.sqrt((yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2)  # (B, H, W)
    r_max = float(r.max()) + 1e-3
    grid = torch.linspace(0.0, r_max, RADIAL_BINS, device=x.device)
    profile = torch.exp(-0.5 * ((grid[None, None] - p["radii"][:, :, None]) / RING_WIDTH) ** 2)  # (B, R, N)
    weights = p["signs"] * _active(p["count"], MAX_RINGS)
    table = (weights[:, :, None] * profile).sum(dim=1)  # (B, N)
    position = r.flatten(1) * ((RADIAL_BINS - 1) / r_max)
    low = position.floor().long().clamp(max=RADIAL_BINS - 2)
    frac = position - low
    rings = torch.gather(table, 1, low) * (1 - frac) + torch.gather(table, 1, low + 1) * frac
    return x + per_sample(p["amplitude"]) * rings.view(r.shape)[:, None]


def ct_streak(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Metal artefact: a bright metal spot with ``count`` straight bright/dark streaks through it."""
    yy, xx = coordinate_grid(x)
    dy = yy - p["centre"][:, :1, None]
    dx = xx - p["centre"][:, 1:, None]  # (B, H, W)
    theta = torch.deg2rad(p["angles"])[:, :, None, None]  # (B, S, 1, 1)
    across = -dx[:, None] * torch.sin(theta) + dy[:, None] * torch.cos(theta)
    streaks = torch.exp(-0.5 * (across / STREAK_WIDTH) ** 2)  # (B, S, H, W)
    weights = p["signs"] * _active(p["count"], MAX_STREAKS)
    field = (weights[:, :, None, None] * streaks).sum(dim=1)
    metal = (dx * dx + dy * dy < METAL_RADIUS**2).float()[:, None]
    return torch.maximum(x + per_sample(p["amplitude"]) * field[:, None], metal)


SPECS = (
    CorruptionSpec(
        name="bias_field", family="artefact", role="train", modalities=("xray", "mri", "us", "generic"),
        levels=tuple({"amplitude": a} for a in (0.15, 0.3, 0.45, 0.65, 0.9)),
        draws={"coefficients": Uniform(-1.0, 1.0, size=5)},
        apply=bias_field, source="ours (log-quadratic field, cf. TorchIO RandomBiasField)",
    ),
    CorruptionSpec(
        name="mri_ghosting", family="artefact", role="eval", modalities=("mri",),
        levels=tuple({"phase": v} for v in (0.25, 0.45, 0.7, 1.0, 1.4)),
        draws={"axis": Choice((0.0, 1.0))},
        apply=mri_ghosting, source="ours (N/2 ghost from an odd/even k-space line phase error)",
    ),
    CorruptionSpec(
        name="ct_ring", family="artefact", role="train", modalities=("ct",),
        levels=tuple(
            {"amplitude": a, "count": n} for a, n in ((0.04, 2.0), (0.06, 3.0), (0.09, 4.0), (0.12, 6.0), (0.16, 8.0))
        ),
        draws={
            "centre": Uniform(-0.1, 0.1, size=2),
            "radii": Uniform(0.05, 0.9, size=MAX_RINGS),
            "signs": Choice((-1.0, 1.0), size=MAX_RINGS),
        },
        apply=ct_ring, source="ours",
    ),
    CorruptionSpec(
        name="ct_streak", family="artefact", role="eval", modalities=("ct",),
        levels=tuple(
            {"amplitude": a, "count": n} for a, n in ((0.04, 2.0), (0.06, 3.0), (0.09, 5.0), (0.12, 7.0), (0.16, 10.0))
        ),
        draws={
            "centre": Uniform(-0.5, 0.5, size=2),
            "angles": Uniform(0.0, 180.0, size=MAX_STREAKS),
            "signs": Choice((-1.0, 1.0), size=MAX_STREAKS),
        },
        apply=ct_streak, source="ours",
    ),
)
