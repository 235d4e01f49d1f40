"""Acquisition domains: how one "site" turns a clean scene into the image it stores.

A domain is data — intensity curve, noise model, resolution and blur, one artefact type and a
report style. :func:`acquire` applies them in acquisition order: artefact → resolution/blur →
noise → intensity curve → 8-bit quantisation. Domains differ in every one of these, so a model
trained on some sites meets both an image shift and a text shift on a held-out site.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from robust_mmr.data.synthetic.render import smooth_noise


@dataclass(frozen=True)
class Domain:
    """One acquisition site. The intensity curve is ``offset + gain * x ** gamma``, clipped to [0, 1]."""

    name: str
    report_style: str  # "verbose" | "terse" | "checklist"
    gamma: float
    gain: float
    offset: float
    noise: str  # "gaussian" | "poisson" | "speckle" | "rician"
    noise_level: float  # std for gaussian/speckle/rician; photon count at intensity 1 for poisson
    blur_sigma: float  # pixels, at the output resolution
    downsample: int  # acquisition matrix = size / downsample, upsampled back bilinearly
    artefact: str  # "streaks" | "bias_field" | "ghosting" | "rings" | "vignette"

    def describe(self) -> dict:
        return asdict(self)


DOMAINS: tuple[Domain, ...] = (
    Domain("site-a", "verbose", gamma=1.0, gain=1.0, offset=0.0, noise="gaussian", noise_level=0.02,
           blur_sigma=0.0, downsample=1, artefact="streaks"),
    Domain("site-b", "terse", gamma=0.7, gain=0.85, offset=0.1, noise="poisson", noise_level=400.0,
           blur_sigma=1.2, downsample=1, artefact="bias_field"),
    Domain("site-c", "checklist", gamma=1.8, gain=1.15, offset=-0.03, noise="speckle", noise_level=0.08,
           blur_sigma=0.0, downsample=2, artefact="ghosting"),
    Domain("site-d", "verbose", gamma=0.85, gain=0.9, offset=0.04, noise="rician", noise_level=0.05,
           blur_sigma=0.7, downsample=1, artefact="rings"),
    Domain("site-e", "terse", gamma=1.25, gain=1.0, offset=0.0, noise="gaussian", noise_level=0.05,
           blur_sigma=0.5, downsample=2, artefact="vignette"),
)


def acquire(clean: np.ndarray, domain: Domain, rng: np.random.Generator) -> np.ndarray:
    """Simulate acquisition at ``domain``: float (H, W) in [0, 1] → uint8 (H, W)."""
    x = _ARTEFACTS[domain.artefact](clean, rng)
    x = _resolution(x, domain.downsample, domain.blur_sigma)
    x = _NOISE[domain.noise](x, domain.noise_level, rng)
    x = np.clip(domain.offset + domain.gain * np.clip(x, 0.0, 1.0) ** domain.gamma, 0.0, 1.0)
    return np.round(x * 255.0).astype(np.uint8)


def _resolution(x: np.ndarray, factor: int, sigma: float) -> np.ndarray:
    if factor > 1:
        h, w = x.shape
        small = Image.fromarray(x.astype(np.float32), mode="F").resize((w // factor, h // factor), Image.BOX)
        x = np.asarray(small.resize((w, h), Image.BILINEAR))
    return gaussian_filter(x, sigma) if sigma > 0 else x


def _streaks(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright and dark lines through a point inside the body (CT metal-like streaks)."""
    h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    out = x.copy()
    for angle in rng.uniform(0, np.pi, 3):
        dist = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
        out += rng.choice([-1.0, 1.0]) * 0.12 * np.exp(-((dist / 0.8) ** 2)) * (x > 0.02)
    return out


def _bias_field(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative intensity inhomogeneity between about 0.7 and 1.3."""
    return x * (1.0 + 0.3 * smooth_noise(rng, x.shape[0], cells=3))


def _ghosting(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A faint copy shifted along the phase-encoding (vertical) axis."""
    shift = int(x.shape[0] * rng.uniform(0.2, 0.3))
    return x + 0.18 * np.roll(x, shift, axis=0)


def _rings(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Concentric rings about the centre (CT detector-miscalibration rings)."""
    h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = np.hypot(xx - w / 2, yy - h / 2)
    period = rng.uniform(7, 10) * h / 128
    return x + 0.05 * np.sin(2 * np.pi * radius / period) * (x > 0.02)


def _vignette(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radial fall-off towards the corners (coil sensitivity / collimation)."""
    h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = np.hypot(xx / w - 0.5, yy / h - 0.5) / 0.707
    return x * (1.0 - rng.uniform(0.45, 0.55) * radius**2)


def _gaussian(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, level, x.shape)


def _poisson(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(np.clip(x, 0, None) * level) / level


def _speckle(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return x * (1.0 + rng.normal(0.0, level, x.shape))


def _rician(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return np.hypot(x + rng.normal(0.0, level, x.shape), rng.normal(0.0, level, x.shape))


_ARTEFACTS = {"streaks": _streaks, "bias_field": _bias_field, "ghosting": _ghosting, "rings": _rings,
              "vignette": _vignette}
_NOISE = {"gaussian": _gaussian, "poisson": _poisson, "speckle": _speckle, "rician": _rician}
