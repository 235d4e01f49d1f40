"""Reading images from a dataset directory: safe path resolution, decoding, and integrity checks.

Intensity handling is explicit: for JPEG/PNG :func:`load_image` returns the stored pixels unchanged
(dtype and channels as in the file, uint8 or uint16), so conversion to model input is a separate,
stated step. DICOM files go through :func:`robust_mmr.data.dicom.read_dicom` (modality LUT, VOI,
MONOCHROME1 inversion → uint16); :func:`read_image` returns the array with an ``info`` dict that
names the mapping applied, for every format.

Cost: every function here decodes a file's pixels at most once; ``check_image(decode=False)`` reads the
header only (DICOM too), and ``read_image(path, min_size)`` decodes a large JPEG at reduced scale.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

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
    """Prove an image file usable by decoding it (``decode=False``: read its header only); returns (height, width).

    Raises :class:`ImageReadError` with reason ``missing image file``, ``empty image file``,
    ``image too large`` (over :data:`MAX_IMAGE_PIXELS`, from the header), ``truncated image`` (the data
    stops early) or ``unreadable image`` (not decodable at all). The header-only check reads no pixel,
    for DICOM too (its pixel data is not read), so screening a manifest costs one small read per file.
    """
    _check_file(path)
    if is_dicom(path):
        if decode:
            return _read_dicom_checked(path)[0].shape[:2]
        return _dicom_size(path)
    with _pil_errors(path), _open_checked(path, str(path)) as img:
        if decode:
            img.load()  # decodes every pixel: truncated data raises here
        return img.height, img.width


def _check_file(path: Path) -> None:
    """Refuse a missing or empty file before any decoder sees it."""
    if not path.is_file():
        raise ImageReadError("missing image file", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError("empty image file", f"{path} has 0 bytes")


@contextmanager
def _pil_errors(name: str | Path) -> Iterator[None]:
    """Map what PIL raises while opening or decoding ``name`` to :class:`ImageReadError`."""
    try:
        yield
    except Image.DecompressionBombError as err:  # PIL refuses > 2x its limit inside open()
        raise ImageReadError("image too large", f"{name}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        reason = "truncated image" if "truncated" in str(err) else "unreadable image"
        raise ImageReadError(reason, f"{name}: {err}") from None


def _open_checked(source: Path | BinaryIO, name: str) -> Image.Image:
    """Open an image reading its header only; refuse one over :data:`MAX_IMAGE_PIXELS` before any decoding."""
    img = Image.open(source)
    if img.width * img.height > MAX_IMAGE_PIXELS:
        img.close()
        raise ImageReadError("image too large", f"{name}: {img.width} x {img.height} pixels "
                             f"exceeds {MAX_IMAGE_PIXELS}; refused before decoding")
    return img


def _dicom_size(path: Path) -> tuple[int, int]:
    """(rows, columns) of a DICOM file from its header, its pixel data left unread."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        rows, columns = int(ds.Rows), int(ds.Columns)
    except Exception as err:  # pydicom raises many types (InvalidDicomError, AttributeError for no Rows...)
        raise ImageReadError("unreadable image", f"{path}: {type(err).__name__}: {err}") from None
    if rows * columns > MAX_IMAGE_PIXELS:
        raise ImageReadError("image too large", f"{path}: {columns} x {rows} pixels exceeds {MAX_IMAGE_PIXELS}; "
                             "refused before decoding")
    return rows, columns


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


def read_image(path: str | Path, min_size: int | None = None) -> tuple[np.ndarray, dict[str, object]]:
    """Decode an image once and say how: ``(array, info)``, ``info`` a flat dict of scalars.

    JPEG/PNG: ``info = {"format", "mode", "dtype", "intensity": "stored"}`` — pixels as stored.
    DICOM: the steps of :func:`robust_mmr.data.dicom.read_dicom` (rescale, VOI, inversion).
    ``min_size``: the side the caller will resize to; a JPEG at least twice as large is then decoded at
    1/2, 1/4 or 1/8 scale with both sides still >= ``min_size`` (see :func:`decode_image`).
    Errors are those of :func:`check_image`, found by this one decode.
    """
    path = Path(path)
    _check_file(path)
    if is_dicom(path):
        return _read_dicom_checked(path)
    return decode_image(path, str(path), min_size)


def decode_image(source: Path | BinaryIO, name: str, min_size: int | None = None) -> tuple[np.ndarray, dict]:
    """Decode a JPEG/PNG (a path or an open binary file) with one full decode: ``(array, info)`` as :func:`read_image`.

    With ``min_size``, a JPEG is decoded by libjpeg's DCT scaling (PIL's ``draft``) at the smallest of
    1/8, 1/4, 1/2 that keeps both sides >= ``min_size``, recorded as ``info["draft_scale"]``: a 2,500 px
    scan decoded for a 224 px model costs about a tenth of a full decode. Other formats ignore it.
    """
    with _pil_errors(name), _open_checked(source, name) as img:
        info: dict[str, object] = {"format": img.format or "unknown", "mode": img.mode, "intensity": "stored"}
        scale = _draft(img, min_size)
        if scale > 1:
            info["draft_scale"] = scale
        img.load()  # the one full decode: truncated data raises here
        array = _pixels(img, info)
    info["dtype"] = str(array.dtype)
    return array, info


def _draft(img: Image.Image, min_size: int | None) -> int:
    """Configure a JPEG's decoder for reduced-size decoding with both sides >= ``min_size``; returns the scale."""
    if min_size is None:
        return 1
    width = img.width
    configured = img.draft(img.mode, (min_size, min_size))  # None: not a JPEG (or already configured)
    return 1 if configured is None else round(width / configured[1][2])


def _pixels(img: Image.Image, info: dict[str, object]) -> np.ndarray:
    """A decoded PIL image → array: uint16 for 16-bit grey, else L/RGB/RGBA uint8 (other modes → RGB)."""
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img, dtype=np.uint16)
    if img.mode == "I":
        return np.asarray(img).astype(np.uint16)
    if img.mode not in ("L", "RGB", "RGBA"):
        info["intensity"] = f"{info['mode']} converted to RGB"
        img = img.convert("RGB")
    return np.asarray(img).copy()


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


def image_to_uint8(image: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """A decoded image → (channels, size, size), as compact as it is exact: uint8 for an 8-bit image
    (resized bilinear in 8 bits, colour averaged to grey for 1 channel), else float in [0, 1] as
    :func:`image_to_tensor` gives (16-bit and DICOM intensities would lose precision in 8 bits).

    A uint8 image is a quarter of the float one, so it crosses DataLoader worker boundaries and the
    host-to-device copy cheaply; :func:`pixels_to_float` turns it into model input, on the device.
    """
    if image.dtype != np.uint8:
        return image_to_tensor(image, size, channels)
    if image.ndim == 3:
        image = image[..., :3]
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    if image.ndim == 3 and channels == 1:
        image = np.rint(image.mean(axis=-1)).astype(np.uint8)
    t = torch.from_numpy(np.array(image))  # a writable copy
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return t.expand(channels, -1, -1).contiguous() if t.shape[0] != channels else t.contiguous()


def pixels_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels of any shape from :func:`image_to_uint8` → float in [0, 1] (uint8 / 255; float passes through)."""
    return pixels.float().div_(255.0) if pixels.dtype == torch.uint8 else pixels


def stack_pixels(pixels: list[torch.Tensor]) -> torch.Tensor:
    """(C, H, W) images → (B, C, H, W): uint8 when every image is uint8, else float in [0, 1]."""
    if all(p.dtype == torch.uint8 for p in pixels):
        return torch.stack(pixels)
    return torch.stack([pixels_to_float(p) for p in pixels])
