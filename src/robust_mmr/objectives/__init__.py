"""Pre-training objectives: masking, loss terms, and the three methods (mmr, mmr-aug, robust-mmr)."""

from robust_mmr.config import METHODS
from robust_mmr.objectives.pretrain import PretrainObjective

__all__ = ["METHODS", "PretrainObjective"]
