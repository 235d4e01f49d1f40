"""Rendering a :class:`~robust_mmr.data.synthetic.anatomy.Scene` to a clean image in [0, 1].

Each modality maps tissues to intensities (CT-like: dense bone, dark lungs, hypodense lesions in
solid organs; MRI T2-like: bright fat and fluid, dark bone, hyperintense lesions) and has its own
*structure*, so modality can be read without absolute intensities (which every site and the intensity
corruptions change): a CT scan shows the patient table under the body and the bright bone rim of the
skull; an MRI scan has no table and a bright subcutaneous fat rim. Shapes have a one-pixel soft edge,
and a low-frequency texture keeps organs from being flat. Lesion contrast to the host organ is at
least 0.3 of the display range, so lesions stay visible after every site's acquisition
(``tests/test_synthetic.py`` checks contrast-to-noise >= 3 per site at 64 px).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from robust_mmr.data.synthetic.anatomy import REGIONS, Ellipse, Scene

# Tissue intensity per modality, in [0, 1] display units. "lesion_delta" is added to the host
# organ's intensity; "lesion_in_lung" is used instead inside air-filled lung.
TISSUE = {
    "ct": {
        "fat": 0.30, "soft": 0.45, "bone": 0.95, "lung": 0.06, "heart": 0.56, "spine": 0.95,
        "liver": 0.60, "spleen": 0.54, "kidney": 0.66, "brain": 0.52, "ventricles": 0.22,
        "lesion_delta": -0.36, "lesion_in_lung": 0.52, "table": 0.62,
    },
    "mri": {
        "fat": 0.80, "soft": 0.34, "bone": 0.08, "lung": 0.04, "heart": 0.22, "spine": 0.12,
        "liver": 0.26, "spleen": 0.42, "kidney": 0.46, "brain": 0.40, "ventricles": 0.92,
        "lesion_delta": +0.40, "lesion_in_lung": 0.62, "table": None,
    },
}
TEXTURE_STRENGTH = 0.05  # relative amplitude of the smooth tissue texture
FAT_RIM = 0.08  # thickness of the subcutaneous fat layer (head: skull), normalised units
TABLE_GAP, TABLE_THICKNESS = 0.05, 0.07  # CT patient table: gap under the body and slab thickness


class Canvas:
    """A square float32 image (size, size) and its pixel-centre coordinate grids in [-1, 1]."""

    def __init__(self, size: int):
        self.size = size
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.x, self.y = np.meshgrid(coords, coords)
        self.pixel = 2.0 / size
        self.image = np.zeros((size, size), dtype=np.float32)

    def coverage(self, e: Ellipse) -> np.ndarray:
        """Fraction of each pixel inside ``e`` (anti-aliased over about one pixel), (size, size)."""
        cos, sin = np.cos(e.angle), np.sin(e.angle)
        dx, dy = self.x - e.cx, self.y - e.cy
        u, v = (dx * cos + dy * sin) / e.a, (-dx * sin + dy * cos) / e.b
        radius = np.sqrt(u * u + v * v)
        return np.clip((1.0 - radius) * min(e.a, e.b) / self.pixel + 0.5, 0.0, 1.0)

    def paint(self, e: Ellipse, value: float | np.ndarray) -> None:
        alpha = self.coverage(e)
        self.image += alpha * (value - self.image)


def smooth_noise(rng: np.random.Generator, size: int, cells: int = 12) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a cells×cells random grid upsampled bilinearly, (size, size)."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BILINEAR))


def _shrink(e: Ellipse, by: float) -> Ellipse:
    return Ellipse(e.cx, e.cy, e.a - by, e.b - by, e.angle)


def render_scene(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """Clean image of ``scene``: float32 (size, size) in [0, 1], before any acquisition effects."""
    tissue = TISSUE[scene.modality]
    region = REGIONS[scene.region]
    canvas = Canvas(size)
    texture = 1.0 + TEXTURE_STRENGTH * smooth_noise(rng, size)
    if tissue["table"] is not None:  # a curved slab under the body, as on a CT couch
        bottom = region.body.cy + region.body.b
        centre = bottom + TABLE_GAP + TABLE_THICKNESS + 2.0  # a wide ellipse's top: nearly flat
        canvas.paint(Ellipse(0.0, centre, 3.0, 2.0 + TABLE_THICKNESS), tissue["table"])
        canvas.paint(Ellipse(0.0, centre, 3.0, 2.0), 0.0)
    outer = "bone" if region.name == "head" else "fat"
    canvas.paint(region.body, tissue[outer])
    canvas.paint(_shrink(region.body, FAT_RIM), tissue["soft"] * texture)
    for organ in region.organs:
        canvas.paint(organ.shape, tissue[organ.name] * texture)
    for lesion in scene.lesions:
        host = tissue["lesion_in_lung"] if lesion.organ == "lung" else tissue[lesion.organ] + tissue["lesion_delta"]
        canvas.paint(Ellipse(lesion.cx, lesion.cy, lesion.radius, lesion.radius), host)
    return np.clip(canvas.image, 0.0, 1.0)
