"""The pre-training batch, as the collator (:class:`robust_mmr.training.data.PretrainCollator`) builds it
and the objective (:class:`robust_mmr.objectives.pretrain.PretrainObjective`) reads it.

Lightning moves dataclass batches to the device field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class PerturbedText:
    """The text half of the perturbed view v1 (:mod:`robust_mmr.objectives.views`).

    ``input_ids``, ``attention_mask`` (B, L'); ``maskable`` (B, L') bool: positions random masking may
    pick; ``targets`` (B, L') long: the clean word piece at a pre-masked position, -100 elsewhere;
    ``perturb_text``, ``perturb_image`` (B,) bool: the sample's mode.
    """

    input_ids: Tensor
    attention_mask: Tensor
    maskable: Tensor
    targets: Tensor
    perturb_text: Tensor
    perturb_image: Tensor


@dataclass
class PretrainBatch:
    """``pixels`` (B, C, H, W) in [0, 1]; the clean text ``input_ids``, ``attention_mask``, ``maskable``
    (B, L); ``domain`` (B,) long (-1 unknown; for CORAL); ``view``: v1's text half (None for ``mmr``,
    which has no perturbed view); ``skipped``: samples left out at decode time (dicts, see screening)."""

    pixels: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    maskable: Tensor
    domain: Tensor
    view: PerturbedText | None = None
    skipped: list[dict] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.pixels.shape[0]
