"""Parameter tables as data, and sampling them per sample with a ``torch.Generator``.

A corruption's table has one row per severity (1–5). A row maps parameter names to:

- a number: the fixed value at that severity;
- :class:`Uniform`: drawn uniformly per sample (``size > 1`` draws a vector per sample);
- :class:`Choice`: one of a few values, drawn uniformly per sample.

Severity-independent draws (a blur angle, an occlusion position) live in a separate ``draws`` mapping
with the same value types. Sampling always consumes the generator in table order, so one seeded
generator replays the same parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Uniform:
    """Uniform draw in ``[low, high]``; ``size`` values per sample when ``size > 1``."""

    low: float
    high: float
    size: int = 1

    def describe(self) -> str:
        span = f"U({self.low:g},{self.high:g})"
        return span if self.size == 1 else f"{self.size}x{span}"


@dataclass(frozen=True)
class Choice:
    """Uniform draw among ``values``; ``size`` values per sample when ``size > 1``."""

    values: tuple[float, ...]
    size: int = 1

    def describe(self) -> str:
        pick = "{" + ",".join(f"{v:g}" for v in self.values) + "}"
        return pick if self.size == 1 else f"{self.size}x{pick}"


ParamValue = float | Uniform | Choice
ParamRow = Mapping[str, ParamValue]


def describe_value(value: ParamValue) -> str:
    """Short text for a table cell, e.g. ``0.08``, ``U(-45,45)``, ``{-1,1}``."""
    if isinstance(value, (Uniform, Choice)):
        return value.describe()
    return f"{value:g}"


def describe_row(row: ParamRow) -> str:
    """``name=value`` pairs of one severity row, e.g. ``sigma=0.08``."""
    return " ".join(f"{key}={describe_value(value)}" for key, value in row.items())


def sample_params(
    levels: Sequence[ParamRow],
    draws: ParamRow,
    severities: torch.Tensor,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Draw every parameter for a batch.

    Args:
        levels: five rows (severity 1–5) with the same keys.
        draws: severity-independent parameters.
        severities: (B,) int64 in 1..5, on the generator's device.
        generator: the random stream; consumed in key order (levels first, then draws).

    Returns:
        name -> float tensor (B,) for scalar parameters or (B, size) for vector ones.
    """
    index = severities.long() - 1
    params: dict[str, torch.Tensor] = {}
    for key in levels[0]:
        column = [row[key] for row in levels]
        params[key] = _sample_column(column, index, generator)
    for key, value in draws.items():
        params[key] = _sample_column([value] * len(levels), index, generator)
    return params


def _sample_column(column: list[ParamValue], index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    device, batch = index.device, index.shape[0]
    first = column[0]
    if isinstance(first, Uniform):
        low = torch.tensor([v.low for v in column], device=device)[index]
        high = torch.tensor([v.high for v in column], device=device)[index]
        u = torch.rand(batch, first.size, generator=generator, device=device)
        out = low[:, None] + (high - low)[:, None] * u
    elif isinstance(first, Choice):
        table = torch.tensor([v.values for v in column], device=device)[index]  # (B, n_values)
        pick = torch.randint(0, len(first.values), (batch, first.size), generator=generator, device=device)
        out = torch.gather(table, 1, pick)
    else:
        return torch.tensor([float(v) for v in column], device=device)[index]
    return out[:, 0] if first.size == 1 else out
