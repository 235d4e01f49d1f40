"""Generic CSV / JSONL table plus an image folder (``--source csv``).

``in_path`` is the table (``.csv`` or ``.jsonl``); ``images`` the folder image paths are relative to
(default: the table's folder). ``columns`` maps canonical fields to column names, e.g.
``"id=fig_id,image=path,text=caption"``; unmapped fields use their own name. The record kind follows the
columns present: ``question`` + ``answer`` → vqa, ``label`` → classification, else image_text. Rows without
a split column get ``split`` (default ``train``); ``validation``/``valid``/``dev`` mean ``val``. Every other
column goes into meta. A VQA table without ``answer_type`` gets yes/no → closed, others open.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robust_mmr.data.converters.common import (
    ConversionReport,
    ImageIndex,
    answer_type_from_answer,
    as_text,
    link_folder,
    normalise_answer_type,
    read_jsonl,
)
from robust_mmr.data.schema import SPLITS, ClassificationRecord, ImageTextRecord, Record, VQARecord
from robust_mmr.errors import InputError

FIELDS = ("id", "image", "text", "question", "answer", "answer_type", "label", "split")
KIND_FIELDS = {"vqa": ("question", "answer"), "classification": ("text", "label"), "image_text": ("text",)}
SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val", "validate": "val"}


def convert(in_path: Path, out: Path, report: ConversionReport, *, columns: str = "", images: str | None = None,
            split: str = "train") -> list[Record]:
    if not in_path.is_file() or in_path.suffix.lower() not in (".csv", ".jsonl"):
        raise InputError(f"{in_path}: --source csv reads one .csv or .jsonl file")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    mapping = _parse_columns(columns)
    rows = list(_read_rows(in_path, report))
    present = set(rows[0][1]) if rows else set()
    kind = next((k for k, needed in KIND_FIELDS.items() if all(mapping[f] in present for f in needed)), "image_text")
    for needed in ("id", "image", *KIND_FIELDS[kind]):
        if mapping[needed] not in present:
            raise InputError(f"{in_path}: no column {mapping[needed]!r} for field {needed!r}; "
                             f"columns: {', '.join(sorted(present))}; map with --columns {needed}=COLUMN")
    image_dir = Path(images) if images else in_path.parent
    prefix = link_folder(out, "images", image_dir)
    report.notes.append(f"kind {kind}; columns {mapping}")
    found = ImageIndex()
    seen: set[str] = set()
    records = []
    for line_no, row in rows:
        record = _record(kind, row, mapping, split, prefix, image_dir, found, seen, report, in_path, line_no)
        if record is not None:
            records.append(record)
            report.kept += 1
    return records


def _parse_columns(columns: str) -> dict[str, str]:
    mapping = {f: f for f in FIELDS}
    for item in filter(None, (c.strip() for c in columns.split(","))):
        name, eq, column = item.partition("=")
        if not eq or name.strip() not in FIELDS or not column.strip():
            raise InputError(f"bad --columns item {item!r}; "
                             f"expected FIELD=COLUMN with FIELD one of {', '.join(FIELDS)}")
        mapping[name.strip()] = column.strip()
    return mapping


def _read_rows(path: Path, report: ConversionReport) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() != ".csv":
        yield from read_jsonl(path, report)
        return
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                report.skip(path, reader.line_num, "<row>", "malformed row",
                            f"expected {len(reader.fieldnames or [])} columns")
                continue
            yield reader.line_num, row


def _record(kind: str, row: dict[str, Any], mapping: dict[str, str], default_split: str, prefix: str,
            image_dir: Path, found: ImageIndex, seen: set[str], report: ConversionReport, path: Path,
            line_no: int) -> Record | None:
    values = {f: as_text(row.get(mapping[f])) for f in FIELDS}
    for name in ("id", "image", *KIND_FIELDS[kind]):
        if not values[name]:
            report.skip(path, line_no, mapping[name], f"empty {name}", "missing or empty in the row")
            return None
    if values["id"] in seen:
        report.skip(path, line_no, mapping["id"], "duplicate id", f"{values['id']!r} already used")
        return None
    split = SPLIT_ALIASES.get(values["split"].lower(), values["split"].lower()) or default_split
    if split not in SPLITS:
        report.skip(path, line_no, mapping["split"], "invalid split", f"{values['split']!r} not in {', '.join(SPLITS)}")
        return None
    image = values["image"]
    if Path(image).is_absolute() or ".." in Path(image).parts:
        report.skip(path, line_no, mapping["image"], "image path outside image root", image)
        return None
    if not found.exists(image_dir / image):
        report.skip(path, line_no, mapping["image"], "missing image", f"{image} not in {image_dir}")
        return None
    answer_type = (normalise_answer_type(values["answer_type"]) if values["answer_type"]
                   else answer_type_from_answer(values["answer"]))
    if kind == "vqa" and answer_type is None:
        report.skip(path, line_no, mapping["answer_type"], "unknown answer_type", values["answer_type"])
        return None
    used = {mapping[f] for f in FIELDS}
    meta = {k: v for k, v in row.items() if k not in used and isinstance(v, (str, int, float, bool)) and v != ""}
    seen.add(values["id"])
    common = {"id": values["id"], "image": f"{prefix}/{image}", "split": split, "meta": meta}
    if kind == "vqa":
        return VQARecord(question=values["question"], answer=values["answer"], answer_type=answer_type, **common)
    if kind == "classification":
        return ClassificationRecord(text=values["text"], label=values["label"], **common)
    return ImageTextRecord(text=values["text"], **common)
