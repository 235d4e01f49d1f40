"""Overlay artefacts: occlusion (cutout), burned-in text, black border.

Images are (B, C, H, W) floats in [0, 1]; the overlay is identical on every channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from robust_mmr.perturbations.image.filters import per_sample
from robust_mmr.perturbations.image.params import Choice, Uniform
from robust_mmr.perturbations.image.spec import MODALITIES, CorruptionSpec

MIN_FONT_PX = 6  # smallest legible text
MARGIN = 0.03  # text distance from the image edge, fraction of the shorter side
# Burned-in annotation lines; {n} is the sampled ``code`` so the text is replayable.
TEXT_LINES = (
    "ID {n:06d}",
    "R",
    "{d:02d}/{m:02d}/20{y:02d}",
    "AP SUPINE",
    "PORTABLE {k} kVp",
    "ACC {n:07d}",
)


def _axis_positions(size: int, device: torch.device) -> torch.Tensor:
    """Pixel-centre positions as fractions of the side, in (0, 1): (size,)."""
    return (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size


def occlusion(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """A rectangle covering ``area`` of the image (same aspect as the image), centred at ``centre``
    (fractions of H, W), filled with the flat value ``fill``."""
    h, w = x.shape[-2:]
    half = torch.sqrt(p["area"])[:, None] / 2  # (B, 1)
    ys, xs = _axis_positions(h, x.device)[None], _axis_positions(w, x.device)[None]
    inside_y = (ys - p["centre"][:, :1]).abs() < half  # (B, H)
    inside_x = (xs - p["centre"][:, 1:]).abs() < half  # (B, W)
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
    return torch.where(mask, per_sample(p["fill"]), x)


def black_border(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Zero a band on each side: ``width`` (fraction of the side) times ``sides`` (B, 4) =
    (top, bottom, left, right) factors, as in a scanned film or a collimated X-ray."""
    h, w = x.shape[-2:]
    bands = p["width"][:, None] * p["sides"]  # (B, 4)
    ys, xs = _axis_positions(h, x.device)[None], _axis_positions(w, x.device)[None]
    keep_y = (ys > bands[:, :1]) & (ys < 1 - bands[:, 1:2])
    keep_x = (xs > bands[:, 2:3]) & (xs < 1 - bands[:, 3:4])
    keep = (keep_y[:, :, None] & keep_x[:, None, :])[:, None]
    return x * keep


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in default font (no file, no download) at ``size`` px."""
    return ImageFont.load_default(size=size)


def _annotation(code: int, lines: int) -> list[str]:
    fields = {"n": code, "d": code % 28 + 1, "m": code % 12 + 1, "y": code % 25, "k": 60 + code % 60}
    return [TEXT_LINES[i % len(TEXT_LINES)].format(**fields) for i in range(lines)]


def text_mask(height: int, width: int, code: int, lines: int, text_size: float, corner: int) -> np.ndarray:
    """Coverage (H, W) in [0, 1] of ``lines`` annotation lines in ``corner`` (0 TL, 1 TR, 2 BL, 3 BR).

    ``text_size`` is the line height as a fraction of the shorter side.
    """
    side = min(height, width)
    font_px = max(MIN_FONT_PX, round(text_size * side))
    font = _font(font_px)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    margin = round(MARGIN * side)
    line_step = round(1.25 * font_px)
    texts = _annotation(code, lines)
    top = margin if corner in (0, 1) else height - margin - line_step * len(texts)
    for i, text in enumerate(texts):
        left = margin if corner in (0, 2) else width - margin - round(draw.textlength(text, font=font))
        draw.text((left, top + i * line_step), text, fill=255, font=font)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def burned_in_text(x: torch.Tensor, p: Mapping[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Patient/acquisition annotation text burned into the pixels (PIL rendering, one call per sample)."""
    h, w = x.shape[-2:]
    rows = zip(p["code"].tolist(), p["lines"].tolist(), p["text_size"].tolist(), p["corner"].tolist())
    masks = [text_mask(h, w, int(code), int(n), size, int(corner)) for code, n, size, corner in rows]
    mask = torch.from_numpy(np.stack(masks)).to(x.device)[:, None]  # (B, 1, H, W)
    return x * (1 - mask) + per_sample(p["brightness"]) * mask


SPECS = (
    CorruptionSpec(
        name="occlusion", family="artefact", role="train", modalities=MODALITIES,
        levels=tuple({"area": a} for a in (0.02, 0.05, 0.09, 0.14, 0.2)),
        draws={"centre": Uniform(0.2, 0.8, size=2), "fill": Uniform(0.0, 1.0)},
        apply=occlusion, source="ours (cutout, DeVries & Taylor 2017)",
    ),
    CorruptionSpec(
        name="burned_in_text", family="artefact", role="eval", modalities=MODALITIES,
        levels=tuple(
            {"lines": n, "text_size": s}
            for n, s in ((1.0, 0.06), (2.0, 0.07), (3.0, 0.08), (4.0, 0.09), (6.0, 0.1))
        ),
        draws={
            "code": Uniform(0.0, 999_999.0),  # integer part numbers the annotation
            "corner": Choice((0.0, 1.0, 2.0, 3.0)),
            "brightness": Uniform(0.85, 1.0),
        },
        apply=burned_in_text, source="ours (cf. MedMNIST-C characters)",
    ),
    CorruptionSpec(
        name="black_border", family="artefact", role="train", modalities=MODALITIES,
        levels=tuple({"width": v} for v in (0.03, 0.06, 0.1, 0.14, 0.2)),
        draws={"sides": Uniform(0.5, 1.0, size=4)},
        apply=black_border, source="ours (cf. MedMNIST-C black corner)",
    ),
)
