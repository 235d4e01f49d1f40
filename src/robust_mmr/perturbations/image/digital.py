"""Digital corruptions: JPEG compression, pixelation, downsampling (down then smooth up).

Images are (B, C, H, W) floats in [0, 1] with C in {1, 3}.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import torch
from PIL import Image

from robust_mmr.perturbations.image.filters import resize_round_trip
from robust_mmr.perturbations.image.spec import IMAGENET_C, MODALITIES, CorruptionSpec


def jpeg(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Encode and decode with PIL's JPEG at per-sample ``quality`` (one PIL call per sample, on CPU).

    The image is quantised to 8 bits on the way, as a JPEG file would be.
    """
    pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    quality = p["quality"].round().int().tolist()
    out = np.empty_like(pixels)
    for i, (image, q) in enumerate(zip(pixels, quality)):
        mode = "L" if image.shape[-1] == 1 else "RGB"
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if mode == "L" else image, mode=mode).save(buffer, format="JPEG", quality=q)
        decoded = np.asarray(Image.open(buffer))
        out[i] = decoded[..., None] if mode == "L" else decoded
    return torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).to(x.dtype) / 255.0


def _block_average(size: int, scale: float, device: torch.device) -> torch.Tensor:
    """(size, size) matrix replacing each pixel by the mean of its block, with round(size * scale)
    blocks of (near-)equal width along the axis."""
    blocks = max(1, round(size * scale))
    block_of = (torch.arange(size, device=device) * blocks) // size  # (size,)
    same = (block_of[:, None] == block_of[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def pixelate(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Replace each block by its mean, with round(side * ``scale``) blocks per side (visible blocks).

    Samples sharing a scale are pixelated together: rows_avg @ image @ cols_avg^T.
    """
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for value in torch.unique(p["scale"]).tolist():
        index = (p["scale"] == value).nonzero(as_tuple=True)[0]
        rows, cols = _block_average(h, value, x.device), _block_average(w, value, x.device)
        out[index] = rows @ x[index] @ cols.T
    return out


def downsample(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Low-resolution acquisition: area-average to ``scale`` of the size, bilinear back up."""
    return resize_round_trip(x, p["scale"])


SPECS = (
    CorruptionSpec(
        name="jpeg", family="digital", role="train", modalities=MODALITIES,
        levels=tuple({"quality": q} for q in (25.0, 18.0, 15.0, 10.0, 7.0)),
        apply=jpeg, source=IMAGENET_C,
    ),
    CorruptionSpec(
        name="pixelate", family="digital", role="eval", modalities=MODALITIES,
        levels=tuple({"scale": s} for s in (0.5, 0.33, 0.25, 0.17, 0.12)),
        apply=pixelate, source=f"{IMAGENET_C} scales (.6,.5,.4,.3,.25) spread out (blocks of ~2,3,4,6,8 px)",
    ),
    CorruptionSpec(
        name="downsample", family="digital", role="train", modalities=MODALITIES,
        levels=tuple({"scale": s} for s in (0.6, 0.45, 0.33, 0.25, 0.18)),
        apply=downsample, source="ours (area down, bilinear up)",
    ),
)
