"""Validation of a dataset directory: every problem of every record, named by file, line, id and field.

Nothing is dropped silently: :class:`ValidationReport` keeps every rejected record with its
reasons, and counts kept and rejected records per manifest. Images shared by many records (VQA
questions about one image) are decoded once.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from robust_mmr.data.images import ImageReadError, check_image, resolve_image_path
from robust_mmr.data.manifest import find_manifests, manifest_kind, scan_manifest
from robust_mmr.errors import InputError


@dataclass(frozen=True)
class Problem:
    """One reason one record was rejected."""

    file: str
    line: int
    record_id: str | None
    field: str
    reason: str
    detail: str

    def __str__(self) -> str:
        rid = self.record_id if self.record_id is not None else "?"
        return f"{self.file}:{self.line} id={rid} field={self.field}: {self.reason} ({self.detail})"


@dataclass
class ManifestSummary:
    file: str
    kind: str
    kept: int = 0
    rejected: int = 0


@dataclass
class ValidationReport:
    root: str
    manifests: list[ManifestSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return sum(m.kept for m in self.manifests)

    @property
    def rejected(self) -> int:
        return sum(m.rejected for m in self.manifests)

    def reason_counts(self) -> Counter[str]:
        """Rejected records per reason (a record with two problems counts under both reasons)."""
        return Counter(p.reason for p in self.problems)

    def to_json(self) -> str:
        return json.dumps(
            {
                "root": self.root,
                "kept": self.kept,
                "rejected": self.rejected,
                "manifests": [asdict(m) for m in self.manifests],
                "reasons": dict(self.reason_counts()),
                "problems": [asdict(p) for p in self.problems],
            },
            indent=2,
        )


def validate_dataset(path: str | Path, check_images: bool = True, progress: bool = False) -> ValidationReport:
    """Validate a dataset directory (all its manifests) or a single manifest file.

    Checks the schema of each record (see :mod:`robust_mmr.data.schema`), duplicate ids within a
    manifest, image paths (inside the dataset directory, file present, non-empty, fully decodable).
    """
    path = Path(path)
    if path.is_file():
        root, manifests = path.parent, {manifest_kind(path): path}
    elif path.is_dir():
        root, manifests = path, find_manifests(path)
    else:
        raise InputError(f"{path}: no such dataset directory or manifest file")

    report = ValidationReport(root=str(root))
    image_cache: dict[str, tuple[str, str] | None] = {}
    for kind, manifest in manifests.items():
        summary = ManifestSummary(file=manifest.name, kind=kind)
        report.manifests.append(summary)
        first_seen: dict[str, int] = {}
        lines = scan_manifest(manifest, kind)
        if progress:
            lines = tqdm(lines, desc=f"validate {manifest.name}", unit=" records", leave=False)
        for line in lines:
            problems = [(p.field, p.reason, p.detail) for p in line.problems]
            rid = line.raw_id
            if rid is not None:
                if rid in first_seen:
                    problems.append(("id", "duplicate id", f"first used on line {first_seen[rid]}"))
                else:
                    first_seen[rid] = line.line_no
            if line.record is not None and check_images:
                image_problem = _check_image_cached(root, line.record.image, image_cache)
                if image_problem:
                    problems.append(("image", *image_problem))
            if problems:
                summary.rejected += 1
                report.problems += [Problem(manifest.name, line.line_no, rid, *p) for p in problems]
            else:
                summary.kept += 1
    return report


def _check_image_cached(root: Path, relative: str, cache: dict[str, tuple[str, str] | None]) -> tuple[str, str] | None:
    if relative not in cache:
        try:
            check_image(resolve_image_path(root, relative))
            cache[relative] = None
        except InputError as err:
            cache[relative] = ("image path outside dataset", str(err))
        except ImageReadError as err:
            cache[relative] = (err.reason, err.detail)
    return cache[relative]
