"""The two ways to corrupt images, sharing one implementation and one parameter table per corruption.

- Evaluation: :func:`corrupt_image` — one numpy image, deterministic per
  (seed, sample id, corruption, severity), returning the exact parameters drawn.
- Training: :func:`corrupt_batch` — a (B, C, H, W) tensor on the model's device, samples grouped by
  corruption and each group corrupted in one vectorised call; :func:`sample_training_corruptions`
  draws the (corruption, severity) pairs from a modality's training registry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from robust_mmr.errors import InputError
from robust_mmr.perturbations.image.arrays import from_unit_batch, to_unit_batch
from robust_mmr.perturbations.image.params import sample_params
from robust_mmr.perturbations.image.registry import get_corruption, image_corruptions
from robust_mmr.perturbations.seeding import check_severity, derive_seed


def apply_corruption(
    images: torch.Tensor, name: str, severities: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Corrupt every image of a batch with ``name``.

    Args:
        images: (B, C, H, W) float in [0, 1]. severities: (B,) int in 1..5, same device.
        generator: drawn from first for the table parameters, then for pixel noise.

    Returns:
        (B, C, H, W) in [0, 1], and the sampled parameters (name -> (B,) or (B, k)).
    """
    spec = get_corruption(name)
    params = sample_params(spec.levels, spec.draws, severities, generator)
    return spec.apply(images, params, generator).clamp(0.0, 1.0), params


def corrupt_batch(
    images: torch.Tensor,
    names: Sequence[str | None],
    severities: torch.Tensor | Sequence[int],
    generator: torch.Generator,
) -> torch.Tensor:
    """Training mode: corrupt sample i with ``names[i]`` at ``severities[i]`` (``None`` leaves it clean).

    Args:
        images: (B, C, H, W) float in [0, 1] on any device. names: B corruption names or None.
        severities: (B,) ints in 1..5. generator: a ``torch.Generator`` on the images' device.

    Returns:
        (B, C, H, W) float in [0, 1]; the input is not modified.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise InputError(f"images must be a float tensor (B, C, H, W); got {tuple(images.shape)} {images.dtype}")
    if len(names) != images.shape[0]:
        raise InputError(f"got {len(names)} corruption names for a batch of {images.shape[0]} images")
    if generator.device.type != images.device.type:
        raise InputError(f"generator is on {generator.device} but images are on {images.device}")
    severities = torch.as_tensor(severities, device=images.device).long().reshape(-1)
    if severities.numel() != images.shape[0]:
        raise InputError(f"got {severities.numel()} severities for a batch of {images.shape[0]} images")
    for value in torch.unique(severities).tolist():
        check_severity(int(value))
    out = images.clone()
    for name in dict.fromkeys(n for n in names if n is not None):
        index = torch.tensor([i for i, n in enumerate(names) if n == name], device=images.device)
        out[index], _ = apply_corruption(images[index], name, severities[index], generator)
    return out


def sample_training_corruptions(
    batch_size: int, modality: str, generator: torch.Generator
) -> tuple[list[str], torch.Tensor]:
    """Draw a training corruption and a severity (uniform over 1..5) per sample.

    Returns:
        (B names from the ``train`` role of ``modality``, (B,) int64 severities on the generator's device).
    """
    choices = image_corruptions(modality=modality, role="train")
    device = generator.device
    picks = torch.randint(0, len(choices), (batch_size,), generator=generator, device=device)
    severities = torch.randint(1, 6, (batch_size,), generator=generator, device=device)
    return [choices[i] for i in picks.tolist()], severities


def corrupt_image(
    image: np.ndarray, name: str, severity: int, *, seed: int, sample_id: str
) -> tuple[np.ndarray, dict]:
    """Evaluation mode: corrupt one image, replayably.

    Args:
        image: (H, W) or (H, W, C), C in {1, 3}; uint8, uint16 or float in [0, 1] (see ``arrays``).
        name, severity: the corruption and its severity (1–5).
        seed, sample_id: with name and severity they fix the random stream via ``derive_seed``.

    Returns:
        The corrupted image (same shape, dtype and range) and a JSON-serialisable record:
        ``{"corruption", "severity", "seed", "intensity_scale", "params": {name: value or list}}``.
    """
    get_corruption(name)
    check_severity(severity)
    batch, scale = to_unit_batch(image)
    cell_seed = derive_seed(seed, sample_id, name, severity)
    generator = torch.Generator().manual_seed(cell_seed)
    out, params = apply_corruption(batch, name, torch.tensor([severity]), generator)
    record = {
        "corruption": name,
        "severity": severity,
        "seed": cell_seed,
        "intensity_scale": scale,
        "params": {key: _plain(value[0]) for key, value in params.items()},
    }
    return from_unit_batch(out, image, scale), record


def _plain(value: torch.Tensor) -> float | list[float]:
    """A sampled float32 value as JSON numbers: the shortest decimals that round-trip to it exactly."""
    numbers = [float(str(np.float32(v))) for v in value.reshape(-1).tolist()]
    return numbers[0] if value.ndim == 0 else numbers
