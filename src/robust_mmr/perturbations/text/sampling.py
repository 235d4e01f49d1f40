"""Choosing how many and which units (words, matches, sentences) a perturbation touches."""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def sample_count(rng: random.Random, fraction: float, n: int) -> int:
    """``fraction * n`` with stochastic rounding, so the expected count is exactly ``fraction * n``
    even for short texts (3 candidates at fraction 0.1 give 1 unit 30% of the time, not never)."""
    expected = fraction * n
    whole = int(expected)
    return min(n, whole + (rng.random() < expected - whole))


def choose(rng: random.Random, candidates: list[T], fraction: float) -> list[T]:
    """A random subset of ``sample_count(fraction, len(candidates))`` candidates, in their original order."""
    k = sample_count(rng, fraction, len(candidates))
    picked = set(rng.sample(range(len(candidates)), k))
    return [c for i, c in enumerate(candidates) if i in picked]
