"""VQA-Med-2019 (Ben Abacha et al. 2019, ImageCLEF): pipe-separated QA files, four question categories.

Layout (see FORMATS.md): ``training/All_QA_Pairs_train.txt`` and ``validation/All_QA_Pairs_val.txt``
(``image|question|answer``) with ``*/QAPairsByCategory/C1_Modality_<split>.txt`` … ``C4_Abnormality_*`` giving
each question's category; ``testing/VQAMed2019_Test_Questions_w_Ref_Answers.txt``
(``image|category|question|answer``, ``#`` between alternative answers: the first is ``answer``, all are in
``meta.answers`` joined by ``|``). Images ``<image>.jpg`` in the split's image folder.

Per-image domain keys from the category questions about the image: ``modality`` (coarse, via
:func:`~robust_mmr.data.converters.common.modality_from_text` on the C1 answer, or the C1 question when
the answer is yes/no, else on any question naming a modality), ``modality_answer``, ``plane`` and
``organ`` (C2/C3 answers); ``unknown`` where the image has no such question (each test image has only
one). ``answer_type``: yes/no answers are closed, others open; ``meta.category`` has the category.
"""

from __future__ import annotations

from pathlib import Path

from robust_mmr.data.converters.common import (
    ConversionReport,
    ImageIndex,
    answer_type_from_answer,
    link_folder,
    modality_from_text,
    normalise_answer,
    read_fields,
    require_file,
)
from robust_mmr.data.schema import VQARecord
from robust_mmr.errors import InputError

CATEGORIES = {"C1": "modality", "C2": "plane", "C3": "organ", "C4": "abnormality"}
CATEGORY_FILE_STEMS = {"C1": "C1_Modality", "C2": "C2_Plane", "C3": "C3_Organ", "C4": "C4_Abnormality"}
# split -> (folder, QA file, image folder, suffix of the per-category files)
SPLITS = {
    "train": ("training", "All_QA_Pairs_train.txt", "train_images", "train"),
    "val": ("validation", "All_QA_Pairs_val.txt", "val_images", "val"),
    "test": ("testing", "VQAMed2019_Test_Questions_w_Ref_Answers.txt", "VQAMed2019_Test_Images", None),
}
UNKNOWN = "unknown"

Row = tuple[Path, int, str, str, str, str]  # file, line, image id, category name, question, answer field


def convert(in_dir: Path, out: Path, report: ConversionReport, *, categories: str = "C1,C2,C3,C4") -> list[VQARecord]:
    wanted = _parse_categories(categories)
    report.notes.append(f"categories {','.join(c for c in CATEGORIES if CATEGORIES[c] in wanted)}")
    images = ImageIndex()
    records = []
    for split, (folder, qa_file, image_folder, suffix) in SPLITS.items():
        prefix = link_folder(out, f"images/{split}", in_dir / folder / image_folder)
        qa_path = require_file(in_dir / folder / qa_file, f"VQA-Med-2019 {split} QA file")
        rows = _test_rows(qa_path, report) if suffix is None else _rows(in_dir / folder, qa_path, suffix, report)
        domains = _image_domains(rows)
        for path, line_no, image, category, question, answer_field in rows:
            if category not in wanted:
                report.skip(path, line_no, "category", "category not selected", f"{category} not in {categories}")
                continue
            file_name = f"{image}.jpg"
            if not images.exists(in_dir / folder / image_folder / file_name):
                report.skip(path, line_no, "image", "missing image", f"{file_name} not in {folder}/{image_folder}")
                continue
            answers = answer_field.split("#")
            meta = {"source": "vqa-med-2019", "category": category, "synpic": image, **domains[image]}
            if len(answers) > 1:
                meta["answers"] = "|".join(answers)
            records.append(VQARecord(f"vqamed2019-{split}-{image}-{category}", f"{prefix}/{file_name}", question,
                                     answers[0], answer_type_from_answer(answers[0]), split, meta))
            report.kept += 1
    return records


def _parse_categories(categories: str) -> set[str]:
    codes = [c.strip().upper() for c in categories.split(",") if c.strip()]
    bad = [c for c in codes if c not in CATEGORIES]
    if bad or not codes:
        raise InputError(f"unknown VQA-Med-2019 categories {bad or categories!r}; valid: {', '.join(CATEGORIES)}")
    return {CATEGORIES[c] for c in codes}


def _rows(folder: Path, qa_path: Path, suffix: str, report: ConversionReport) -> list[Row]:
    """Train/val rows with their category, looked up by (image, question, answer) in the category files."""
    category_of: dict[tuple[str, str, str], str] = {}
    for code, stem in CATEGORY_FILE_STEMS.items():
        path = require_file(folder / "QAPairsByCategory" / f"{stem}_{suffix}.txt", f"{code} category file")
        for _, (image, question, answer) in read_fields(path, "|", 3, report):
            category_of[(image, question, answer)] = CATEGORIES[code]
    rows = []
    for line_no, (image, question, answer) in read_fields(qa_path, "|", 3, report):
        category = category_of.get((image, question, answer))
        if category is None:
            report.skip(qa_path, line_no, "category", "no category", "row is in no QAPairsByCategory file")
        elif not (image and question and answer):
            report.skip(qa_path, line_no, "<row>", "empty field", "image, question and answer must be non-empty")
        else:
            rows.append((qa_path, line_no, image, category, question, answer))
    return rows


def _test_rows(qa_path: Path, report: ConversionReport) -> list[Row]:
    rows = []
    for line_no, (image, category, question, answer) in read_fields(qa_path, "|", 4, report):
        if category not in CATEGORIES.values():
            report.skip(qa_path, line_no, "category", "unknown category",
                        f"{category!r} not in {', '.join(CATEGORIES.values())}")
        elif not (image and question and answer):
            report.skip(qa_path, line_no, "<row>", "empty field", "image, question and answer must be non-empty")
        else:
            rows.append((qa_path, line_no, image, category, question, answer))
    return rows


def _image_domains(rows: list[Row]) -> dict[str, dict[str, str]]:
    """modality / modality_answer / plane / organ per image, from its category questions."""
    by_image: dict[str, dict[str, tuple[str, str]]] = {}
    for _, _, image, category, question, answer_field in rows:
        by_image.setdefault(image, {})[category] = (question, answer_field.split("#")[0])
    domains = {}
    for image, qa in by_image.items():
        facts = {key: qa[key][1] if key in qa else UNKNOWN for key in ("plane", "organ")}
        facts["modality_answer"] = qa["modality"][1] if "modality" in qa else UNKNOWN
        facts["modality"] = _coarse_modality(qa)
        domains[image] = facts
    return domains


def _coarse_modality(qa: dict[str, tuple[str, str]]) -> str:
    """The coarse modality of an image: its C1 answer, the modality a C1 yes/no question names when the
    answer is yes (a no says only what the image is not), else one that another question names."""
    texts = []
    if "modality" in qa:
        question, answer = qa["modality"]
        answer = normalise_answer(answer)
        texts += [question] if answer == "yes" else [] if answer == "no" else [answer]
    texts += [question for category, (question, _) in qa.items() if category != "modality"]
    for text in texts:
        modality = modality_from_text(text)
        if modality != "other":
            return modality
    if "modality" in qa and normalise_answer(qa["modality"][1]) not in ("yes", "no"):
        return "other"  # a modality answer that names no table entry (e.g. "ugi - upper gi")
    return UNKNOWN
