"""Scene facts of a synthetic scan: body region, imaging modality, organs and lesions.

Geometry lives in normalised image coordinates: x and y in [-1, 1], x to the image's right, y
down. Radiological convention: the patient's right is on the image's left, so an organ on the
patient's ``right`` has x < 0. A :class:`Scene` holds the facts that drive the image, the report
and every VQA answer.

Sizes are chosen for the benchmark resolution, 64 px with 16-px ViT patches: a small lesion is at
least 7 px across (about half a patch), a large one about a patch, so lesion questions can be answered
from the pixels; at 128 px every size doubles. Size classes are radii in normalised units (the image
is 2 units wide), so a class looks the same in every region; the report's millimetres follow from
each region's field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODALITIES = ("ct", "mri")
# Lesion radius per size class, normalised units: at 64 px the diameters are 7-9, 11-13 and 15-17 px.
SIZE_CLASSES = {"small": (0.11, 0.14), "medium": (0.17, 0.20), "large": (0.23, 0.27)}
LESION_COUNT_PROBS = (0.45, 0.25, 0.15, 0.15)  # P(0), P(1), P(2), P(3) lesions
INSIDE_MARGIN = 1.1  # a lesion's disc, grown by this factor, lies inside its organ
PLACEMENT_TRIES = 100  # lesion draws per scene before it keeps the lesions that fit
CLEARANCE = 0.03  # gap between two lesions, and between a lesion and any other organ, normalised units


@dataclass(frozen=True)
class Ellipse:
    """An axis-rotated ellipse: centre (cx, cy), semi-axes (a, b), rotation in radians."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point (x, y) lies inside the ellipse (arrays of one shape → bool array)."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u, v = (dx * cos + dy * sin) / self.a, (-dx * sin + dy * cos) / self.b
        return u * u + v * v <= 1.0


@dataclass(frozen=True)
class Organ:
    """One organ instance. ``side`` is the patient's side (``right`` is image-left), or ``midline``."""

    name: str
    side: str
    shape: Ellipse
    lesion_site: bool  # whether lesions may be placed in it


@dataclass(frozen=True)
class Region:
    """A body region: field of view, body outline and organs (painted in this order)."""

    name: str
    fov_mm: float
    body: Ellipse
    organs: tuple[Organ, ...]


def _pair(name: str, x: float, y: float, a: float, b: float, angle: float = 0.0,
          lesion_site: bool = True) -> tuple[Organ, Organ]:
    """Left/right organs mirrored about the midline (patient's right at image-left, x < 0)."""
    return (Organ(name, "right", Ellipse(-x, y, a, b, -angle), lesion_site),
            Organ(name, "left", Ellipse(x, y, a, b, angle), lesion_site))


REGIONS: dict[str, Region] = {
    "head": Region(
        "head",
        fov_mm=240.0,
        body=Ellipse(0.0, -0.04, 0.78, 0.86),
        organs=(
            *_pair("brain", 0.36, -0.04, 0.33, 0.68),
            Organ("ventricles", "midline", Ellipse(0.0, -0.05, 0.08, 0.22), False),
        ),
    ),
    "chest": Region(
        "chest",
        fov_mm=360.0,
        body=Ellipse(0.0, 0.02, 0.94, 0.72),
        organs=(
            *_pair("lung", 0.46, -0.04, 0.36, 0.52, 0.1),
            Organ("heart", "midline", Ellipse(0.1, 0.16, 0.24, 0.22), False),
            Organ("spine", "midline", Ellipse(0.0, 0.56, 0.1, 0.09), False),
        ),
    ),
    "abdomen": Region(
        "abdomen",
        fov_mm=360.0,
        body=Ellipse(0.0, 0.02, 0.92, 0.74),
        organs=(
            Organ("liver", "right", Ellipse(-0.38, -0.16, 0.44, 0.32, 0.15), True),
            Organ("spleen", "left", Ellipse(0.56, -0.22, 0.2, 0.17, -0.3), False),
            *_pair("kidney", 0.42, 0.42, 0.23, 0.25, 0.2),
            Organ("spine", "midline", Ellipse(0.0, 0.56, 0.1, 0.09), False),
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
    radius: float  # normalised units
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
        return max(self.lesions, key=lambda lesion: lesion.radius) if self.lesions else None

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
    """Draw region, modality and 0–3 non-overlapping lesions inside one organ type.

    Each placement attempt draws the organ instance and the size class again, so a lesion that
    does not fit (a large one in a kidney, a third one in a crowded lung) is retried smaller; an organ
    with no room for the drawn count (two kidneys hold two small lesions at most) keeps the lesions that
    fit, and the scene's facts are those lesions.
    """
    region = REGIONS[str(rng.choice(list(REGIONS)))]
    modality = str(rng.choice(MODALITIES))
    probs = np.array(LESION_COUNT_PROBS[min_lesions:])
    count = min_lesions + int(rng.choice(len(probs), p=probs / probs.sum()))
    if count == 0:
        return Scene(region.name, modality, ())
    sites = [o for o in region.organs if o.lesion_site]
    organ_name = str(rng.choice(sorted({o.name for o in sites})))
    candidates = [o for o in sites if o.name == organ_name]
    lesions: list[Lesion] = []
    for _ in range(PLACEMENT_TRIES):
        if len(lesions) == count:
            break
        organ = candidates[int(rng.integers(len(candidates)))]
        size = str(rng.choice(list(SIZE_CLASSES)))
        radius = round(float(rng.uniform(*SIZE_CLASSES[size])), 4)
        placed = _place_inside(organ, region, radius, lesions, rng)
        if placed is not None:
            diameter = round(2 * radius * region.fov_mm / 2, 1)
            lesions.append(Lesion(organ.name, organ.side, *placed, radius, diameter, size))
    if len(lesions) < max(1, min_lesions):  # the anatomy table is broken: not even one lesion fits
        raise RuntimeError(f"could not place {count} lesions in the {organ_name}")
    return Scene(region.name, modality, tuple(lesions))


def _disc_points(cx: np.ndarray, cy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres (T,) → the centre and 16 points on the circle of ``radius`` about each: (T, 17) x and y."""
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    xs = np.concatenate([cx[:, None], cx[:, None] + radius * np.cos(t)], axis=1)
    ys = np.concatenate([cy[:, None], cy[:, None] + radius * np.sin(t)], axis=1)
    return xs, ys


def _place_inside(organ: Organ, region: Region, radius: float, others: list[Lesion],
                  rng: np.random.Generator, tries: int = 50) -> tuple[float, float] | None:
    """A lesion centre whose disc lies inside ``organ``, clear of every other organ of the region and
    of ``others``: the first of ``tries`` random centres that fits, or None."""
    shape = organ.shape
    margin_a, margin_b = shape.a - INSIDE_MARGIN * radius, shape.b - INSIDE_MARGIN * radius
    if margin_a <= 0 or margin_b <= 0:
        return None
    cos, sin = np.cos(shape.angle), np.sin(shape.angle)
    r, t = np.sqrt(rng.uniform(size=tries)), rng.uniform(0, 2 * np.pi, size=tries)
    u, v = r * margin_a * np.cos(t), r * margin_b * np.sin(t)
    x, y = shape.cx + u * cos - v * sin, shape.cy + u * sin + v * cos
    ok = shape.contains(*_disc_points(x, y, INSIDE_MARGIN * radius)).all(axis=1)
    ring = _disc_points(x, y, radius + CLEARANCE)
    for other in region.organs:
        if other is not organ:
            ok &= ~other.shape.contains(*ring).any(axis=1)
    for o in others:
        ok &= np.hypot(x - o.cx, y - o.cy) > radius + o.radius + CLEARANCE
    if not ok.any():
        return None
    first = int(np.argmax(ok))
    return round(float(x[first]), 4), round(float(y[first]), 4)
