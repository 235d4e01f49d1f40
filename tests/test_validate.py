"""`data validate`: each bad input produces its named error; nothing is dropped silently."""

from __future__ import annotations

import json

import pytest
from conftest import write_png

from robust_mmr.cli.main import main
from robust_mmr.data.validate import validate_dataset


def _vqa(rid, image="images/ok.png", **over):
    rec = {"id": rid, "image": image, "question": "Is there a lesion?", "answer": "yes", "answer_type": "closed",
           "split": "train", "meta": {"site": "a"}}
    rec.update(over)
    return rec


@pytest.fixture()
def broken_dir(tmp_path):
    """A VQA manifest with one valid record and one record per kind of problem."""
    write_png(tmp_path / "images" / "ok.png")
    write_png(tmp_path / "images" / "full.png", size=64)
    data = (tmp_path / "images" / "full.png").read_bytes()
    (tmp_path / "images" / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "images" / "zero.png").write_bytes(b"")
    (tmp_path / "images" / "garbage.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    (tmp_path / "outside.png").write_bytes(data)
    lines = [
        json.dumps(_vqa("good")),
        json.dumps(_vqa("missing", image="images/nope.png")),
        json.dumps(_vqa("trunc", image="images/truncated.png")),
        json.dumps(_vqa("zero", image="images/zero.png")),
        json.dumps(_vqa("garbage", image="images/garbage.jpg")),
        json.dumps(_vqa("emptyq", question="   ")),
        json.dumps(_vqa("atype", answer_type="yes/no")),
        json.dumps(_vqa("good")),  # duplicate id
        json.dumps(_vqa("split", split="validation")),
        json.dumps(_vqa("escape", image="../outside.png")),
        "{not json",
    ]
    (tmp_path / "vqa.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "image_text.jsonl").write_text(
        json.dumps({"id": "p1", "image": "images/ok.png", "text": "", "split": "train", "meta": {}}) + "\n"
    )
    return tmp_path


EXPECTED = {
    ("vqa.jsonl", 2, "image", "missing image file"),
    ("vqa.jsonl", 3, "image", "truncated image"),
    ("vqa.jsonl", 4, "image", "empty image file"),
    ("vqa.jsonl", 5, "image", "unreadable image"),
    ("vqa.jsonl", 6, "question", "empty question"),
    ("vqa.jsonl", 7, "answer_type", "unknown answer_type"),
    ("vqa.jsonl", 8, "id", "duplicate id"),
    ("vqa.jsonl", 9, "split", "invalid split"),
    ("vqa.jsonl", 10, "image", "image path outside dataset"),
    ("vqa.jsonl", 11, "<line>", "invalid JSON"),
    ("image_text.jsonl", 1, "text", "empty text"),
}


def test_every_problem_is_named_by_file_line_and_field(broken_dir):
    report = validate_dataset(broken_dir)
    assert {(p.file, p.line, p.field, p.reason) for p in report.problems} == EXPECTED
    by_line = {p.line: p for p in report.problems if p.file == "vqa.jsonl"}
    assert by_line[8].detail == "first used on line 1"
    assert by_line[7].record_id == "atype"


def test_counts_add_up(broken_dir):
    report = validate_dataset(broken_dir)
    vqa = next(m for m in report.manifests if m.kind == "vqa")
    assert (vqa.kept, vqa.rejected) == (1, 10)
    assert report.kept + report.rejected == 12  # every line accounted for


def test_schema_only_mode_skips_images(broken_dir):
    report = validate_dataset(broken_dir, check_images=False)
    assert not any(p.field == "image" for p in report.problems)


def test_cli_prints_reasons_and_strict_fails(broken_dir, capsys, tmp_path):
    out_json = tmp_path / "report.json"
    assert main(["data", "validate", str(broken_dir), "--report", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "kept 1 records, rejected 11" in printed
    assert "vqa.jsonl:3 id=trunc field=image: truncated image" in printed
    assert json.loads(out_json.read_text())["rejected"] == 11
    assert main(["data", "validate", str(broken_dir), "--strict"]) == 1


def test_cli_strict_passes_on_clean_data(synth_dir):
    assert main(["data", "validate", str(synth_dir), "--strict"]) == 0


def test_cli_bad_path_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "validate", str(tmp_path / "nowhere")]) == 2
    assert "no such dataset directory" in capsys.readouterr().err
