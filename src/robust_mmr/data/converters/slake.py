"""SLAKE 1.0 (Liu et al. 2021): ``raw_data/{train,validate,test}.json`` with images ``imgs/xmlabN/source.jpg``.

Bilingual; English only by default (``q_lang == "en"``), ``lang="zh"`` or ``"all"`` to change; rows of
other languages are counted as skipped ("language filter"). ``validate`` becomes split ``val``. Domain keys
``modality`` (CT / MRI / X-Ray) and ``location``.
"""

from __future__ import annotations

from pathlib import Path

from robust_mmr.data.converters.common import (
    ConversionReport,
    ImageIndex,
    as_text,
    link_folder,
    normalise_answer_type,
    read_json,
    require_file,
)
from robust_mmr.data.schema import VQARecord
from robust_mmr.errors import InputError

SPLIT_FILES = {"train": "train.json", "val": "validate.json", "test": "test.json"}
LANGS = ("en", "zh", "all")
META_FIELDS = ("modality", "location", "content_type", "base_type", "q_lang", "img_id")


def convert(in_dir: Path, out: Path, report: ConversionReport, *, lang: str = "en") -> list[VQARecord]:
    if lang not in LANGS:
        raise InputError(f"unknown SLAKE language {lang!r}; valid: {', '.join(LANGS)}")
    prefix = link_folder(out, "imgs", in_dir / "imgs")
    images = ImageIndex()
    records = []
    for split, name in SPLIT_FILES.items():
        path = require_file(in_dir / "raw_data" / name, f"SLAKE {name}")
        rows = read_json(path)
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON list of question objects")
        for row_no, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                report.skip(path, row_no, "<row>", "malformed row", f"expected an object, got {type(row).__name__}")
                continue
            if lang != "all" and row.get("q_lang") != lang:
                report.skip(path, row_no, "q_lang", "language filter", f"{row.get('q_lang')!r} != {lang!r}")
                continue
            values = {k: as_text(row.get(k)) for k in ("qid", "img_name", "question", "answer")}
            empty = next((k for k, v in values.items() if not v), None)
            if empty:
                report.skip(path, row_no, empty, f"empty {empty}", "missing or empty in the native row")
                continue
            answer_type = normalise_answer_type(row.get("answer_type"))
            if answer_type is None:
                report.skip(path, row_no, "answer_type", "unknown answer_type", f"{row.get('answer_type')!r}")
                continue
            if not images.exists(in_dir / "imgs" / values["img_name"]):
                report.skip(path, row_no, "img_name", "missing image", f"imgs/{values['img_name']} not found")
                continue
            meta = {k: as_text(row[k]) for k in META_FIELDS if as_text(row.get(k))}
            meta["source"] = "slake"
            records.append(VQARecord(f"slake-{values['qid']}", f"{prefix}/{values['img_name']}", values["question"],
                                     values["answer"], answer_type, split, meta))
            report.kept += 1
    return records
