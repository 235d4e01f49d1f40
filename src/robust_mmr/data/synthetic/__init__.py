"""The synthetic domain-shift dataset: the project's embedded default (DESIGN §2)."""

from robust_mmr.data.synthetic.generate import generate_dataset, make_sample, sample_image

__all__ = ["generate_dataset", "make_sample", "sample_image"]
