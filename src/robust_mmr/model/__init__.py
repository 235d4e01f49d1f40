"""The M3AE-style model: ViT and BERT-family encoders, co-attention fusion, reconstruction heads."""

from robust_mmr.model.mmr_model import MMRModel, build_model

__all__ = ["MMRModel", "build_model"]
