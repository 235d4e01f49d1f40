"""Pre-training objectives: masking, loss terms, and the three methods (mmr, mmr-aug, robust-mmr)."""

from robust_mmr.objectives.pretrain import METHODS, PretrainObjective

__all__ = ["METHODS", "PretrainObjective"]
