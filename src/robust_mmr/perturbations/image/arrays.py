"""Conversion between user image arrays and the float batches the corruptions work on.

Accepted: (H, W) or (H, W, C) with C in {1, 3}; dtype uint8, uint16, float32 or float64.
Intensity scale (stated, never guessed silently):

- uint8: divided by 255; the result is rounded back to 0..255.
- uint16: divided by the image's own maximum (so a 12-bit scan stored in 16 bits is corrupted with
  the same relative strength as an 8-bit one); the result is rounded back and stays in [0, that max].
- float32/float64: must already lie in [0, 1] (else :class:`InputError`); the result stays in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from robust_mmr.errors import InputError

ACCEPTED_DTYPES = ("uint8", "uint16", "float32", "float64")


def intensity_scale(image: np.ndarray) -> float:
    """The value that maps to 1.0: 255, the uint16 image's max (at least 1), or 1 for floats."""
    if image.dtype == np.uint8:
        return 255.0
    if image.dtype == np.uint16:
        return float(max(int(image.max()), 1))
    return 1.0


def to_unit_batch(image: np.ndarray) -> tuple[torch.Tensor, float]:
    """(H, W) or (H, W, C) array -> ((1, C, H, W) float32 tensor in [0, 1], intensity scale)."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype.name not in ACCEPTED_DTYPES:
        raise InputError(f"image dtype {image.dtype} is not supported; use one of {', '.join(ACCEPTED_DTYPES)}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise InputError(f"image shape {image.shape} is not supported; use (H, W) or (H, W, C) with C in {{1, 3}}")
    if min(image.shape[:2]) < 8:
        raise InputError(f"image shape {image.shape} is too small; both sides must be at least 8 pixels")
    if image.dtype.kind == "f":
        if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
            raise InputError("float images must be finite and lie in [0, 1]; rescale before corrupting")
    scale = intensity_scale(image)
    hwc = image[..., None] if image.ndim == 2 else image
    tensor = torch.from_numpy(np.ascontiguousarray(hwc, dtype=np.float32) / np.float32(scale))
    return tensor.permute(2, 0, 1)[None], scale


def from_unit_batch(batch: torch.Tensor, like: np.ndarray, scale: float) -> np.ndarray:
    """(1, C, H, W) tensor in [0, 1] -> array with the shape and dtype of ``like``."""
    hwc = batch[0].permute(1, 2, 0).cpu().numpy().astype(np.float64) * scale
    out = hwc.reshape(like.shape)
    if like.dtype.kind == "u":
        return np.clip(np.rint(out), 0, scale).astype(like.dtype)
    return np.clip(out, 0.0, 1.0).astype(like.dtype)
