"""Helpers every converter shares: the skip report, image-folder links, text normalisation rules.

Images are never copied. A converter links each native image folder into the output directory
(``OUT/images -> /abs/IN/images``; one symbolic link per folder) and writes image paths relative to
OUT through that link (``images/synpic54610.jpg``), so :func:`robust_mmr.data.images.resolve_image_path`
accepts them (no ``..``) and the converted set stays valid while the native copy stays where it is.

Answer normalisation (the one place it is defined): converters keep answers exactly as released
(only numbers are turned into strings); matching uses :func:`normalise_answer` — lower-case, strip,
collapse internal whitespace. ``answer_type`` is normalised by :func:`normalise_answer_type`
(``"CLOSED "`` → ``closed``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robust_mmr.errors import InputError

EXAMPLES_PER_REASON = 5

# Coarse modality from free text (captions, VQA-Med-2019 modality answers/questions): first row whose
# pattern matches wins, so specific studies come before the scanners they use ("CT angiography" →
# angiography, "PET-CT" → pet). Patterns are whole-word regexes on lower-cased text.
MODALITY_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("angiography", r"angiogra\w*|\bcta\b|\bmra\b|\bdsa\b"),
    ("pet", r"\bpet\b|positron"),
    ("nuclear", r"scintigra\w*|nuclear|\bspect\b|bone scan|\bnm\b"),
    ("ultrasound", r"ultraso\w*|sonogra\w*|\bus\b|doppler|echocardiogra\w*"),
    ("mri", r"\bmri?\b|magnetic resonance|\bt1\b|\bt2\b|flair|diffusion[- ]weighted|\bdwi\b"),
    ("ct", r"\bct\b|computed tomograph\w*|\bcat scan"),
    ("x-ray", r"x-?ray|radiograph\w*|\bxr\b|plain film|mammogra\w*|fluorosco\w*|\bcxr\b"),
)
_MODALITY_RES = tuple((name, re.compile(pattern)) for name, pattern in MODALITY_KEYWORDS)


def modality_from_text(text: str) -> str:
    """The coarse modality a text names (see :data:`MODALITY_KEYWORDS`), or ``"other"``."""
    lowered = text.lower()
    for name, pattern in _MODALITY_RES:
        if pattern.search(lowered):
            return name
    return "other"


def normalise_answer(answer: str) -> str:
    """The matching form of an answer: lower-case, stripped, single spaces."""
    return " ".join(str(answer).lower().split())


def normalise_answer_type(raw: Any) -> str | None:
    """``open`` / ``closed`` from a native answer type (any case, stray spaces), else None."""
    value = str(raw).strip().lower()
    return value if value in ("open", "closed") else None


def answer_type_from_answer(answer: str) -> str:
    """For sources without an answer type: yes/no answers are closed, all others open."""
    return "closed" if normalise_answer(answer) in ("yes", "no") else "open"


def synpic_id(name: str) -> str | None:
    """The MedPix image id (``synpic12345``) in a file name or image id, else None."""
    match = re.search(r"synpic\d+", name)
    return match.group(0) if match else None


@dataclass(frozen=True)
class Skip:
    """One native row that was not converted, and why."""

    file: str
    line: int
    field: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} field={self.field}: {self.reason} ({self.detail})"


@dataclass
class ConversionReport:
    """Kept and skipped rows of one conversion: every skip is counted, the first few per reason kept."""

    source: str
    kept: int = 0
    skip_counts: Counter[str] = field(default_factory=Counter)
    examples: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return sum(self.skip_counts.values())

    def skip(self, file: str | Path, line: int, field_name: str, reason: str, detail: str) -> None:
        if self.skip_counts[reason] < EXAMPLES_PER_REASON:
            self.examples.append(Skip(Path(file).name, line, field_name, reason, detail))
        self.skip_counts[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kept": self.kept,
            "skipped": self.skipped,
            "skip_reasons": dict(self.skip_counts.most_common()),
            "skip_examples": [str(s) for s in self.examples],
            "notes": self.notes,
        }


def link_folder(out: Path, link: str, target: Path) -> str:
    """Make ``out/link`` a symbolic link to the folder ``target`` (absolute); returns ``link``.

    An existing link is replaced; an existing real file or folder is never touched (InputError).
    """
    target = target.resolve()
    path = out / link
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        raise InputError(f"{path} exists and is not a link; converters only create links to image folders there")
    path.symlink_to(target, target_is_directory=True)
    return link


def require_file(path: Path, what: str) -> Path:
    """Raise InputError unless ``path`` is a file (a converter's required native file)."""
    if not path.is_file():
        raise InputError(f"{path}: missing {what}; see docs of the native layout (FORMATS.md)")
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None


def as_text(value: Any) -> str:
    """A native value as a stripped string (numbers as written, None as empty)."""
    return "" if value is None else str(value).strip()


class ImageIndex:
    """Existence of image files, checked once per file (VQA sets ask many questions per image)."""

    def __init__(self) -> None:
        self._seen: dict[Path, bool] = {}

    def exists(self, path: Path) -> bool:
        if path not in self._seen:
            self._seen[path] = path.is_file()
        return self._seen[path]


def read_fields(path: Path, sep: str, n_fields: int, report: ConversionReport):
    """Yield ``(line_no, fields)`` for each non-blank line of a delimited text file with exactly ``n_fields``.

    Other lines are reported as ``malformed row``; fields are stripped.
    """
    with path.open(encoding="utf-8", newline="") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split(sep)]
            if len(fields) != n_fields:
                report.skip(path, line_no, "<row>", "malformed row",
                            f"{len(fields)} fields separated by {sep!r}, expected {n_fields}")
                continue
            yield line_no, fields


def read_jsonl(path: Path, report: ConversionReport):
    """Yield ``(line_no, object)`` for each non-blank line of a JSON Lines file holding a JSON object.

    Other lines are reported as ``invalid JSON`` or ``malformed row``.
    """
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                report.skip(path, line_no, "<line>", "invalid JSON", err.msg)
                continue
            if not isinstance(obj, dict):
                report.skip(path, line_no, "<line>", "malformed row", "expected a JSON object")
                continue
            yield line_no, obj
