"""Leakage control: drop pre-training records whose image also occurs in a downstream test split.

Two matches, checked in this order (a record is counted under the first that fires):

1. ``same synpic id`` — the MedPix image id (``synpic12345``) in both image file names. VQA-RAD,
   VQA-Med-2019, MedPix-2.0 and ROCO all sample MedPix, and copies differ in size and JPEG quality.
2. ``near-duplicate pixels`` — a 256-bit difference hash (dHash: Krawetz, "Kind of like that", 2013; our
   own implementation) within ``max_distance`` bits (Hamming). dHash compares neighbouring cells of a
   17×16 area-averaged grey thumbnail, so it survives resizing, recompression and global intensity changes.

Threshold, measured on the staged copies: the 23 VQA-RAD test images that VQA-Med-2019 re-released
(downsampled, re-encoded) are 0–7 bits apart at 256 bits; different MedPix images are ≥ 14 apart, the
closest being adjacent slices of one case (consecutive synpic ids). At 64 bits those neighbours come
within 2 bits of each other, hence 16×16. Default ``max_distance`` 10.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robust_mmr.data.converters.common import synpic_id
from robust_mmr.data.images import ImageReadError, load_image, resolve_image_path
from robust_mmr.data.schema import Record

HASH_SIZE = 16  # 16×16 comparisons → 256-bit hash
DEFAULT_MAX_DISTANCE = 10
EXAMPLES_PER_REASON = 10
REASON_ID = "same synpic id"
REASON_HASH = "near-duplicate pixels"


def dhash(image: np.ndarray, size: int = HASH_SIZE) -> np.ndarray:
    """Difference hash of an (H, W) or (H, W, C) image: ``size*size`` bits packed into (size*size/8,) uint8.

    The image is averaged to grey, area-resized to (size, size+1) and each bit says whether a cell is
    brighter than its right neighbour.
    """
    grey = image.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2)
    thumb = np.asarray(Image.fromarray(grey).resize((size + 1, size), Image.Resampling.BOX))
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel()
    return np.packbits(bits)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between hashes: (..., B) uint8 against (B,) or (..., B) → (...) int."""
    return np.bitwise_count(a ^ b).sum(axis=-1, dtype=np.int64)


@dataclass
class DedupReport:
    kept: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # images that could not be hashed (id check still ran)

    def remove(self, record: Record, reason: str, match: str, detail: str) -> None:
        if self.removed[reason] < EXAMPLES_PER_REASON:
            self.examples.append({"id": record.id, "image": record.image, "reason": reason, "match": match,
                                  "detail": detail})
        self.removed[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "removed": sum(self.removed.values()), "removed_by_reason": dict(self.removed),
                "examples": self.examples, "unreadable_images": self.unreadable}


def image_hashes(root: Path, records: list[Record], report: DedupReport) -> dict[str, np.ndarray]:
    """dHash per distinct image path of ``records``; unreadable images are listed in the report."""
    hashes = {}
    for image in dict.fromkeys(r.image for r in records):
        try:
            hashes[image] = dhash(load_image(resolve_image_path(root, image)))
        except ImageReadError as err:
            report.unreadable.append(f"{image}: {err.reason}")
    return hashes


def remove_test_overlaps(pretrain: list[Record], pretrain_root: Path, tests: list[tuple[list[Record], Path]],
                         max_distance: int | None = DEFAULT_MAX_DISTANCE) -> tuple[list[Record], DedupReport]:
    """Pre-training records minus those whose image is in any of the ``tests`` record lists.

    ``tests`` holds ``(records, dataset_root)`` pairs, already restricted to the test split.
    ``max_distance=None`` skips the pixel check (id check only).
    """
    report = DedupReport()
    test_ids = {sid: r.image for records, _ in tests for r in records if (sid := synpic_id(Path(r.image).name))}
    test_names: list[str] = []
    codes = np.zeros((0, HASH_SIZE * HASH_SIZE // 8), dtype=np.uint8)
    own: dict[str, np.ndarray] = {}
    if max_distance is not None:
        for records, root in tests:
            hashes = image_hashes(root, records, report)
            test_names += [f"{root.name}/{image}" for image in hashes]
            codes = np.concatenate([codes, np.array(list(hashes.values()), dtype=np.uint8).reshape(-1, codes.shape[1])])
        own = image_hashes(pretrain_root, pretrain, report)
    nearest: dict[str, tuple[int, int]] = {}  # image -> (index into codes, distance), once per image
    kept = []
    for record in pretrain:
        sid = synpic_id(Path(record.image).name)
        if sid in test_ids:
            report.remove(record, REASON_ID, test_ids[sid], sid)
            continue
        if record.image in own and len(codes):
            if record.image not in nearest:
                distances = hamming(codes, own[record.image])
                nearest[record.image] = (int(distances.argmin()), int(distances.min()))
            index, distance = nearest[record.image]
            if distance <= max_distance:
                report.remove(record, REASON_HASH, test_names[index], f"dHash distance {distance} <= {max_distance}")
                continue
        kept.append(record)
    report.kept = len(kept)
    return kept, report
