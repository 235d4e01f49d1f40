"""What every evaluation protocol shares, for classifier and retrieval runs alike: the protocol names,
the fixed test subset and the pre-training method behind a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_mmr.config import load_config
from robust_mmr.errors import InputError

PROTOCOLS = ("clean", "perturbed", "missing", "cross-domain")


def check_protocols(protocols: tuple[str, ...]) -> None:
    """An :class:`InputError` naming any protocol that is not one of :data:`PROTOCOLS`."""
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise InputError(f"unknown protocol(s) {', '.join(sorted(unknown))}; choose from {', '.join(PROTOCOLS)}")


def subsample(records: list, max_items: int | None) -> list:
    """A fixed random subset (the same items for every method and seed), in the original order, or everything."""
    if max_items is None or len(records) <= max_items:
        return records
    keep = np.sort(np.random.default_rng(0).choice(len(records), size=max_items, replace=False))
    return [records[i] for i in keep]


def pretraining_method(init: str) -> str:
    """The pre-training method behind a fine-tuning init: ``scratch`` or the run's ``objective.method``."""
    if init == "scratch":
        return "scratch"
    return load_config(str(Path(init) / "config.yaml")).objective.method
