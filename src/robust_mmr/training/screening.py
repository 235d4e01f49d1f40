"""Bad training samples: found before training where cheap, caught at decode time otherwise, never dropped silently.

Two stages, both recorded as :class:`Skipped` entries that end up in the run summary:

1. **Screening** (:func:`screen_records`, once, before the sampler sees the record list): every manifest
   line is parsed (not UTF-8, invalid JSON, empty caption, missing field...), duplicate ids are skipped
   after their first occurrence, image paths leaving the dataset directory are refused, and each image
   file's *header* is read (missing, 0 bytes, unknown format, over the pixel limit). Because this runs
   before the training order is drawn, the order and every batch's shape stay a pure function of
   (data, seed): a resumed run and an uninterrupted run see the same batches.
2. **Decode** failures only a full decode can find (a truncated JPEG, a corrupt DICOM, non-finite
   pixels): the dataset returns the sample with its problem, the collator leaves it out of the batch and
   lists it in ``batch["skipped"]``; that batch is one sample smaller. The failure is a property of the
   file, so it happens at the same step in every run and resume.

``on_bad_sample="fail"`` turns the first bad sample of either stage into an :class:`InputError`.

Screening reads every image header once; :func:`screened_index` keeps its outcome in the run folder
(``screened-<split>.json``, keyed by the manifest's path, size and modification time), so the other ranks and
every resume read that index instead of every header again (a corpus of 2M images on a network filesystem
takes minutes to screen).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from robust_mmr.data.images import ImageReadError, check_image, resolve_image_path
from robust_mmr.data.manifest import scan_manifest
from robust_mmr.data.schema import ImageTextRecord
from robust_mmr.errors import InputError
from robust_mmr.runfolder import write_json

MANIFEST = "image_text.jsonl"


@dataclass(frozen=True)
class Skipped:
    """One sample left out of training: its id (``line N`` when it has none), why, and the details."""

    id: str
    reason: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class Sample(NamedTuple):
    """One training item as a loader hands it to the collator: ``pixels`` (C, H, W) float in [0, 1] (uint8 0..255
    for an 8-bit image read for transfer as uint8), or None with ``problem`` saying why it was left out."""

    record: ImageTextRecord
    pixels: torch.Tensor | None
    epoch: int
    problem: Skipped | None


def screen_records(root: Path, split: str, on_bad_sample: str) -> tuple[list[ImageTextRecord], list[Skipped]]:
    """The usable records of ``split`` in ``root/image_text.jsonl`` and the ones skipped, in file order.

    Lines that do not parse are reported whatever their split (it cannot be known).
    """
    manifest = Path(root) / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{root}: no {MANIFEST} (pre-training needs image–text pairs)")
    records: list[ImageTextRecord] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for line in scan_manifest(manifest, "image_text"):
        if line.problems:
            p = line.problems[0]
            skipped.append(Skipped(line.raw_id or f"line {line.line_no}", p.reason,
                                   f"{MANIFEST}:{line.line_no}: field {p.field!r}: {p.detail}"))
        elif line.record.split == split:
            problem = _record_problem(Path(root), line.record, seen)
            seen.add(line.record.id)
            if problem:
                skipped.append(problem)
            else:
                records.append(line.record)
        if skipped and on_bad_sample == "fail":
            raise InputError(f"bad sample {skipped[0].id}: {skipped[0].reason} ({skipped[0].detail}); "
                             "train.on_bad_sample=skip leaves such samples out and lists them")
    return records, skipped


def screened_index(root: Path, split: str, on_bad_sample: str,
                   index_dir: Path | None) -> tuple[list[ImageTextRecord], list[Skipped]]:
    """:func:`screen_records`, kept in ``index_dir/screened-<split>.json`` and read back from there while the
    manifest is unchanged (same path, size and modification time). ``index_dir=None``: screen, keep nothing.
    An index with skipped samples is not reused under ``on_bad_sample="fail"`` (screening again names the first)."""
    if index_dir is None:
        return screen_records(root, split, on_bad_sample)
    path = Path(index_dir) / f"screened-{split}.json"
    key = _manifest_key(Path(root), split)
    saved = _read_index(path)
    if saved is not None and saved.get("key") == key and not (saved["skipped"] and on_bad_sample == "fail"):
        return [ImageTextRecord(**r) for r in saved["records"]], [Skipped(**s) for s in saved["skipped"]]
    records, skipped = screen_records(root, split, on_bad_sample)
    Path(index_dir).mkdir(parents=True, exist_ok=True)
    write_json(path, {"key": key, "records": [asdict(r) for r in records], "skipped": [s.as_dict() for s in skipped]})
    return records, skipped


def _manifest_key(root: Path, split: str) -> dict:
    stat = (root / MANIFEST).stat()
    return {"manifest": str((root / MANIFEST).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "split": split}


def _read_index(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: screen again
        return None


def _record_problem(root: Path, record: ImageTextRecord, seen: set[str]) -> Skipped | None:
    if record.id in seen:
        return Skipped(record.id, "duplicate id", "an earlier record has this id; the first one is kept")
    try:
        check_image(resolve_image_path(root, record.image), decode=False)
    except InputError as err:
        return Skipped(record.id, "path outside dataset", str(err))
    except ImageReadError as err:
        return Skipped(record.id, err.reason, err.detail)
    return None


def summarise_skipped(skipped: list[Skipped | dict[str, str]]) -> dict:
    """``{"skipped": [dicts, once per (id, reason), in order], "skipped_counts": {reason: n}}`` for the summary."""
    rows = [s if isinstance(s, dict) else s.as_dict() for s in skipped]
    unique = list({(r["id"], r["reason"]): r for r in rows}.values())
    counts: dict[str, int] = {}
    for r in unique:
        counts[r["reason"]] = counts.get(r["reason"], 0) + 1
    return {"skipped": unique, "skipped_counts": dict(sorted(counts.items()))}
