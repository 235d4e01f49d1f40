"""A PNG grid of one image under corruptions: rows = corruptions, columns = clean + severities 1–5."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robust_mmr.perturbations.image.api import corrupt_image  # noqa: E402
from robust_mmr.perturbations.image.arrays import intensity_scale  # noqa: E402
from robust_mmr.perturbations.seeding import SEVERITIES  # noqa: E402

CELL_PX = 150  # each grid cell is CELL_PX x CELL_PX pixels in the PNG
DPI = 100


def save_gallery(image: np.ndarray, names: list[str], out: str | Path, *, seed: int, sample_id: str) -> tuple[int, int]:
    """Write the grid for ``image`` ((H, W) or (H, W, C)) to ``out``; returns (rows, columns).

    Grayscale cells share one fixed display range, 0 to the clean image's intensity scale, so
    brightness and contrast corruptions stay visible (no per-cell auto-contrast).
    """
    rows, cols = len(names), 1 + len(SEVERITIES)
    cell = CELL_PX / DPI
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell), dpi=DPI, squeeze=False)
    vmax = intensity_scale(image) if image.dtype.kind == "u" else 1.0
    for r, name in enumerate(names):
        cells = [image] + [corrupt_image(image, name, s, seed=seed, sample_id=sample_id)[0] for s in SEVERITIES]
        for c, shown in enumerate(cells):
            ax = axes[r, c]
            gray = shown.ndim == 2 or shown.shape[2] == 1
            if gray:
                ax.imshow(shown.reshape(shown.shape[:2]), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(shown.astype(np.float64) / vmax, interpolation="nearest")
            ax.set_title(f"{name} clean" if c == 0 else f"severity {c}", fontsize=8)
            ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.25 / rows, wspace=0.05, hspace=0.25)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return rows, cols
