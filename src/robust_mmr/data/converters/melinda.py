"""MELINDA (Wu et al. 2021): experiment-method classification of biomedical figures.

Layout: ``IN/{train,dev,test}.csv`` with columns ``figure_file, caption, i_meth, p_meth, i_meth_label,
p_meth_label``; figures in an image folder (``images`` option, default ``IN/images``) by ``figure_file``.
Each row becomes a classification record: ``text`` = caption, ``label`` = the ``label_column`` value
(default ``p_meth_label``); the other three method columns go into meta. ``dev`` becomes ``val``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from robust_mmr.data.converters.common import ConversionReport, ImageIndex, link_folder, require_file
from robust_mmr.data.schema import ClassificationRecord
from robust_mmr.errors import InputError

SPLIT_FILES = {"train": "train.csv", "val": "dev.csv", "test": "test.csv"}
LABEL_COLUMNS = ("i_meth", "p_meth", "i_meth_label", "p_meth_label")
REQUIRED = ("figure_file", "caption", *LABEL_COLUMNS)


def convert(in_dir: Path, out: Path, report: ConversionReport, *, label_column: str = "p_meth_label",
            images: str = "images") -> list[ClassificationRecord]:
    if label_column not in LABEL_COLUMNS:
        raise InputError(f"unknown MELINDA label column {label_column!r}; valid: {', '.join(LABEL_COLUMNS)}")
    image_dir = in_dir / images
    prefix = link_folder(out, "images", image_dir)
    found = ImageIndex()
    records = []
    for split, name in SPLIT_FILES.items():
        path = require_file(in_dir / name, f"MELINDA {name}")
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED)}")
            for row in reader:
                line_no = reader.line_num
                if None in row or any(v is None for v in row.values()):
                    report.skip(path, line_no, "<row>", "malformed row",
                                f"expected {len(reader.fieldnames)} columns")
                    continue
                values = {k: row[k].strip() for k in REQUIRED}
                empty = next((k for k in ("figure_file", "caption", label_column) if not values[k]), None)
                if empty:
                    report.skip(path, line_no, empty, f"empty {empty}", "missing or empty in the native row")
                    continue
                if not found.exists(image_dir / values["figure_file"]):
                    report.skip(path, line_no, "figure_file", "missing image",
                                f"{values['figure_file']} not in {image_dir}")
                    continue
                meta = {k: values[k] for k in LABEL_COLUMNS if k != label_column and values[k]}
                meta["source"] = "melinda"
                figure = values["figure_file"]
                records.append(ClassificationRecord(f"melinda-{figure}", f"{prefix}/{figure}", values["caption"],
                                                    values[label_column], split, meta))
                report.kept += 1
    return records
