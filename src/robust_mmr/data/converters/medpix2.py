"""MedPix-2.0 (Siragusa et al. 2024): ``splitted_dataset/descriptions_{train,dev,test}.jsonl`` + ``images/``.

One JSON object per line and image: ``{"Type": "CT"|"MR", "U_id", "image", "Description": {"Caption",
"Modality", "Plane", ...}, "Location", "Location Category"}`` with the file ``images/<image>.png``.
Becomes an image_text record (text = caption); meta: ``modality`` (= Type), ``modality_detail``, ``plane``,
``location``, ``location_category``, ``case`` (U_id), ``synpic``. ``dev`` becomes ``val``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robust_mmr.data.converters.common import (
    ConversionReport,
    ImageIndex,
    as_text,
    link_folder,
    read_jsonl,
    require_file,
    synpic_id,
)
from robust_mmr.data.schema import ImageTextRecord

SPLIT_FILES = {"train": "descriptions_train.jsonl", "val": "descriptions_dev.jsonl", "test": "descriptions_test.jsonl"}
# meta key -> (path into the native object)
META_PATHS = {
    "modality": ("Type",),
    "modality_detail": ("Description", "Modality"),
    "plane": ("Description", "Plane"),
    "location": ("Location",),
    "location_category": ("Location Category",),
    "case": ("U_id",),
}


def convert(in_dir: Path, out: Path, report: ConversionReport) -> list[ImageTextRecord]:
    prefix = link_folder(out, "images", in_dir / "images")
    found = ImageIndex()
    records = []
    for split, name in SPLIT_FILES.items():
        path = require_file(in_dir / "splitted_dataset" / name, f"MedPix-2.0 {name}")
        for line_no, obj in read_jsonl(path, report):
            record = _record(obj, split, prefix, in_dir / "images", found, report, path, line_no)
            if record is not None:
                records.append(record)
    return records


def _record(obj: Any, split: str, prefix: str, image_dir: Path, found: ImageIndex, report: ConversionReport,
            path: Path, line_no: int) -> ImageTextRecord | None:
    if not isinstance(obj, dict):
        report.skip(path, line_no, "<line>", "malformed row", f"expected an object, got {type(obj).__name__}")
        return None
    image = as_text(obj.get("image"))
    caption = as_text(_get(obj, ("Description", "Caption")))
    for name, value in (("image", image), ("Description.Caption", caption)):
        if not value:
            report.skip(path, line_no, name, f"empty {name}", "missing or empty in the native row")
            return None
    if not found.exists(image_dir / f"{image}.png"):
        report.skip(path, line_no, "image", "missing image", f"{image}.png not in {image_dir}")
        return None
    meta = {key: as_text(_get(obj, keys)) for key, keys in META_PATHS.items() if as_text(_get(obj, keys))}
    meta.update(source="medpix2", synpic=synpic_id(image) or "")
    report.kept += 1
    return ImageTextRecord(f"medpix2-{image}", f"{prefix}/{image}.png", caption, split, meta)


def _get(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj
