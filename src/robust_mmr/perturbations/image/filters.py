"""Batched filtering helpers shared by the corruption families (per-sample kernels, no pixel loops).

Spatial parameters in the tables are in pixels of a 224-px reference image (the ImageNet-C size);
:func:`to_pixels` rescales them to the image's shorter side so a corruption looks the same at any
resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REFERENCE_SIDE = 224


def per_sample(value: torch.Tensor) -> torch.Tensor:
    """(B,) per-sample values -> (B, 1, 1, 1) for broadcasting over an image batch."""
    return value.view(-1, 1, 1, 1)


def to_pixels(value: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Reference-image pixels (B,) -> pixels of ``images`` (B, C, H, W)."""
    return value * (min(images.shape[-2:]) / REFERENCE_SIDE)


def coordinate_grid(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (yy, xx), each (1, H, W), centred on the image; the shorter side
    spans [-1, 1] and the aspect ratio is kept (so circles stay round)."""
    h, w = images.shape[-2:]
    half = min(h, w) / 2
    ys = (torch.arange(h, device=images.device, dtype=torch.float32) - (h - 1) / 2) / half
    xs = (torch.arange(w, device=images.device, dtype=torch.float32) - (w - 1) / 2) / half
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return yy[None], xx[None]


def reference_to_unit(value: float) -> float:
    """Reference-image pixels -> units of :func:`coordinate_grid` (shorter side = 2)."""
    return 2.0 * value / REFERENCE_SIDE


def gaussian_kernels(sigma: torch.Tensor) -> torch.Tensor:
    """1-D Gaussian kernels per sample, zero-padded to a common odd length: (B,) -> (B, K)."""
    radius = max(1, int(torch.ceil(3.0 * sigma.max()).item()))
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    kernels = torch.exp(-0.5 * (taps[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    return kernels / kernels.sum(dim=1, keepdim=True)


def separable_blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur each sample with its own symmetric 1-D kernel along both axes.

    Args:
        images: (B, C, H, W); kernels: (B, K) with odd K. Borders replicate edge pixels.
    """
    b, c, h, w = images.shape
    k = kernels.shape[1]
    r = k // 2
    weight = kernels.repeat_interleave(c, dim=0)  # (B*C, K)
    flat = images.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), weight.view(b * c, 1, 1, k), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), weight.view(b * c, 1, k, 1), groups=b * c)
    return flat.view(b, c, h, w)


def kernel_blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each sample with its own 2-D kernel (FFT; exact linear convolution via edge padding).

    Args:
        images: (B, C, H, W); kernels: (B, K, K) with odd K, each summing to 1.
    """
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    r = k // 2
    padded = F.pad(images, (r, r, r, r), mode="replicate")
    size = padded.shape[-2:]
    placed = torch.zeros(b, *size, device=images.device, dtype=images.dtype)
    placed[:, :k, :k] = kernels
    placed = torch.roll(placed, shifts=(-r, -r), dims=(1, 2))  # kernel centre at (0, 0)
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(placed)[:, None]
    out = torch.fft.irfft2(spectrum, s=size)
    return out[..., r : r + h, r : r + w]


def resize_round_trip(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Shrink each sample by its ``factor`` (B,) with area averaging, then enlarge back bilinearly.

    Samples sharing a factor are resized together (at most five distinct factors per batch).
    """
    out = torch.empty_like(images)
    h, w = images.shape[-2:]
    for value in torch.unique(factor).tolist():
        idx = (factor == value).nonzero(as_tuple=True)[0]
        small_size = (max(1, round(h * value)), max(1, round(w * value)))
        small = F.interpolate(images[idx], size=small_size, mode="area")
        out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out
