"""Reading images from a dataset directory: safe path resolution, decoding, and integrity checks.

Intensity handling is explicit: for JPEG/PNG :func:`load_image` returns the stored pixels unchanged
(dtype and channels as in the file, uint8 or uint16), so conversion to model input is a separate,
stated step. DICOM files go through :func:`robust_mmr.data.dicom.read_dicom` (modality LUT, VOI,
MONOCHROME1 inversion → uint16); :func:`read_image` returns the array with an ``info`` dict that
names the mapping applied, for every format.
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from robust_mmr.data.dicom import is_dicom, read_dicom
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


# Largest image decoded (PIL's own decompression-bomb threshold, ~89 Mpx, ~0.27 GB as RGB uint8). Larger
# files are refused from their header, before any pixel is decoded.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS


def check_image(path: Path, decode: bool = True) -> tuple[int, int]:
    """Decode an image file to prove it is usable (``decode=False``: read its header only); returns (height, width).

    Raises :class:`ImageReadError` with reason ``missing image file``, ``empty image file``,
    ``image too large`` (over :data:`MAX_IMAGE_PIXELS`, from the header), ``truncated image`` (the data
    stops early) or ``unreadable image`` (not decodable at all).
    """
    if not path.is_file():
        raise ImageReadError("missing image file", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError("empty image file", f"{path} has 0 bytes")
    if is_dicom(path):
        pixels, _ = _read_dicom_checked(path)
        return pixels.shape[0], pixels.shape[1]
    try:
        with Image.open(path) as img:  # reads the header only
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ImageReadError("image too large", f"{path}: {img.width} x {img.height} pixels "
                                     f"exceeds {MAX_IMAGE_PIXELS}; refused before decoding")
            if decode:
                img.load()  # decodes every pixel: truncated data raises here
            return img.height, img.width
    except Image.DecompressionBombError as err:  # PIL refuses > 2x its limit inside open()
        raise ImageReadError("image too large", f"{path}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        reason = "truncated image" if "truncated" in str(err) else "unreadable image"
        raise ImageReadError(reason, f"{path}: {err}") from None


def _read_dicom_checked(path: Path) -> tuple[np.ndarray, dict[str, object]]:
    try:
        return read_dicom(path)
    except Exception as err:  # pydicom raises many types (InvalidDicomError, ValueError, AttributeError...)
        reason = "truncated image" if "less than expected" in str(err) else "unreadable image"
        raise ImageReadError(reason, f"{path}: {type(err).__name__}: {err}") from None


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an array: (H, W) for grayscale, (H, W, C) for colour.

    8-bit files give uint8, 16-bit grayscale gives uint16; palette and other modes are converted to
    RGB (RGBA keeps its alpha channel as the 4th channel). DICOM: see :func:`read_image`.
    """
    return read_image(path)[0]


def read_image(path: str | Path) -> tuple[np.ndarray, dict[str, object]]:
    """Decode an image and say how: ``(array, info)``, ``info`` a flat dict of scalars.

    JPEG/PNG: ``info = {"format", "mode", "dtype", "intensity": "stored"}`` — pixels as stored.
    DICOM: the steps of :func:`robust_mmr.data.dicom.read_dicom` (rescale, VOI, inversion).
    """
    path = Path(path)
    if is_dicom(path) and path.is_file() and path.stat().st_size:
        return _read_dicom_checked(path)  # decoded once; errors mapped like check_image's
    check_image(path)
    with Image.open(path) as img:
        info: dict[str, object] = {"format": img.format or "unknown", "mode": img.mode, "intensity": "stored"}
        if img.mode in ("I;16", "I;16B", "I;16L"):
            array = np.asarray(img, dtype=np.uint16)
        elif img.mode == "I":
            array = np.asarray(img).astype(np.uint16)
        else:
            if img.mode not in ("L", "RGB", "RGBA"):
                img = img.convert("RGB")
                info["intensity"] = f"{info['mode']} converted to RGB"
            array = np.asarray(img).copy()
    info["dtype"] = str(array.dtype)
    return array, info


def image_to_tensor(image: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """A decoded image ((H, W) or (H, W, C), uint8/uint16) → float (channels, size, size) in [0, 1].

    Intensities are divided by the dtype's maximum; colour is averaged to grey for 1 channel and grey
    repeated for 3. Resizing is bilinear.
    """
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    x = image.astype(np.float32) / scale
    if x.ndim == 3:
        x = x[..., :3].mean(axis=-1) if channels == 1 else x[..., :3]
    if x.shape[0] != size or x.shape[1] != size:
        planes = [x] if x.ndim == 2 else [x[..., c] for c in range(x.shape[-1])]
        planes = [np.asarray(Image.fromarray(p, mode="F").resize((size, size), Image.BILINEAR)) for p in planes]
        x = planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)
    t = torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    if t.shape[0] != channels:
        t = t.expand(channels, -1, -1).contiguous()
    return t.clamp(0.0, 1.0)
