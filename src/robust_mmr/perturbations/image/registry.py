"""All image corruptions, and lookups by imaging modality and role.

Role "eval" corruptions are held out of training entirely so evaluation measures generalisation to
unseen corruptions. The held-out set takes one member of each family plus the modality-specific
artefacts with a trained sibling: impulse_noise (noise), zoom_blur (blur), pixelate (digital),
mri_ghosting (MRI; bias_field and rician_noise stay in training), ct_streak (CT; ct_ring and
ct_window_jitter stay in training) and burned_in_text (overlay; occlusion and black_border stay).
"""

from __future__ import annotations

from robust_mmr.perturbations.image import acquisition, blur, digital, intensity, noise, overlays
from robust_mmr.perturbations.image.spec import MODALITIES, ROLES, CorruptionSpec
from robust_mmr.perturbations.seeding import check_name

CORRUPTIONS: dict[str, CorruptionSpec] = {
    spec.name: spec
    for spec in noise.SPECS + blur.SPECS + intensity.SPECS + digital.SPECS + acquisition.SPECS + overlays.SPECS
}


def get_corruption(name: str) -> CorruptionSpec:
    """The spec of ``name``; :class:`InputError` listing the valid names if unknown."""
    return CORRUPTIONS[check_name(name, list(CORRUPTIONS), "image corruption")]


def image_corruptions(modality: str | None = None, role: str | None = None) -> list[str]:
    """Names of the corruptions that apply to ``modality`` (xray, ct, mri, us, generic) with ``role``
    (train, eval); ``None`` means any. Order is the registry order (by family)."""
    if modality is not None:
        check_name(modality, MODALITIES, "imaging modality")
    if role is not None:
        check_name(role, ROLES, "corruption role")
    return [
        spec.name
        for spec in CORRUPTIONS.values()
        if (modality is None or modality in spec.modalities) and (role is None or spec.role == role)
    ]
