"""The canonical schema and the JSONL manifest reader/writer."""

from __future__ import annotations

import json

import pytest

from robust_mmr.data.manifest import find_manifests, read_manifest, write_manifest, write_records
from robust_mmr.data.schema import ClassificationRecord, ImageTextRecord, VQARecord, parse_record, record_fields
from robust_mmr.errors import InputError


def test_roundtrip_every_kind(tmp_path):
    records = {
        "image_text": [ImageTextRecord("a", "images/a.png", "Chest CT.", "train", {"site": "x", "age": 70})],
        "vqa": [VQARecord("q1", "images/a.png", "Is there a nodule?", "yes", "closed", "test", {"b": 1, "a": True})],
        "classification": [ClassificationRecord("c1", "images/a.png", "A figure.", "mri", "val")],
    }
    write_records(tmp_path, [r for recs in records.values() for r in recs])
    found = find_manifests(tmp_path)
    assert set(found) == set(records)
    for kind, recs in records.items():
        assert read_manifest(found[kind]) == recs


def test_manifest_lines_keep_schema_order_and_sorted_meta(tmp_path):
    path = tmp_path / "vqa.jsonl"
    write_manifest(path, [VQARecord("q", "i.png", "Q?", "A", "open", "train", {"z": 1, "a": 2})])
    obj = json.loads(path.read_text())
    assert list(obj) == list(record_fields("vqa"))
    assert list(obj["meta"]) == ["a", "z"]


def test_parse_reports_every_problem_of_a_record():
    record, problems = parse_record(
        "vqa",
        {"id": "", "image": "x.png", "question": " ", "answer": "yes", "answer_type": "binary",
         "split": "dev", "extra": 1, "meta": {"k": [1]}},
    )
    assert record is None
    reasons = {p.reason for p in problems}
    assert reasons == {"empty id", "empty question", "unknown answer_type", "invalid split", "unknown field",
                       "wrong type"}


def test_missing_and_mistyped_fields():
    _, problems = parse_record("image_text", {"id": "a", "image": 3, "split": "train"})
    assert {(p.field, p.reason) for p in problems} == {("image", "wrong type"), ("text", "missing field")}


def test_read_manifest_raises_with_location(tmp_path):
    path = tmp_path / "image_text.jsonl"
    path.write_text('{"id": "a", "image": "a.png", "text": "t", "split": "train"}\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"image_text.jsonl:2: field 'image'"):
        read_manifest(path)


def test_unknown_manifest_name_and_empty_dir(tmp_path):
    with pytest.raises(InputError, match="not a manifest name"):
        read_manifest(tmp_path / "records.jsonl")
    with pytest.raises(InputError, match="no manifest found"):
        find_manifests(tmp_path)
