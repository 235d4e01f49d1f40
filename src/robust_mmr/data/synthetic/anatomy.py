"""Scene facts of a synthetic scan: body region, imaging modality, organs and lesions.

Geometry lives in normalised image coordinates: x and y in [-1, 1], x to the image's right, y
down. Radiological convention: the patient's right is on the image's left, so an organ on the
patient's ``right`` has x < 0. A :class:`Scene` holds the facts that drive the image, the report
and every VQA answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODALITIES = ("ct", "mri")
SIZE_CLASSES = {"small": (8.0, 12.0), "medium": (14.0, 20.0), "large": (24.0, 32.0)}  # lesion diameter, mm
LESION_COUNT_PROBS = (0.3, 0.3, 0.2, 0.2)  # P(0), P(1), P(2), P(3) lesions


@dataclass(frozen=True)
class Ellipse:
    """An axis-rotated ellipse: centre (cx, cy), semi-axes (a, b), rotation in radians."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0


@dataclass(frozen=True)
class Organ:
    """One organ instance. ``side`` is the patient's side (``right`` is image-left), or ``midline``."""

    name: str
    side: str
    shape: Ellipse
    lesion_site: bool  # whether lesions may be placed in it


@dataclass(frozen=True)
class Region:
    """A body region: field of view, body outline and organs."""

    name: str
    fov_mm: float
    body: Ellipse
    organs: tuple[Organ, ...]


def _pair(name: str, x: float, y: float, a: float, b: float, angle: float = 0.0) -> tuple[Organ, Organ]:
    """Left/right organs mirrored about the midline (patient's right at image-left, x < 0)."""
    return (Organ(name, "right", Ellipse(-x, y, a, b, -angle), True), Organ(name, "left", Ellipse(x, y, a, b, angle), True))


REGIONS: dict[str, Region] = {
    "head": Region(
        "head",
        fov_mm=240.0,
        body=Ellipse(0.0, 0.0, 0.72, 0.86),
        organs=(
            *_pair("brain", 0.31, 0.0, 0.3, 0.7),
            Organ("ventricles", "midline", Ellipse(0.0, -0.05, 0.09, 0.22), False),
        ),
    ),
    "chest": Region(
        "chest",
        fov_mm=360.0,
        body=Ellipse(0.0, 0.05, 0.9, 0.66),
        organs=(
            *_pair("lung", 0.42, 0.0, 0.3, 0.46, 0.1),
            Organ("heart", "midline", Ellipse(0.1, 0.12, 0.24, 0.22), False),
            Organ("spine", "midline", Ellipse(0.0, 0.52, 0.1, 0.09), False),
        ),
    ),
    "abdomen": Region(
        "abdomen",
        fov_mm=360.0,
        body=Ellipse(0.0, 0.05, 0.86, 0.7),
        organs=(
            Organ("liver", "right", Ellipse(-0.36, -0.12, 0.38, 0.3, 0.2), True),
            Organ("spleen", "left", Ellipse(0.5, -0.18, 0.18, 0.15, -0.3), True),
            *_pair("kidney", 0.36, 0.3, 0.15, 0.23, 0.25),
            Organ("spine", "midline", Ellipse(0.0, 0.5, 0.1, 0.09), False),
        ),
    ),
}
LESION_ORGANS = tuple(sorted({o.name for r in REGIONS.values() for o in r.organs if o.lesion_site}))


@dataclass(frozen=True)
class Lesion:
    organ: str
    side: str
    cx: float  # normalised image coordinates
    cy: float
    diameter_mm: float
    size: str  # key of SIZE_CLASSES


@dataclass(frozen=True)
class Scene:
    """The ground truth of one synthetic scan. All lesions lie in one organ type."""

    region: str
    modality: str
    lesions: tuple[Lesion, ...]

    @property
    def count(self) -> int:
        return len(self.lesions)

    @property
    def organ(self) -> str | None:
        """The organ type that holds the lesions, or None without lesions."""
        return self.lesions[0].organ if self.lesions else None

    @property
    def side(self) -> str:
        """``left``, ``right``, ``bilateral`` (patient's sides) or ``none``."""
        sides = {lesion.side for lesion in self.lesions}
        if not sides:
            return "none"
        return sides.pop() if len(sides) == 1 else "bilateral"

    @property
    def largest(self) -> Lesion | None:
        return max(self.lesions, key=lambda lesion: lesion.diameter_mm) if self.lesions else None

    def to_dict(self) -> dict:
        return {
            "region": self.region,
            "modality": self.modality,
            "organ": self.organ,
            "count": self.count,
            "side": self.side,
            "size": self.largest.size if self.largest else None,
            "lesions": [lesion.__dict__ for lesion in self.lesions],
        }


def sample_scene(rng: np.random.Generator, min_lesions: int = 0) -> Scene:
    """Draw region, modality and 0–3 non-overlapping lesions inside one organ type."""
    region = REGIONS[str(rng.choice(list(REGIONS)))]
    modality = str(rng.choice(MODALITIES))
    probs = np.array(LESION_COUNT_PROBS[min_lesions:])
    count = min_lesions + int(rng.choice(len(probs), p=probs / probs.sum()))
    if count == 0:
        return Scene(region.name, modality, ())
    sites = [o for o in region.organs if o.lesion_site]
    organ_name = str(rng.choice(sorted({o.name for o in sites})))
    candidates = [o for o in sites if o.name == organ_name]
    half_fov = region.fov_mm / 2
    lesions: list[Lesion] = []
    for _ in range(1000):
        if len(lesions) == count:
            break
        organ = candidates[int(rng.integers(len(candidates)))]
        size = str(rng.choice(list(SIZE_CLASSES)))
        diameter = round(float(rng.uniform(*SIZE_CLASSES[size])), 1)
        placed = _place_inside(organ.shape, diameter / 2 / half_fov, lesions, half_fov, rng)
        if placed is not None:
            lesions.append(Lesion(organ.name, organ.side, *placed, diameter, size))
    else:
        raise RuntimeError(f"could not place {count} lesions in the {organ_name}")  # anatomy table is broken
    return Scene(region.name, modality, tuple(lesions))


def _place_inside(
    shape: Ellipse, radius: float, others: list[Lesion], half_fov: float, rng: np.random.Generator
) -> tuple[float, float] | None:
    """A lesion centre whose disc lies inside ``shape`` and clear of ``others``; None after 50 tries."""
    margin_a, margin_b = shape.a - 1.3 * radius, shape.b - 1.3 * radius
    if margin_a <= 0 or margin_b <= 0:
        return None
    cos, sin = np.cos(shape.angle), np.sin(shape.angle)
    for _ in range(50):
        r, t = np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        u, v = r * margin_a * np.cos(t), r * margin_b * np.sin(t)
        x, y = shape.cx + u * cos - v * sin, shape.cy + u * sin + v * cos
        clear = all(
            np.hypot(x - o.cx, y - o.cy) > radius + o.diameter_mm / 2 / half_fov + 0.03 for o in others
        )
        if clear:
            return round(float(x), 4), round(float(y), 4)
    return None
