"""Reading DICOM files into display-ready arrays, with every intensity step recorded (DESIGN §2).

Grey-scale pipeline, in the order of the DICOM standard (PS3.3 C.11, "grayscale transformations"):

1. **Modality LUT** — Rescale Slope/Intercept (or a Modality LUT Sequence) to physical units (HU for CT).
2. **VOI** — the first VOI LUT Sequence item if present, else the first Window Center/Width pair with its
   VOI LUT Function (LINEAR, LINEAR_EXACT, SIGMOID; PS3.3 C.11.2.1.2-3), else — when the file carries no
   VOI at all — the min..max of the frame (stated in the info as ``voi="min-max"``).
3. **Presentation** — MONOCHROME1 (low values bright) is inverted so that high output is always bright.

The output is uint16 over the full 0..65535 range (no 8-bit quantisation of a 12-bit window). Colour
images (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR through its palette) keep their stored
values. Multi-frame files give frame 0. :func:`read_dicom` returns the array and a flat ``info`` dict of
scalars that says exactly which of these steps were applied and with which parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom")
_OUT_MAX = 65535.0
_PREAMBLE = 128  # bytes before the b"DICM" magic of a DICOM Part 10 file


def is_dicom(path: str | Path) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a file with the DICOM Part 10 magic at byte 128."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(_PREAMBLE)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a DICOM file. Returns ``(array, info)``.

    ``array``: (H, W) uint16 for grey-scale after modality LUT, VOI and MONOCHROME1 inversion; (H, W, 3)
    in the stored dtype for colour. ``info``: flat dict of scalars naming each applied step.
    Raises whatever pydicom raises for unreadable or truncated files (``check_image`` maps these).
    """
    import pydicom
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
    if frames > 1:
        pixels = pixels[0]
    info: dict[str, Any] = {"format": "DICOM", "photometric": photometric, "frames": frames, "frame": 0}
    if colour:
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, ds)
            info["colour"] = "palette applied"
        else:
            info["colour"] = "stored RGB" if photometric == "RGB" else f"{photometric} converted to RGB by pydicom"
        info["dtype"] = str(pixels.dtype)
        return np.ascontiguousarray(pixels), info
    values = _modality_lut(ds, pixels, info)
    out = _voi(ds, values, info)
    info["inverted"] = photometric == "MONOCHROME1"
    if info["inverted"]:
        out = _OUT_MAX - out
    info["dtype"] = "uint16"
    return np.rint(out).astype(np.uint16), info


def _modality_lut(ds: Any, pixels: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        info["modality_lut"] = "Modality LUT Sequence"
        return apply_modality_lut(pixels, ds).astype(np.float64)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    info.update(modality_lut="rescale", rescale_slope=slope, rescale_intercept=intercept)
    return pixels.astype(np.float64) * slope + intercept


def _voi(ds: Any, values: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Map modality values to 0..65535 (float64)."""
    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        entries, first, lut_bits = (int(v) for v in item.LUTDescriptor)
        lut = np.asarray(item.LUTData, dtype=np.float64).ravel()[: entries or 65536]
        info.update(voi="lut", voi_lut_bits=lut_bits, voi_lut_items=len(ds.VOILUTSequence))
        # PS3.3 C.11.2.1.1: values below the first mapped input take the first entry, above it the last.
        index = np.clip(np.rint(values).astype(np.int64) - first, 0, lut.size - 1)
        return lut[index] * (_OUT_MAX / (2**lut_bits - 1))
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = _first(ds.WindowCenter)
        width = max(_first(ds.WindowWidth), 1.0)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        info.update(voi="window", window_center=center, window_width=width, voi_function=function)
        return _window(values, center, width, function)
    lo, hi = float(values.min()), float(values.max())
    info.update(voi="min-max", window_min=lo, window_max=hi)
    return (values - lo) * (_OUT_MAX / (hi - lo)) if hi > lo else np.zeros_like(values)


def _window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID), output 0..65535."""
    if function == "SIGMOID":
        return _OUT_MAX / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0) * _OUT_MAX
    if w <= 1.0:  # LINEAR needs width >= 1; width 1 is a hard threshold
        return np.where(x > c - 0.5, _OUT_MAX, 0.0)
    return np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0) * _OUT_MAX


def _first(value: Any) -> float:
    """Window Center/Width may be multi-valued (several presets): the first is used."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)
