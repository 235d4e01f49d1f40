"""Reading and writing manifests: one canonical record per line of a JSON Lines file.

Why JSONL rather than Parquet: manifests hold up to a few hundred thousand short records with a
nested ``meta``; JSONL keeps them human-readable, diffable and greppable, streams line by line (so a
problem is reported with its line number), writes byte-identically for the same records (the
synthetic set's determinism test relies on it), and needs no dependency beyond the standard
library. Image pixels never live in a manifest, so columnar compression would buy little.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from robust_mmr.data.schema import MANIFEST_NAMES, FieldProblem, Record, kind_of, parse_record, record_to_dict
from robust_mmr.errors import InputError


@dataclass(frozen=True)
class ManifestLine:
    """One line of a manifest: the record when it parsed, else the problems found."""

    line_no: int
    record: Record | None
    problems: list[FieldProblem]
    raw_id: str | None  # the record's "id" as written, for naming it in reports even when invalid


def write_manifest(path: str | Path, records: Iterable[Record]) -> int:
    """Write records to ``path`` (UTF-8, ``\\n`` line ends, schema field order). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(json.dumps(record_to_dict(record), ensure_ascii=False) + "\n")
            count += 1
    return count


def scan_manifest(path: str | Path, kind: str) -> Iterator[ManifestLine]:
    """Parse every non-blank line of a manifest, yielding records and problems alike."""
    path = Path(path)
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                yield ManifestLine(line_no, None, [FieldProblem("<line>", "not UTF-8", str(err))], None)
                continue
            except json.JSONDecodeError as err:
                yield ManifestLine(line_no, None, [FieldProblem("<line>", "invalid JSON", err.msg)], None)
                continue
            record, problems = parse_record(kind, obj)
            raw_id = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
            yield ManifestLine(line_no, record, problems, raw_id)


def read_manifest(path: str | Path, kind: str | None = None) -> list[Record]:
    """Load a manifest that is expected to be valid; the first problem raises :class:`InputError`.

    ``kind`` defaults to the one named by the file name (``vqa.jsonl`` → ``vqa``). Run
    ``robust-mmr data validate`` to see every problem of a dataset at once.
    """
    path = Path(path)
    kind = kind or manifest_kind(path)
    records = []
    for line in scan_manifest(path, kind):
        if line.problems:
            p = line.problems[0]
            raise InputError(f"{path}:{line.line_no}: field {p.field!r}: {p.reason} ({p.detail}); "
                             f"run `robust-mmr data validate {path.parent}` for a full report")
        records.append(line.record)
    return records


def manifest_kind(path: str | Path) -> str:
    """The record kind a manifest file holds, from its name."""
    name = Path(path).name
    for kind, fname in MANIFEST_NAMES.items():
        if name == fname:
            return kind
    raise InputError(f"{path}: not a manifest name; expected one of {', '.join(MANIFEST_NAMES.values())}")


def find_manifests(root: str | Path) -> dict[str, Path]:
    """The manifests present in a dataset directory, by kind. Raises when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset directory")
    found = {kind: root / name for kind, name in MANIFEST_NAMES.items() if (root / name).is_file()}
    if not found:
        raise InputError(f"{root}: no manifest found; expected one of {', '.join(MANIFEST_NAMES.values())}")
    return found


def write_records(root: str | Path, records: Iterable[Record]) -> dict[str, int]:
    """Write records of any kinds into the dataset directory ``root``, one manifest per kind."""
    by_kind: dict[str, list[Record]] = {}
    for record in records:
        by_kind.setdefault(kind_of(record), []).append(record)
    return {kind: write_manifest(Path(root) / MANIFEST_NAMES[kind], recs) for kind, recs in by_kind.items()}
