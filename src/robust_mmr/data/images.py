"""Reading images from a dataset directory: safe path resolution, decoding, and integrity checks.

Intensity handling is explicit: :func:`load_image` returns the stored pixels unchanged (dtype and
channels as in the file, uint8 or uint16), so conversion to model input is a separate, stated step.
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from robust_mmr.errors import InputError

# Truncated files must fail loudly, never decode as partially grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageReadError(Exception):
    """An image file that cannot be used; ``reason`` is a short category for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def resolve_image_path(root: str | Path, relative: str) -> Path:
    """Join a manifest's image path onto the dataset root, refusing paths that leave the root.

    Raises :class:`InputError` for absolute paths and for ``..`` escapes such as ``../../etc/passwd``.
    The check is lexical: symbolic links placed inside the dataset directory by its owner (an
    ``images`` link to a large disk, say) are followed.
    """
    candidate = PurePosixPath(relative)
    if candidate.is_absolute() or Path(relative).is_absolute():
        raise InputError(f"image path {relative!r} is absolute; it must be relative to the dataset directory")
    normalised = posixpath.normpath(relative)
    if normalised == ".." or normalised.startswith("../"):
        raise InputError(f"image path {relative!r} leaves the dataset directory {root}")
    return Path(root) / normalised


def check_image(path: Path) -> tuple[int, int]:
    """Fully decode an image file to prove it is usable; returns its (height, width).

    Raises :class:`ImageReadError` with reason ``missing image file``, ``empty image file``,
    ``truncated image`` (the data stops early) or ``unreadable image`` (not decodable at all).
    """
    if not path.is_file():
        raise ImageReadError("missing image file", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError("empty image file", f"{path} has 0 bytes")
    try:
        with Image.open(path) as img:
            img.load()  # decodes every pixel: truncated data raises here
            return img.height, img.width
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        reason = "truncated image" if "truncated" in str(err) else "unreadable image"
        raise ImageReadError(reason, f"{path}: {err}") from None


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an array: (H, W) for grayscale, (H, W, C) for colour.

    8-bit files give uint8, 16-bit grayscale gives uint16; palette and other modes are converted to
    RGB (RGBA keeps its alpha channel as the 4th channel).
    """
    path = Path(path)
    check_image(path)
    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(img, dtype=np.uint16)
        if img.mode == "I":
            return np.asarray(img).astype(np.uint16)
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("RGB")
        return np.asarray(img).copy()
