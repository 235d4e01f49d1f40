"""Image corruptions with 5 severities, per imaging modality (DESIGN §3).

One batched implementation per corruption serves evaluation (:func:`corrupt_image`, deterministic
per sample) and training (:func:`corrupt_batch`, on the model's device).
"""

from robust_mmr.perturbations.image.api import (
    apply_corruption,
    corrupt_batch,
    corrupt_image,
    sample_training_corruptions,
)
from robust_mmr.perturbations.image.registry import CORRUPTIONS, get_corruption, image_corruptions
from robust_mmr.perturbations.image.spec import MODALITIES, ROLES, CorruptionSpec

__all__ = [
    "CORRUPTIONS",
    "MODALITIES",
    "ROLES",
    "CorruptionSpec",
    "apply_corruption",
    "corrupt_batch",
    "corrupt_image",
    "get_corruption",
    "image_corruptions",
    "sample_training_corruptions",
]
