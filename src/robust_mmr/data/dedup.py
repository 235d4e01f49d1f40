"""Leakage control: drop pre-training records whose image also occurs in a downstream test split.

Two matches, checked in this order (a record is counted under the first that fires):

1. ``same synpic id`` — the MedPix image id (``synpic12345``) in both image file names. VQA-RAD,
   VQA-Med-2019, MedPix-2.0 and ROCO all sample MedPix, and copies differ in size and JPEG quality.
2. ``near-duplicate pixels`` — a 64-bit difference hash (dHash: Krawetz, "Kind of like that", 2013; our
   own implementation) within ``max_distance`` bits (Hamming). dHash compares neighbouring cells of a
   9×8 area-averaged grey thumbnail, so it survives resizing, recompression and global intensity changes.
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

HASH_SIZE = 8  # 8×8 comparisons → 64-bit hash
DEFAULT_MAX_DISTANCE = 6
EXAMPLES_PER_REASON = 10
REASON_ID = "same synpic id"
REASON_HASH = "near-duplicate pixels"


def dhash(image: np.ndarray, size: int = HASH_SIZE) -> int:
    """Difference hash of an (H, W) or (H, W, C) image: ``size*size`` bits as an int.

    The image is averaged to grey, area-resized to (size, size+1) and each bit says whether a cell is
    brighter than its right neighbour.
    """
    grey = image.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2)
    thumb = np.asarray(Image.fromarray(grey).resize((size + 1, size), Image.Resampling.BOX))
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


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


def image_hashes(root: Path, records: list[Record], report: DedupReport) -> dict[str, int]:
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
    test_hashes: dict[int, str] = {}
    if max_distance is not None:
        for records, root in tests:
            test_hashes.update({h: image for image, h in image_hashes(root, records, report).items()})
        own = image_hashes(pretrain_root, pretrain, report)
    codes = np.array(list(test_hashes), dtype=np.uint64)
    kept = []
    for record in pretrain:
        sid = synpic_id(Path(record.image).name)
        if sid in test_ids:
            report.remove(record, REASON_ID, test_ids[sid], sid)
            continue
        if max_distance is not None and record.image in own and codes.size:
            distances = np.bitwise_count(codes ^ np.uint64(own[record.image]))
            nearest = int(distances.argmin())
            if distances[nearest] <= max_distance:
                report.remove(record, REASON_HASH, test_hashes[int(codes[nearest])],
                              f"dHash distance {int(distances[nearest])} <= {max_distance}")
                continue
        kept.append(record)
    report.kept = len(kept)
    return kept, report
