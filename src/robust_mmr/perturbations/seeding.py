"""Deterministic seeds and argument checks shared by image and text perturbations.

Evaluation perturbations are replayable: the random stream of one cell is a pure function of
(global seed, sample id, perturbation name, severity), independent of batch order and process.
"""

from __future__ import annotations

import hashlib

from robust_mmr.errors import InputError

SEVERITIES = (1, 2, 3, 4, 5)


def derive_seed(global_seed: int, sample_id: str, name: str, severity: int) -> int:
    """A 63-bit seed for one (global seed, sample, perturbation, severity) cell.

    SHA-256 rather than Python's ``hash`` so it is stable across processes and machines.
    """
    key = f"{int(global_seed)}|{sample_id}|{name}|{int(severity)}".encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


def check_severity(severity: int) -> int:
    """Return ``severity`` if it is one of 1–5, else raise :class:`InputError` naming the valid values."""
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise InputError(f"severity {severity!r} is not valid; choose one of {', '.join(map(str, SEVERITIES))}")
    return severity


def check_name(name: str, valid: list[str] | tuple[str, ...], what: str = "perturbation") -> str:
    """Return ``name`` if it is in ``valid``, else raise :class:`InputError` listing the valid names."""
    if name not in valid:
        raise InputError(f"unknown {what} {name!r}; valid names: {', '.join(sorted(valid))}")
    return name
