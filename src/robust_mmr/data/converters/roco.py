"""ROCO (Pelka et al. 2018): captions and UMLS annotations per split and folder, images often missing.

Layout: ``IN/{train,validation,test}/{radiology,non-radiology}/`` with tab-separated ``captions.txt``
(``ROCO_00059<TAB> caption``), ``keywords.txt``, ``semtypes.txt``, ``cuis.txt`` (``id<TAB>value<TAB>…``),
``dlinks.txt`` (``id<TAB>wget …<TAB>file``), comma-separated ``licences.txt`` (``id,file,licence``), and
``images/``. The image is ``images/<file from dlinks>``, else ``images/<file from licences>``; captions
whose image is absent are skipped as ``missing image`` (normal for ROCO: downloads often fail).
Domain key ``modality`` parsed from the caption with
:data:`~robust_mmr.data.converters.common.MODALITY_KEYWORDS`; ``category`` radiology/non-radiology.
"""

from __future__ import annotations

from pathlib import Path

from robust_mmr.data.converters.common import ConversionReport, link_folder, modality_from_text
from robust_mmr.data.schema import ImageTextRecord
from robust_mmr.errors import InputError

SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}
CATEGORY_FOLDERS = ("radiology", "non-radiology")
# Tab-separated annotation files whose values (all fields after the id) go into meta, "|"-joined.
LIST_FILES = {"keywords": "keywords.txt", "semtypes": "semtypes.txt", "cuis": "cuis.txt"}


def convert(in_dir: Path, out: Path, report: ConversionReport) -> list[ImageTextRecord]:
    folders = [(s, c) for s in SPLIT_FOLDERS for c in CATEGORY_FOLDERS if (in_dir / s / c / "captions.txt").is_file()]
    if not folders:
        raise InputError(f"{in_dir}: no <split>/<radiology|non-radiology>/captions.txt found "
                         f"(splits: {', '.join(SPLIT_FOLDERS)})")
    records = []
    for split_folder, category in folders:
        folder = in_dir / split_folder / category
        prefix = link_folder(out, f"images/{split_folder}/{category}", folder / "images")
        records += _convert_folder(folder, prefix, SPLIT_FOLDERS[split_folder], category, report)
    return records


def _convert_folder(folder: Path, prefix: str, split: str, category: str,
                    report: ConversionReport) -> list[ImageTextRecord]:
    lists = {key: _read_lists(folder / name) for key, name in LIST_FILES.items()}
    dlinks = {rid: values[-1] for rid, values in _read_lists(folder / "dlinks.txt").items() if values}
    licences = _read_licences(folder / "licences.txt")
    tag = "rad" if category == "radiology" else "nonrad"
    records = []
    for line_no, (rid, caption) in _read_captions(folder / "captions.txt", report):
        if not caption:
            report.skip(folder / "captions.txt", line_no, "caption", "empty caption", f"{rid} has no caption text")
            continue
        licence_file, licence = licences.get(rid, ("", ""))
        names = [n for n in (dlinks.get(rid, ""), licence_file) if n]
        image = next((n for n in names if (folder / "images" / n).is_file()), None)
        if image is None:
            detail = f"{rid}: none of {names} in {folder / 'images'}" if names else f"{rid}: no file in dlinks/licences"
            report.skip(folder / "captions.txt", line_no, "image", "missing image", detail)
            continue
        meta = {"source": "roco", "category": category, "roco_id": rid, "modality": modality_from_text(caption)}
        meta.update({key: "|".join(values[rid]) for key, values in lists.items() if values.get(rid)})
        if licence:
            meta["licence"] = licence
        records.append(ImageTextRecord(f"roco-{tag}-{rid}", f"{prefix}/{image}", caption, split, meta))
        report.kept += 1
    return records


def _read_captions(path: Path, report: ConversionReport):
    """``(line_no, (id, caption))``; the caption may itself contain tabs (split at the first only)."""
    with path.open(encoding="utf-8", newline="") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            rid, tab, caption = line.partition("\t")
            if not tab or not rid.strip():
                report.skip(path, line_no, "<row>", "malformed row", "expected '<id><TAB><caption>'")
                continue
            yield line_no, (rid.strip(), " ".join(caption.split()))


def _read_lists(path: Path) -> dict[str, list[str]]:
    """``id -> non-empty values`` of an optional tab-separated annotation file (absent file: empty)."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) > 1 and fields[0]:
            out[fields[0]] = [f for f in fields[1:] if f]
    return out


def _read_licences(path: Path) -> dict[str, tuple[str, str]]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = [f.strip() for f in line.split(",", 2)]
        if len(fields) == 3 and fields[0]:
            out[fields[0]] = (fields[1], fields[2])
    return out
