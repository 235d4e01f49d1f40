"""Run folders that never lie (RELIABILITY.md, finetune / evaluate / predict / export / data): each case failed on
the code before the run-folder record, the lock and the checks at the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from robust_mmr.cli.main import main
from robust_mmr.errors import InputError
from robust_mmr.runfolder import LOCK, claim, locked
from robust_mmr.tasks.finetune import read_task_run
from robust_mmr.tasks.predict import read_rows

SMALL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
         "model.decoder.layers=1", "model.max_text_length=24"]


@pytest.fixture(scope="module")
def pretrained(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pt") / "run"
    assert main(["pretrain", "--config", "tiny", "--method", "robust-mmr", "--data", str(synth_dir), "--out", str(out),
                 *SMALL, "train.max_steps=2", "train.batch_size=4", "train.num_workers=0",
                 "train.checkpoint_every=2"]) == 0
    return out


@pytest.fixture(scope="module")
def finetuned(synth_dir, pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    assert main(["finetune", "--init", str(pretrained), "--data", str(synth_dir), "--out", str(out),
                 "max_epochs=1", "batch_size=32"]) == 0
    assert main(["evaluate", str(out), "--data", str(synth_dir), "--protocol", "clean"]) == 0
    return out


def _error(capsys) -> str:
    return capsys.readouterr().err


def test_a_malformed_csv_row_is_a_row_error_and_no_row_is_lost(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('image,question\ngood.png,Q1\ngood.png,"Q2 (x\ngood.png,Q3\ngood.png,Q4\ngood.png,a,b\n')
    rows = read_rows(path)
    assert len(rows) == 5  # every line after the header is one row
    assert [r.get("question") for r in rows] == ["Q1", None, "Q3", "Q4", None]
    assert "malformed CSV" in rows[1]["error"] and "3 fields" in rows[4]["error"]
    path.write_bytes(b"image,question\ngood.png,caf\xe9?\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_rows(path)


def test_pretraining_refuses_to_relabel_or_reshape_a_finished_run(synth_dir, pretrained, capsys):
    config = (pretrained / "config.yaml").read_text()
    args = ["pretrain", "--config", "tiny", "--data", str(synth_dir), "--out", str(pretrained), *SMALL,
            "train.max_steps=2", "train.batch_size=4", "train.num_workers=0"]
    assert main([*args[:3], "--method", "mmr", *args[3:]]) == 2
    assert "another pretrain run (method, objective.method differ)" in _error(capsys)
    assert main([*args, "model.vision.layers=2"]) == 2
    assert "model.vision.layers" in _error(capsys)
    assert (pretrained / "config.yaml").read_text() == config  # nothing rewritten


def test_finetuning_into_another_run_or_its_own_init_is_refused(synth_dir, pretrained, finetuned, capsys):
    base = ["finetune", "--init", str(pretrained), "--data", str(synth_dir)]
    assert main([*base, "--out", str(pretrained), "max_epochs=1"]) == 2
    assert "same path as --init" in _error(capsys)
    assert main([*base, "--out", str(finetuned), "max_epochs=1", "lr=0.001"]) == 2
    assert "another finetune run (settings.lr differ)" in _error(capsys)
    assert main(["finetune", "--init", str(finetuned), "--data", str(synth_dir), "--out", str(finetuned / "x")]) == 2
    assert "is a fine-tuning run" in _error(capsys)
    assert main([*base, "--out", str(finetuned), "--seeds", "0,x"]) == 2
    assert "--seeds '0,x'" in _error(capsys)


def test_overwrite_clears_a_run_and_its_stale_results(synth_dir, pretrained, finetuned, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--init", str(pretrained), "--data", str(synth_dir), "--out", str(out),
                 "max_epochs=1", "batch_size=32"]) == 0
    assert main(["evaluate", str(out), "--data", str(synth_dir), "--protocol", "clean"]) == 0
    assert (out / "results.json").is_file()
    assert main(["finetune", "--init", "scratch", "--data", str(synth_dir), "--out", str(out), "--overwrite",
                 "max_epochs=1", "batch_size=32", *SMALL]) == 0
    assert not (out / "results.json").exists()  # the old model's accuracy is gone with its weights
    assert json.loads((out / "run.json").read_text())["identity"]["init"] == "scratch"


def test_an_evaluation_on_other_data_or_a_subset_never_replaces_results_json(synth_dir, finetuned, capsys):
    own = (finetuned / "results.json").read_text()
    assert json.loads(own)["evaluated_on"]["data"]["manifest_sha256"]
    assert main(["evaluate", str(finetuned), "--data", str(synth_dir), "--protocol", "clean", "--max-items", "5"]) == 0
    assert (finetuned / "results.json").read_text() == own
    subsets = list(finetuned.glob("results-*.json"))
    assert len(subsets) == 1 and json.loads(subsets[0].read_text())["evaluated_on"]["max_items"] == 5
    for bad, message in ((["--severities", "abc"], "--severities 'abc'"), (["--max-items", "0"], "--max-items 0"),
                         (["--out", str(finetuned / "nope" / "r.json")], "does not exist")):
        assert main(["evaluate", str(finetuned), "--data", str(synth_dir), "--protocol", "clean", *bad]) == 2
        assert message in _error(capsys)


def test_an_interrupted_or_tampered_save_is_not_a_run(synth_dir, finetuned, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finetuned, copy)
    (copy / "task.json").write_text((copy / "task.json").read_text()[:50])  # truncated
    with pytest.raises(InputError, match="task.json: unreadable"):
        read_task_run(copy)
    shutil.copy2(finetuned / "task.json", copy / "task.json")
    with (copy / "model.safetensors").open("ab") as fh:  # new bytes under the old record
        fh.write(b"\0")
    with pytest.raises(InputError, match="not the weights task.json was written with"):
        read_task_run(copy)
    (copy / "task.json").unlink()  # the save removes task.json first and writes it last
    with pytest.raises(InputError, match="missing task.json"):
        read_task_run(copy)


def test_predict_and_export_never_overwrite_their_inputs(synth_dir, finetuned, tmp_path, capsys):
    rows = tmp_path / "q.csv"
    image = next((synth_dir / "images").iterdir())
    rows.write_text(f"image,question\n{image},Is there a lesion?\n{synth_dir / 'images'},What organ?\n")
    assert main(["predict", str(finetuned), "--input", str(rows), "--out", str(rows)]) == 2
    assert "same path as --input" in _error(capsys)
    assert main(["predict", str(finetuned), "--input", str(rows), "--out", str(tmp_path / "a.jsonl")]) == 1
    answers = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert "answer" in answers[0] and "is a folder" in answers[1]["error"]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "README.md").write_text("my notes")
    assert main(["export", str(finetuned), "--out", str(user)]) == 2
    assert "not a robust-mmr run" in _error(capsys) and (user / "README.md").read_text() == "my notes"
    assert main(["export", str(finetuned), "--out", str(rows)]) == 2
    assert "is not a folder" in _error(capsys)
    export = tmp_path / "export"
    assert main(["export", str(finetuned), "--out", str(export)]) == 0
    assert main(["export", str(finetuned), "--out", str(export)]) == 0  # an earlier export of the same run
    assert "every test item of" in (export / "README.md").read_text()


def test_a_second_writer_is_refused_and_a_dead_writers_lock_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from robust_mmr.runfolder import locked\n"
        f"with locked({str(folder)!r}):\n    print('held', flush=True); time.sleep(30)")], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"being written by process {holder.pid}"):
            with locked(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (folder / LOCK).is_file()  # killed: its lock is left behind
    with locked(folder):
        assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    assert "taking over the stale lock" in capsys.readouterr().out
    assert not (folder / LOCK).exists()


def test_data_commands_never_write_through_links_or_keep_another_conversions_manifest(synth_dir, tmp_path, capsys):
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "images").symlink_to(synth_dir / "images", target_is_directory=True)
    before = sorted(p.name for p in (synth_dir / "images").iterdir())
    assert main(["data", "synth", "--out", str(linked), "--n", "3", "--size", "32"]) == 2
    assert "is a link" in _error(capsys)
    assert sorted(p.name for p in (synth_dir / "images").iterdir()) == before
    assert claim(tmp_path / "fresh", "export", {"source": "x"}) == "new"
    assert claim(tmp_path / "fresh", "export", {"source": "x"}) == "same"
    with pytest.raises(InputError, match="another export run"):
        claim(tmp_path / "fresh", "export", {"source": "y"})


def test_a_truncated_image_is_skipped_and_listed_in_finetuning_and_evaluation_or_named_with_fail(synth_dir, tmp_path,
                                                                                                 capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data, symlinks=False)
    records = [json.loads(line) for line in (data / "vqa.jsonl").read_text().splitlines()]
    train_image = next(r["image"] for r in records if r["split"] == "train")
    test_image = next(r["image"] for r in records if r["split"] == "test")
    for image in (train_image, test_image):
        raw = (data / image).read_bytes()
        (data / image).write_bytes(raw[: len(raw) // 2])  # a truncated PNG
    out = tmp_path / "ft"
    args = ["finetune", "--init", "scratch", "--data", str(data), "--out", str(out), "max_epochs=1", "batch_size=32",
            *SMALL]
    assert main([*args, "on_bad_sample=fail"]) == 2
    assert f"image {train_image}: truncated image" in _error(capsys)
    assert main([*args, "--overwrite"]) == 0  # the failed attempt's folder holds other settings
    task = json.loads((out / "task.json").read_text())
    assert task["skipped"] and {s["image"] for s in task["skipped"]} == {train_image}
    assert main(["evaluate", str(out), "--data", str(data), "--protocol", "clean", "--on-bad-sample", "fail"]) == 2
    assert f"image {test_image}" in _error(capsys)
    assert main(["evaluate", str(out), "--data", str(data), "--protocol", "clean"]) == 0
    results = json.loads((out / "results.json").read_text())
    n_bad = sum(r["image"] == test_image for r in records if r["split"] == "test")
    assert len(results["skipped"]) == n_bad and "left out" in capsys.readouterr().out


def test_a_truncated_image_in_data_stats_and_retrieval_is_passed_over_and_listed_or_named_with_fail(synth_dir, tmp_path,
                                                                                                     capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data, symlinks=False)
    pairs = [json.loads(line) for line in (data / "image_text.jsonl").read_text().splitlines()]
    first = pairs[0]["image"]  # the example grid's first pick
    train_image = next(p["image"] for p in pairs if p["split"] == "train" and p["image"] != first)
    test_image = next(p["image"] for p in pairs if p["split"] == "test" and p["image"] != first)
    for image in (first, train_image, test_image):
        raw = (data / image).read_bytes()
        (data / image).write_bytes(raw[: len(raw) // 2])  # a truncated PNG
    assert main(["data", "stats", str(data), "--on-bad-sample", "fail"]) == 2
    assert f"image {first}: truncated image" in _error(capsys)
    assert main(["data", "stats", str(data)]) == 0
    assert f"image {first} passed over in the example grid" in capsys.readouterr().out
    assert (data / "stats.png").is_file()

    out = tmp_path / "retrieval"
    args = ["finetune", "--task", "retrieve", "--data", str(data), "--out", str(out), "max_epochs=1", "batch_size=16",
            *SMALL]
    assert main([*args, "on_bad_sample=fail"]) == 2
    assert "truncated image" in _error(capsys)
    assert main([*args, "--overwrite"]) == 0
    assert train_image in {s["image"] for s in json.loads((out / "task.json").read_text())["skipped"]}
    assert main(["evaluate", str(out), "--data", str(data), "--protocol", "clean", "--on-bad-sample", "fail"]) == 2
    assert "truncated image" in _error(capsys)
    assert main(["evaluate", str(out), "--data", str(data), "--protocol", "clean"]) == 0
    results = json.loads((out / "results.json").read_text())
    n_bad = sum(p["split"] == "test" and p["image"] in (first, test_image) for p in pairs)
    assert len(results["skipped"]) == n_bad and test_image in {s["image"] for s in results["skipped"]}
    assert results["n_test"] == sum(p["split"] == "test" for p in pairs) - n_bad


def test_a_finetuning_run_killed_with_no_checkpoint_is_restarted_and_says_so(synth_dir, pretrained, tmp_path, capsys):
    out = tmp_path / "ft"
    args = ["finetune", "--init", str(pretrained), "--data", str(synth_dir), "--out", str(out), "max_epochs=1",
            "batch_size=32"]
    assert main(args) == 0
    (out / "task.json").unlink()  # killed before its final save: the records are written last
    capsys.readouterr()
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "interrupted with no checkpoint to continue from; it restarts from its first epoch" in said
    assert read_task_run(out)[3]["epochs_run"] == 1
    assert main(args) == 0
    assert "holds this fine-tuning run, finished" in capsys.readouterr().out


def test_more_user_mistakes_are_one_line_and_exit_2(synth_dir, pretrained, tmp_path, capsys, monkeypatch):
    """A report in a missing folder (before the work), a hold-out that leaves nothing to train on, and a relative
    --init that still works from another folder."""
    assert main(["data", "validate", str(synth_dir), "--report", str(tmp_path / "nope" / "r.json")]) == 2
    assert "--report" in _error(capsys)
    from robust_mmr.tasks.data import Holdout, load_task_records, split_records

    records = [r for r in load_task_records(synth_dir, "vqa") if r.meta["domain"] == "site-a"]
    with pytest.raises(InputError, match="no training records left once domain=site-a is held out"):
        split_records(records, Holdout("domain", "site-a"), 0.1)
    monkeypatch.chdir(pretrained.parent)
    out = tmp_path / "rel"
    assert main(["finetune", "--init", pretrained.name, "--data", str(synth_dir), "--out", str(out), "max_epochs=1",
                 "batch_size=32"]) == 0
    monkeypatch.chdir(tmp_path)
    assert json.loads((out / "task.json").read_text())["init"] == str(pretrained.resolve())
    assert main(["evaluate", str(out), "--data", str(synth_dir), "--protocol", "clean"]) == 0
