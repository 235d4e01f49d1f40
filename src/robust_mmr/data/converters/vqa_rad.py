"""VQA-RAD (Lau et al. 2018): MEVF ``trainset.json``/``testset.json`` or the original public json.

Layout: ``IN/images/synpicNNNNN.jpg``; ``IN/trainset.json``, ``IN/testset.json`` (variant ``mevf``, the
benchmark split with templated "frame" questions in train) or
``IN/original_release/VQA_RAD_Dataset_Public.json`` (variant ``original``: ``phrase_type`` freeform/para
→ train, test_freeform/test_para → test; ``question_rephrase`` and ``question_frame`` ("NULL" when
absent) kept in meta). Domain key ``image_organ`` (HEAD / CHEST / ABD). There is no validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robust_mmr.data.converters.common import (
    ConversionReport,
    ImageIndex,
    as_text,
    link_folder,
    normalise_answer_type,
    read_json,
    require_file,
    synpic_id,
)
from robust_mmr.data.schema import VQARecord
from robust_mmr.errors import InputError

VARIANTS = ("mevf", "original")
ORIGINAL_JSON = "original_release/VQA_RAD_Dataset_Public.json"
ORIGINAL_SPLITS = {"freeform": "train", "para": "train", "test_freeform": "test", "test_para": "test"}
# Native fields copied into meta when present and not "NULL".
META_FIELDS = ("image_organ", "question_type", "phrase_type", "question_rephrase", "question_frame", "evaluation")


def convert(in_dir: Path, out: Path, report: ConversionReport, *, variant: str = "mevf") -> list[VQARecord]:
    if variant not in VARIANTS:
        raise InputError(f"unknown VQA-RAD variant {variant!r}; valid: {', '.join(VARIANTS)}")
    prefix = link_folder(out, "images", in_dir / "images")
    if variant == "mevf":
        sources = [(require_file(in_dir / f"{s}set.json", f"MEVF {s}set.json"), s) for s in ("train", "test")]
    else:
        sources = [(require_file(in_dir / ORIGINAL_JSON, "original release json"), None)]
    report.notes.append(f"variant {variant}; no official validation split (carve one with `data split`)")
    images = ImageIndex()
    records = []
    for path, split in sources:
        rows = read_json(path)
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON list of question objects")
        for row_no, row in enumerate(rows, start=1):
            record = _record(row, split, prefix, in_dir / "images", images, report, path, row_no)
            if record is not None:
                records.append(record)
    return records


def _record(row: Any, split: str | None, prefix: str, image_dir: Path, images: ImageIndex,
            report: ConversionReport, path: Path, row_no: int) -> VQARecord | None:
    if not isinstance(row, dict):
        report.skip(path, row_no, "<row>", "malformed row", f"expected an object, got {type(row).__name__}")
        return None
    if split is None:
        split = ORIGINAL_SPLITS.get(as_text(row.get("phrase_type")))
        if split is None:
            report.skip(path, row_no, "phrase_type", "unknown phrase_type",
                        f"{row.get('phrase_type')!r} not in {', '.join(ORIGINAL_SPLITS)}")
            return None
    values = {name: as_text(row.get(name)) for name in ("qid", "image_name", "question", "answer")}
    for name, value in values.items():
        if not value:
            report.skip(path, row_no, name, f"empty {name}", "missing or empty in the native row")
            return None
    answer_type = normalise_answer_type(row.get("answer_type"))
    if answer_type is None:
        report.skip(path, row_no, "answer_type", "unknown answer_type", f"{row.get('answer_type')!r}")
        return None
    if not images.exists(image_dir / values["image_name"]):
        report.skip(path, row_no, "image_name", "missing image", f"{values['image_name']} not in {image_dir}")
        return None
    meta: dict[str, str] = {"source": "vqa-rad", "qid": values["qid"]}
    meta.update({k: as_text(row[k]) for k in META_FIELDS if as_text(row.get(k)) not in ("", "NULL")})
    meta["synpic"] = synpic_id(values["image_name"]) or ""
    report.kept += 1
    return VQARecord(f"vqarad-{values['qid']}", f"{prefix}/{values['image_name']}", values["question"],
                     values["answer"], answer_type, split, meta)
