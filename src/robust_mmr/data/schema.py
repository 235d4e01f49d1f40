"""The canonical record schema every data source is converted to (DESIGN §2).

Three record kinds, one manifest file each in a dataset directory:

==================  ======================  =====================================================
kind                manifest file           fields
==================  ======================  =====================================================
``image_text``      ``image_text.jsonl``    id, image, text, split, meta
``vqa``             ``vqa.jsonl``           id, image, question, answer, answer_type, split, meta
``classification``  ``classification.jsonl`` id, image, text, label, split, meta
==================  ======================  =====================================================

``image`` is a POSIX path relative to the dataset directory. ``split`` is one of ``train``, ``val``,
``test``; ``answer_type`` one of ``open``, ``closed``. ``meta`` maps names to scalars and carries the
domain keys (modality, organ/location, site, plane, source, ...) used for leave-one-domain-out splits.

Parsing never raises on bad content: :func:`parse_record` returns the record (or ``None``) together
with a list of :class:`FieldProblem`, so validation can report every problem of every record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Union

SPLITS = ("train", "val", "test")
ANSWER_TYPES = ("open", "closed")
MetaValue = Union[str, int, float, bool]


@dataclass(frozen=True)
class ImageTextRecord:
    """An image with its caption or report (pre-training, retrieval)."""

    id: str
    image: str
    text: str
    split: str
    meta: dict[str, MetaValue] = field(default_factory=dict)


@dataclass(frozen=True)
class VQARecord:
    """One question about one image, with its reference answer."""

    id: str
    image: str
    question: str
    answer: str
    answer_type: str
    split: str
    meta: dict[str, MetaValue] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassificationRecord:
    """An image with its text and a class label (MELINDA-style)."""

    id: str
    image: str
    text: str
    label: str
    split: str
    meta: dict[str, MetaValue] = field(default_factory=dict)


Record = Union[ImageTextRecord, VQARecord, ClassificationRecord]
RECORD_TYPES: dict[str, type] = {
    "image_text": ImageTextRecord,
    "vqa": VQARecord,
    "classification": ClassificationRecord,
}
MANIFEST_NAMES = {kind: f"{kind}.jsonl" for kind in RECORD_TYPES}
# Fields whose value must be a non-empty string; their problems are reported as "empty <field>".
_TEXT_FIELDS = ("id", "image", "text", "question", "answer", "label")


class FieldProblem(NamedTuple):
    """What is wrong with one field of one record. ``reason`` is a short category for counting."""

    field: str
    reason: str
    detail: str


def record_fields(kind: str) -> tuple[str, ...]:
    """Field names of a record kind, in manifest order."""
    return tuple(f.name for f in fields(_record_type(kind)))


def parse_record(kind: str, obj: Any) -> tuple[Record | None, list[FieldProblem]]:
    """Check one decoded JSON object against the schema of ``kind``.

    Returns ``(record, [])`` when it is valid and ``(None, problems)`` otherwise; every problem of
    the record is listed, not just the first.
    """
    rtype = _record_type(kind)
    if not isinstance(obj, dict):
        return None, [FieldProblem("<record>", "not a JSON object", f"got {type(obj).__name__}")]
    names = record_fields(kind)
    problems: list[FieldProblem] = []
    for name in obj.keys() - set(names):
        problems.append(FieldProblem(name, "unknown field", "not in the schema; put extra information in 'meta'"))
    for name in names:
        if name not in obj:
            if name != "meta":
                problems.append(FieldProblem(name, "missing field", f"required for {kind} records"))
            continue
        value = obj[name]
        if name == "meta":
            problems += _check_meta(value)
        elif not isinstance(value, str):
            problems.append(FieldProblem(name, "wrong type", f"expected a string, got {type(value).__name__}"))
        elif name in _TEXT_FIELDS and not value.strip():
            problems.append(FieldProblem(name, f"empty {name}", "must be a non-empty string"))
        elif name == "split" and value not in SPLITS:
            problems.append(FieldProblem(name, "invalid split", f"{value!r} is not one of {', '.join(SPLITS)}"))
        elif name == "answer_type" and value not in ANSWER_TYPES:
            problems.append(
                FieldProblem(name, "unknown answer_type", f"{value!r} is not one of {', '.join(ANSWER_TYPES)}")
            )
    if problems:
        return None, problems
    values = {name: obj[name] for name in names if name in obj}
    values["meta"] = dict(sorted(values.get("meta", {}).items()))
    return rtype(**values), []


def record_to_dict(record: Record) -> dict[str, Any]:
    """The manifest form of a record: schema field order, ``meta`` keys sorted."""
    out = {f.name: getattr(record, f.name) for f in fields(record)}
    out["meta"] = dict(sorted(record.meta.items()))
    return out


def kind_of(record: Record) -> str:
    """The manifest kind a record belongs to."""
    for kind, rtype in RECORD_TYPES.items():
        if isinstance(record, rtype):
            return kind
    raise TypeError(f"not a canonical record: {type(record).__name__}")


def _check_meta(meta: Any) -> list[FieldProblem]:
    if not isinstance(meta, dict):
        return [FieldProblem("meta", "wrong type", f"expected an object, got {type(meta).__name__}")]
    return [
        FieldProblem(f"meta.{key}", "wrong type", f"meta values must be scalars, got {type(value).__name__}")
        for key, value in meta.items()
        if not isinstance(value, (str, int, float, bool))
    ]


def _record_type(kind: str) -> type:
    try:
        return RECORD_TYPES[kind]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}; valid kinds: {', '.join(RECORD_TYPES)}") from None
