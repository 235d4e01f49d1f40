"""The method benchmarks' jobs and summary (robust_mmr.experiments, robust_mmr.evaluation.report_methods): mean ± std
over seeds, gaps to the controls in units of std, variants from the command line, a summary written from finished
jobs, and finished jobs reused only with the same settings."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from PIL import Image

from robust_mmr.evaluation import report_methods
from robust_mmr.errors import InputError
from robust_mmr.evaluation.metrics import mean_std
from robust_mmr.experiments import arguments
from robust_mmr.experiments.job import Job, read_finished, vqa_headline


def _result(variant: str, seed: int, held_out: list[float], clean: float = 0.6, error: bool = False) -> dict:
    """A job result with one VQA evaluation per held-out value in ``held_out``."""
    job = {"variant": variant, "seed": seed}
    if error:
        return {"job": job, "error": "Traceback: boom"}
    vqa = {f"organ={i}": {"clean": clean, "perturbed": clean - 0.1, "perturbed_image": clean - 0.05,
                          "held_out": h, "baselines": {"in_domain": {"majority": 0.3, "question_only": 0.5},
                                                       "held_out": {"majority": 0.2, "question_only": 0.4}}}
           for i, h in enumerate(held_out)}
    probe = {holdout: {**head, "clean": head["clean"] - 0.2} for holdout, head in vqa.items()}
    return {"job": job, "vqa": vqa, "probe": probe}


def test_mean_std_is_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)
    assert mean_std([0.5]) == (0.5, 0.0)


def test_gap_in_std_uses_the_larger_spread():
    gap, in_std = report_methods.gap_in_std([0.7, 0.7, 0.7], [0.5, 0.6, 0.7])
    assert gap == pytest.approx(0.1)
    assert in_std == pytest.approx(0.1 / 0.1)
    assert report_methods.gap_in_std([0.5, 0.5], [0.5, 0.5]) == (0.0, 0.0)
    assert report_methods.gap_in_std([0.6, 0.6], [0.5, 0.5])[1] == math.inf


def test_a_single_seed_shows_no_spread_and_no_gap_in_std():
    results = [_result("mmr", 0, [0.4]), _result("robust-mmr", 0, [0.6])]
    summary = report_methods.aggregate(results, ["mmr", "robust-mmr"])
    assert math.isnan(summary["gaps"]["robust-mmr"]["mmr"]["held_out"]["in_std"])
    text = report_methods.markdown(summary, {"question-only": (0.3, math.nan)})
    assert "±" not in text and "inf" not in text and "nan" not in text
    assert "+0.200 (1 seed)" in text and "question-only 0.300 / –" in text


def test_a_section_lists_only_the_seeds_with_a_value_on_its_holdouts():
    # seed 1 fine-tuned on organ=0 and organ=1, seed 2 only on organ=1 (e.g. a leave-one-out run beside a
    # standard-split one): the organ=0 section has one value, so it names one seed
    results = [_result("robust-mmr", 1, [0.5, 0.6]), _result("robust-mmr", 2, [0.7])]
    results[1]["vqa"] = {"organ=1": results[1]["vqa"].pop("organ=0")}
    summary = report_methods.aggregate(results, ["robust-mmr"], "vqa", ("organ=0",))
    assert summary["seeds"] == {"robust-mmr": [1]}
    assert summary["variants"]["robust-mmr"]["clean"]["n"] == 1
    assert report_methods.aggregate(results, ["robust-mmr"], "vqa", ("organ=1",))["seeds"] == {"robust-mmr": [1, 2]}


def test_aggregate_averages_holdouts_then_seeds_and_skips_failures():
    results = [_result("mmr", 0, [0.4, 0.6]), _result("mmr", 1, [0.6, 0.8]),
               _result("robust-mmr", 0, [0.9, 0.9]), _result("robust-mmr", 1, [0.8, 1.0]),
               _result("robust-mmr", 2, [], error=True)]
    summary = report_methods.aggregate(results, ["mmr", "mmr-aug", "robust-mmr"])
    assert list(summary["variants"]) == ["mmr", "robust-mmr"]  # mmr-aug never ran
    held = summary["variants"]["mmr"]["held_out"]
    assert held["values"] == [0.5, 0.7] and held["mean"] == pytest.approx(0.6) and held["n"] == 2
    assert summary["variants"]["robust-mmr"]["held_out"]["n"] == 2  # the failed seed is not counted
    gap = summary["gaps"]["robust-mmr"]["mmr"]["held_out"]
    assert gap["gap"] == pytest.approx(0.3) and gap["in_std"] == pytest.approx(0.3 / math.sqrt(0.02))
    assert "mmr" not in summary["gaps"]  # controls are not compared with themselves


def test_resolve_variants_adds_command_line_definitions_and_rejects_unknown():
    parser = argparse.ArgumentParser()
    arguments.add_common_arguments(parser)
    base = ["--out", "x", "--steps", "1", "--finetune-epochs", "1"]
    args = parser.parse_args([*base, "--variants", "mmr", "--variant", "dc2=objective.method=robust-mmr,objective.dc_weight=2"])
    assert arguments.resolve_variants(args) == {
        "mmr": ("objective.method=mmr",), "dc2": ("objective.method=robust-mmr", "objective.dc_weight=2")}
    with pytest.raises(SystemExit, match="unknown variant"):
        arguments.resolve_variants(parser.parse_args([*base, "--variants", "nope"]))
    with pytest.raises(SystemExit, match="expected NAME=KEY=VALUE"):
        arguments.resolve_variants(parser.parse_args([*base, "--variant", "dc2"]))


def test_write_summary_from_finished_results(tmp_path):
    results = [_result(v, s, [0.5 + 0.1 * (v == "robust-mmr") + 0.01 * s]) for v in ("mmr", "robust-mmr") for s in (0, 1, 2)]
    results.append(_result("mmr-aug", 0, [], error=True))
    path = report_methods.write_summary(results, tmp_path, ["mmr", "mmr-aug", "robust-mmr"], "test", "cmd")
    text = path.read_text()
    assert "| robust-mmr | 3 |" in text and "| robust-mmr | mmr | +0.100 (+10.0)" in text
    assert "Failed jobs (see their tracebacks above): mmr-aug seed 0" in text
    sections = json.loads((tmp_path / "summary.json").read_text())["sections"]
    assert list(sections) == ["Full fine-tuning", "Probe (frozen backbone)"]
    assert sections["Full fine-tuning"]["baselines"]["question-only"] == pytest.approx([0.5, 0.4])
    assert sections["Full fine-tuning"]["variants"]["mmr"]["clean"]["mean"] == pytest.approx(0.6)
    assert sections["Probe (frozen backbone)"]["variants"]["mmr"]["clean"]["mean"] == pytest.approx(0.4)
    assert "## Probe (frozen backbone)" in text
    # the probe's clean accuracy (0.4-0.5) is not above the in-domain question-only baseline (0.5): no gaps are read
    assert sections["Probe (frozen backbone)"]["measurable"] == {"mmr": False, "robust-mmr": False}
    assert sections["Full fine-tuning"]["measurable"] == {"mmr": True, "robust-mmr": True}
    probe_part = text.split("## Probe (frozen backbone)")[1]
    assert "**no: not measurable**" in probe_part and "| robust-mmr | mmr | not measurable" in probe_part
    with Image.open(tmp_path / "summary.png") as png:  # one panel per section, stacked
        assert png.height > png.width / 3 and np.asarray(png.convert("L")).std() > 10
    with pytest.raises(SystemExit, match="every job failed"):
        report_methods.write_summary([_result("mmr", 0, [], error=True)], tmp_path, ["mmr"], "test", "cmd")


def test_a_finished_job_is_reused_only_with_the_same_settings(tmp_path):
    job = Job(variant="mmr", overrides=("objective.method=mmr", "train.max_steps=10"), seed=0,
                          pretrain_data="p", task_data="t", out=str(tmp_path), holdouts=("domain=site-c",),
                          finetune={"epochs": 1}, corruptions=("jpeg",), text_perturbations=(), severities=(1,),
                          max_eval_items=10)
    assert read_finished(job) is None
    done = {"domain=site-c": {"clean": 0.5}}
    (tmp_path / "result.json").write_text(json.dumps({"job": asdict(job), "vqa": done, "probe": done}))
    assert read_finished(replace(job, threads=4))["vqa"] == done  # threads do not change results
    assert read_finished(replace(job, holdouts=(), protocols=("vqa",)))["vqa"] == done  # fewer stages: served
    assert read_finished(replace(job, holdouts=("domain=site-c", "split:other"))) is None  # more: run the missing
    assert read_finished(replace(job, protocols=("vqa", "lpft"))) is None
    with pytest.raises(SystemExit, match=r"other settings \(config.train.max_steps differ\)"):
        read_finished(replace(job, overrides=("objective.method=mmr", "train.max_steps=20")))


def test_a_job_begun_with_other_settings_is_not_resumed(tmp_path):
    job = Job(variant="mmr", overrides=("train.max_steps=10",), seed=0, pretrain_data="p",
                          task_data="t", out=str(tmp_path), holdouts=(), finetune={}, corruptions=(),
                          text_perturbations=(), severities=(1,), max_eval_items=10)
    (tmp_path / "job.json").write_text(json.dumps(asdict(job)))  # begun, never finished
    assert read_finished(replace(job, pretrain_data="elsewhere")) is None  # paths are neutral
    with pytest.raises(SystemExit, match=r"job.json was made with other settings \(seed differ\)"):
        read_finished(replace(job, seed=1))


def test_vqa_headline_reads_evaluate_run_results():
    cells = [{"target": "image", "image": ["gaussian_noise", 3], "text": None, "accuracy": 0.5},
             {"target": "image", "image": ["pixelate", 3], "text": None, "accuracy": 0.3},  # role "eval"
             {"target": "text", "image": None, "text": ["synonym", 3], "accuracy": 0.6}]
    baselines = {"majority": 0.2, "question_only": 0.4}
    results = {"n_test": 10,
               "clean": {"overall": 0.7, "open": float("nan"), "closed": 0.7, "baselines": baselines},
               "perturbed": {"cells": cells, "mean_accuracy": 0.47, "image": {"mean_accuracy": 0.4},
                             "text": {"mean_accuracy": 0.6}},
               "missing": {"image_removed": 0.35, "text_removed": 0.1},
               "cross_domain": {"ood": {"overall": 0.55, "open": 0.1, "closed": 0.8}, "rr": 0.79, "n_test": 8,
                                "baselines": baselines}}
    head = vqa_headline(results)
    assert head["unseen_corruptions"] == pytest.approx(0.3)  # only the eval-role corruption
    assert head["clean_open"] is None  # NaN (no open questions) is reported as absent
    assert (head["held_out"], head["held_out_closed"], head["perturbed_image"]) == (0.55, 0.8, 0.4)


def test_override_order_does_not_make_a_job_differ(tmp_path):
    job = Job(variant="mmr", overrides=("train.lr=0.1", "model.image_size=64"), seed=0, pretrain_data="p",
                          task_data="t", out=str(tmp_path), holdouts=(), finetune={}, corruptions=(),
                          text_perturbations=(), severities=(1,), max_eval_items=10)
    (tmp_path / "result.json").write_text(json.dumps({"job": asdict(job), "vqa": {}}))
    assert read_finished(replace(job, overrides=("model.image_size=64", "train.lr=0.1"))) is not None
    with pytest.raises(SystemExit, match=r"config.train.lr differ"):
        read_finished(replace(job, overrides=("model.image_size=64", "train.lr=0.2")))


def test_a_variant_is_measurable_only_above_question_only_in_domain_and_held_out():
    stat = report_methods.stat_of
    baselines = {"question-only": (0.5, 0.4)}
    assert report_methods.measurable({"clean": stat([0.6]), "held_out": stat([0.45])}, baselines)
    assert not report_methods.measurable({"clean": stat([0.6]), "held_out": stat([0.39])}, baselines)
    assert not report_methods.measurable({"clean": stat([0.5]), "held_out": stat([0.45])}, baselines)
    assert report_methods.measurable({"clean": stat([0.6])}, {"question-only": (0.5, float("nan"))})  # nothing held out


def test_a_preset_and_the_overrides_that_make_the_same_model_are_the_same_job(tmp_path):
    """A job written before ``preset`` existed (the tiny preset cut down by overrides, no ``protocols`` field) is
    the same job as the demo preset with the rest of its overrides."""
    backbone = ("model.vision.layers=2", "model.text.layers=2", "model.fusion.layers=1", "model.decoder.layers=1",
                "model.decoder.read_layer=1", "model.image_size=64", "model.max_text_length=40")
    job = Job(variant="mmr", overrides=("train.lr=0.1",), seed=0, pretrain_data="p", task_data="t", out=str(tmp_path),
              holdouts=(), finetune={}, corruptions=(), text_perturbations=(), severities=(1,), max_eval_items=10,
              preset="demo")
    old = {k: v for k, v in asdict(replace(job, overrides=(*backbone, "train.lr=0.1"))).items()
           if k not in ("preset", "protocols")}
    (tmp_path / "result.json").write_text(json.dumps({"job": old, "vqa": {}}))
    assert read_finished(job) is not None
    with pytest.raises(SystemExit, match=r"config.model.fusion.layers, config.model.image_size"):
        read_finished(replace(job, preset="tiny"))
    assert read_finished(replace(job, protocols=("probe",))) is not None  # fewer protocols: served by the finished job
    assert read_finished(replace(job, probe_finetune={"patience": 9})) is None  # another probe: rerun by stages
    (tmp_path / "result.json").write_text(json.dumps({"job": {**old, "protocols": ["probe"]}, "probe": {}}))
    assert read_finished(job) is None  # finished without full fine-tuning, asked for both: rerun by stages


def test_a_rerun_with_another_probe_schedule_reruns_the_probe_alone(synth_dir, tmp_path):
    """Stage reuse: pre-training and full fine-tuning whose recorded settings match are kept as they are."""
    from robust_mmr.experiments.datasets import training_domain_pairs
    from robust_mmr.experiments.job import run_job

    pairs = training_domain_pairs(synth_dir, tmp_path / "pairs", "domain", "site-c")
    backbone = ("model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
                "model.decoder.layers=1", "train.max_steps=2", "train.batch_size=8", "train.num_workers=0")
    job = Job(variant="mmr", overrides=("objective.method=mmr", *backbone), seed=0, pretrain_data=str(pairs),
              task_data=str(synth_dir), out=str(tmp_path / "job"), holdouts=("domain=site-c",),
              finetune={"max_epochs": 1, "batch_size": 32}, corruptions=("jpeg",), text_perturbations=(),
              severities=(1,), max_eval_items=8, probe_finetune={"max_epochs": 1})
    first = run_job(job)
    root = tmp_path / "job"
    stamps = {p: p.stat().st_mtime_ns for p in (root / "pretrain" / "model.safetensors",
                                                root / "vqa-domain-site-c" / "results.json",
                                                root / "probe-domain-site-c" / "results.json")}
    vqa_task = root / "vqa-domain-site-c" / "task.json"
    recorded = json.loads(vqa_task.read_text())
    del recorded["finetune"]["lp_ft"]  # as a run made before that setting existed records it
    vqa_task.write_text(json.dumps(recorded))
    second = run_job(replace(job, probe_finetune={"max_epochs": 2}))
    assert stamps[root / "pretrain" / "model.safetensors"] == (root / "pretrain" / "model.safetensors").stat().st_mtime_ns
    assert stamps[root / "vqa-domain-site-c" / "results.json"] == (
        root / "vqa-domain-site-c" / "results.json").stat().st_mtime_ns
    assert stamps[root / "probe-domain-site-c" / "results.json"] != (
        root / "probe-domain-site-c" / "results.json").stat().st_mtime_ns
    assert json.loads((root / "probe-domain-site-c" / "task.json").read_text())["finetune"]["max_epochs"] == 2
    assert second["vqa"] == first["vqa"] and second["pretrain"] == first["pretrain"]
    assert json.loads((root / "result.json").read_text())["job"]["probe_finetune"] == {"max_epochs": 2}
    # a run whose training was interrupted after its settings changed keeps no stale evaluation
    (root / "probe-domain-site-c" / "results.json").unlink()
    threads = torch.get_num_threads()
    third = run_job(replace(job, probe_finetune={"max_epochs": 1}, protocols=("probe",), threads=threads + 1))
    assert torch.get_num_threads() == threads  # the job's thread count does not leak into the caller
    assert "vqa" in third and list(third["job"]["protocols"]) == ["vqa", "probe"]  # what it ran before is kept
    assert json.loads((root / "probe-domain-site-c" / "task.json").read_text())["finetune"]["max_epochs"] == 1
    # another split asked for with one protocol: only that fine-tuning runs; what the job holds is kept
    more = replace(job, holdouts=("",), protocols=("vqa",), probe_finetune={"max_epochs": 1})
    fourth = run_job(more)
    assert set(fourth["vqa"]) == {"domain=site-c", ""} and set(fourth["probe"]) == {"domain=site-c"}
    assert (root / "vqa-standard" / "results.json").is_file() and not (root / "probe-standard").exists()
    assert read_finished(more) is not None and read_finished(replace(more, protocols=("probe",))) is None


def test_the_trained_blind_model_is_the_bar_and_the_best_blind_variant_is_reported(tmp_path):
    """With blind runs in the jobs, a variant is measurable only above the best variant's blind accuracy (in-domain
    and held out), whatever the lookups say; the blind protocol is a baseline, not a section of its own."""
    results = []
    for v, clean, blind in (("mmr", 0.60, 0.55), ("robust-mmr", 0.70, 0.62)):
        for s in (0, 1):
            r = _result(v, s, [0.5], clean=clean)
            r["blind"] = {h: {**head, "clean": blind + 0.01 * s, "held_out": 0.45} for h, head in r["vqa"].items()}
            results.append(r)
    base = report_methods.baselines_of(results, "vqa")
    assert base["trained blind"] == pytest.approx((0.625, 0.45))  # robust-mmr's blind runs: the best blind score
    assert base["best blind"] == pytest.approx((0.625, 0.45))  # no text classifier in these results
    assert base["question-only"] == pytest.approx((0.5, 0.4))
    path = report_methods.write_summary(results, tmp_path, ["mmr", "robust-mmr"], "test", "cmd",
                                        publish=tmp_path / "docs" / "real")
    sections = json.loads((tmp_path / "summary.json").read_text())["sections"]
    published = json.loads((tmp_path / "docs" / "real.json").read_text())  # beside the plot, for machines
    assert published["sections"] == sections and (tmp_path / "docs" / "real.png").is_file()
    # mmr (0.60) beats question-only (0.5) but not the trained blind model (0.625)
    assert sections["Full fine-tuning"]["measurable"] == {"mmr": False, "robust-mmr": True}
    text = path.read_text()
    assert "beats best blind" in text and "trained blind 0.625 / 0.450" in text
    for r in results:  # a text classifier above the blind model raises the bar
        for head in r["vqa"].values():
            head["baselines"]["in_domain"]["text_classifier"] = 0.65
    assert report_methods.baselines_of(results, "vqa")["best blind"][0] == pytest.approx(0.65)
    assert "blind" not in [s.lower() for s in sections]


def test_the_progress_line_reads_a_blind_run_without_perturbed_cells():
    """The blind protocol is evaluated clean only: its headline has no perturbed accuracy (a None once crashed the
    runner of a 9-job benchmark)."""
    from robust_mmr.experiments.runner import headline_line

    result = {"vqa": {"": {"clean": 0.5, "held_out": None, "perturbed": 0.45, "best_epoch": 3, "epochs_run": 5}},
              "blind": {"": {"clean": 0.4, "held_out": None, "perturbed": None, "best_epoch": 2, "epochs_run": 4}}}
    line = headline_line(result)
    assert "vqa standard: clean 0.500" in line and "blind standard: clean 0.400 held-out – perturbed –" in line


def test_recipe_search_table_reports_the_runs_that_exist():
    """benchmarks/recipe_real.py: a seed with no run is no row; one seed shows its value, several their mean ± std."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_real.py"
    spec = importlib.util.spec_from_file_location("recipe_real", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)

    def run(test: float) -> dict:
        return {"val": test + 0.1, "test": test, "open": 0.5, "closed": 0.7, "epoch": 3, "seconds": 60.0,
                "shuffled": test - 0.1, "removed": test - 0.1, "baselines": {"majority": 0.3}}

    rows = [{"candidate": "a", "seed": 0, "image": run(0.6), "blind": run(0.5)},
            {"candidate": "a", "seed": 1, "image": run(0.7), "blind": None},
            {"candidate": "b", "seed": 0, "image": run(0.4), "blind": None},
            {"candidate": "b", "seed": 1, "image": None, "blind": None}]
    text = recipe.table(rows)
    lines = [line for line in text.splitlines() if line.startswith("| a |") or line.startswith("| b |")]
    assert len(lines) == 3 + 2  # three seed rows with a run, then one mean row per candidate
    assert "| a | 0 | 0.700 | 0.600 | 0.100 | 0.600 | 0.500 | 0.100 |" in text
    assert "0.650 ± 0.071 (2)" in text  # a's test over its two seeds (sample std)
    assert "| b | 0.500 (1) | 0.400 (1) |" in text
    assert "majority 0.300" in text


def test_summaries_of_different_seeds_merge_into_one_with_the_blind_twin_as_the_bar(tmp_path):
    """Published summaries over disjoint seeds join per variant in seed order, their statistics and gaps recomputed;
    a blind model passed in becomes the trained blind bar; a seed given twice or other lookups are refused."""
    def document(seeds, blind=None):
        results = [_result(v, s, [0.5], clean=0.55 + 0.1 * (v == "robust-mmr") + 0.01 * s)
                   for v in ("mmr", "robust-mmr") for s in seeds]
        if blind is not None:
            for r in results:
                r["blind"] = {h: {**head, "clean": blind, "held_out": 0.3} for h, head in r["vqa"].items()}
        doc = report_methods.summarise(results, ["mmr", "robust-mmr"], "cmd", (report_methods.Section("FT", "vqa"),))
        return json.loads(json.dumps(doc))  # as read back from the published JSON

    first, second = document([2], blind=0.4), document([0, 1])
    assert first["sections"]["FT"]["seeds"] == {"mmr": [2], "robust-mmr": [2]}
    del first["sections"]["FT"]["seeds"]  # a document from before seeds were recorded: read from its command
    first["command"] = "python benchmarks/method_real.py run --seeds 2 --parallel 2"
    merged = report_methods.merge_documents([first, second], "merge", blind={"FT": [0.60, 0.62, 0.64]})
    ft = merged["sections"]["FT"]
    assert ft["seeds"] == {"mmr": [0, 1, 2], "robust-mmr": [0, 1, 2]}
    assert ft["variants"]["robust-mmr"]["clean"]["values"] == pytest.approx([0.65, 0.66, 0.67])
    assert ft["variants"]["mmr"]["clean"]["std"] == pytest.approx(0.01)
    assert ft["gaps"]["robust-mmr"]["mmr"]["clean"]["gap"] == pytest.approx(0.1)
    base = ft["baselines"]
    assert base["trained blind"][0] == pytest.approx(0.62) and base["best blind"][0] == pytest.approx(0.62)
    assert base["trained blind of input 1"][0] == pytest.approx(0.4)  # the first document's own blind model, kept
    assert ft["measurable"] == {"mmr": False, "robust-mmr": True}  # mmr's 0.56 is under the blind twin's 0.62
    line = report_methods.headline(merged, "FT", "VQA-RAD standard split", 451, ("question-only", "exact question"))
    assert line == ("Headline, VQA-RAD standard split (451 questions, 3 seeds): robust-mmr 0.660 ± 0.010; "
                    "mmr 0.560 ± 0.010; trained blind 0.620 ± 0.020; exact question 0.500")
    path = report_methods.write_document(merged, tmp_path, "merged", headline_line=line)
    assert line in path.read_text() and "| mmr | 3 |" in path.read_text()
    robust_only = document([0, 1])
    for key in ("variants", "seeds"):
        del robust_only["sections"]["FT"][key]["mmr"]
    short = report_methods.merge_documents([first, robust_only], "merge")  # mmr has seed 2 only
    assert report_methods.headline(short, "FT", "x", 9) == (
        "Headline, x (9 questions, 3 seeds): robust-mmr 0.660 ± 0.010; mmr 0.570 (1 seed)")
    with pytest.raises(InputError, match="seed 2 is in two documents"):
        report_methods.merge_documents([first, document([2])], "merge")
    other = document([3])
    other["sections"]["FT"]["baselines"]["majority"] = [0.1, 0.2]
    with pytest.raises(InputError, match="disagree on the majority baseline"):
        report_methods.merge_documents([second, other], "merge")


def test_a_count_for_the_merged_headline_comes_from_the_inputs_or_the_command_and_must_agree():
    old, new, other = {}, {"standard_test_questions": 451}, {"standard_test_questions": 450}
    assert report_methods.agreed_value([old, new], "standard_test_questions") == 451
    assert report_methods.agreed_value([old], "standard_test_questions", 451) == 451
    assert report_methods.agreed_value([new], "standard_test_questions", 451) == 451
    with pytest.raises(InputError, match="recorded in no input"):
        report_methods.agreed_value([old, old], "standard_test_questions")
    with pytest.raises(InputError, match="disagree"):
        report_methods.agreed_value([new, other], "standard_test_questions")
    with pytest.raises(InputError, match="disagree"):
        report_methods.agreed_value([new], "standard_test_questions", 300)


def test_per_organ_numbers_are_in_the_json_and_each_organ_table_holds_the_blind_model_of_its_fold():
    """benchmarks/method_real.py's leave-one-organ-out tables: per-seed values per variant and organ in the summary
    JSON, and the trained blind model of the same fold beside the variants in the full fine-tuning table."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "method_real.py"
    spec = importlib.util.spec_from_file_location("method_real", path)
    method_real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(method_real)
    key = method_real.HOLDOUT_KEY

    def head(clean: float, held_out: float) -> dict:
        return {"clean": clean, "held_out": held_out, "perturbed": clean - 0.05, "domain_rr": held_out / clean,
                "baselines": {"in_domain": {"majority": 0.3, "question_only": 0.35},
                              "held_out": {"majority": 0.2, "question_only": 0.25}}}

    results = [{"job": {"variant": "robust-mmr", "seed": seed},
                "vqa": {f"{key}=ABD": head(0.6 + seed / 100, 0.5), f"{key}=HEAD": head(0.62, 0.55 + seed / 100)}}
               for seed in (1, 0)]
    results.append({"job": {"variant": "mmr", "seed": 0}, "vqa": {f"{key}=ABD": head(0.58, 0.45)},
                    "blind": {f"{key}=ABD": {**head(0.5, 0.41), "perturbed": None}}})  # as a blind run records
    results.append({"job": {"variant": "mmr", "seed": 2}, "error": "Traceback ..."})
    # the probe on the standard split only: no per-organ table
    results[0]["probe"] = {"": {**head(0.5, 0.0), "held_out": None}}
    per_organ = method_real.organ_document(results, ["mmr", "robust-mmr"], ["ABD", "HEAD"])
    json.dumps(per_organ)  # JSON as it is
    vqa = per_organ["full fine-tuning"]
    assert vqa["ABD"]["variants"]["robust-mmr"]["clean"] == [0.6, 0.61]  # seed order, not result order
    assert vqa["HEAD"]["variants"]["robust-mmr"]["held_out"] == [0.55, 0.56]
    assert list(vqa["HEAD"]["variants"]) == ["robust-mmr"]  # mmr has no HEAD fold: no row, the failed job none
    assert per_organ["trained blind"]["ABD"]["variants"]["mmr"]["held_out"] == [0.41]
    text = method_real.organ_tables(per_organ)
    abd = text.split("### ABD held out (full fine-tuning)")[1].split("###")[0]
    assert "| robust-mmr | 2 | 0.605 ± 0.007 |" in abd and "| mmr | 1 | 0.580 |" in abd
    assert "| *trained blind (mmr's pre-training)* | 1 | 0.500 |" in abd and "| *majority* |" in abd
    assert "## Per held-out organ, trained blind" not in text  # the blind model is a row, not a section
    assert "probe" not in per_organ and "probe" not in text
