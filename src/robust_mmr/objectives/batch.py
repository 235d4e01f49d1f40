"""The pre-training batch, as the collator (:class:`robust_mmr.training.data.PretrainCollator`) builds it
and the objective (:class:`robust_mmr.objectives.pretrain.PretrainObjective`) reads it.

Lightning moves dataclass batches to the device field by field; a DataLoader with ``pin_memory`` pins them
through their ``pin_memory`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

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

    def pin_memory(self) -> PerturbedText:
        return _pinned(self)


@dataclass
class PretrainBatch:
    """``pixels`` (B, C, H, W): uint8 out of the data module's workers (made float in [0, 1] on the device, see
    :class:`robust_mmr.training.data.PretrainDataModule`), float in [0, 1] elsewhere; the clean text ``input_ids``, ``attention_mask``, ``maskable``
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

    def pin_memory(self) -> PretrainBatch:
        """The batch with every tensor in page-locked memory (fast, asynchronous copies to a GPU)."""
        return _pinned(self)


def _pinned(batch):
    """A copy of a batch dataclass with each tensor field pinned and each nested batch pinned in turn."""
    values = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, Tensor) or hasattr(value, "pin_memory") and not isinstance(value, type):
            values[f.name] = value.pin_memory()
    return replace(batch, **values)
