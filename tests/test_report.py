"""``robust-mmr report``: aggregation over seeds, Markdown tables, PNG plots and the CLI (no model needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robust_mmr.cli.main import main
from robust_mmr.errors import InputError
from robust_mmr.evaluation.report import build_report

CORRUPTIONS = ("gaussian_noise", "jpeg")
TEXT_PERTS = ("keyboard_typo", "word_drop")
SEVERITIES = (1, 3, 5)
CLEAN = {"scratch": 0.40, "mmr": 0.55, "robust-mmr": 0.62}  # base clean accuracy per method
SEEDS = (0, 1, 2)
PNGS = ("severity_image.png", "severity_text.png", "severity_both.png", "cross_domain.png", "missing.png",
        "gallery.png")


def make_results(method: str, seed: int, protocols: tuple[str, ...] = ("perturbed", "missing", "cross_domain"),
                 task: str = "vqa") -> dict:
    """A results dict as `evaluate_run` writes it, with accuracies that differ per method, seed and cell."""
    rng = np.random.default_rng([len(method), seed])
    clean = CLEAN[method] + 0.02 * seed
    r = {"run": f"runs/{method}-{seed}", "task": task, "method": method, "finetune_seed": seed, "seed": 0,
         "n_test": 200, "holdout": {"key": "domain", "value": "site-c"}, "oov_test_answers": 1,
         "clean": {"overall": clean, "open": clean - 0.1, "closed": clean + 0.1, "ci95": [clean - 0.05, clean + 0.05],
                   "baselines": {"majority": 0.30, "question_only": 0.35 + 0.01 * seed}}}
    if "perturbed" in protocols:
        cells = []
        pairs = [("image", (c, None)) for c in CORRUPTIONS] + [("text", (None, t)) for t in TEXT_PERTS]
        pairs += [("both", ct) for ct in zip(CORRUPTIONS, TEXT_PERTS)]
        for target, (c, t) in pairs:
            for s in SEVERITIES:
                cells.append({"target": target, "image": [c, s] if c else None, "text": [t, s] if t else None,
                              "accuracy": clean - 0.03 * s + rng.uniform(-0.01, 0.01), "seed": 0, "example_params": {}})
        r["perturbed"] = {"cells": cells}
        for target in ("image", "text", "both"):
            mean = float(np.mean([c["accuracy"] for c in cells if c["target"] == target]))
            r["perturbed"][target] = {"mean_accuracy": mean, "rr": mean / clean}
        mean = float(np.mean([c["accuracy"] for c in cells]))
        r["perturbed"].update(mean_accuracy=mean, rr=mean / clean)
    if "missing" in protocols:
        r["missing"] = {"image_removed": clean - 0.2 - 0.01 * seed, "text_removed": 0.25 + 0.005 * seed}
    if "cross_domain" in protocols:
        ood = clean - 0.1 - 0.01 * seed
        r["cross_domain"] = {"held_out": "domain=site-c", "ood": {"overall": ood, "open": ood - 0.1, "closed": ood + 0.1},
                             "ood_ci95": [ood - 0.06, ood + 0.06], "iid": clean, "rr": 1 - (clean - ood) / clean,
                             "baselines": {"majority": 0.28, "question_only": 0.33}}
    return r


def write_run(root: Path, results: dict) -> Path:
    run = root / f"{results['method']}-{results['finetune_seed']}"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def three_by_three(tmp_path_factory) -> tuple[list[dict], Path]:
    """3 methods × 3 seeds (mmr without the missing-modality and cross-domain protocols), reported once."""
    root = tmp_path_factory.mktemp("runs")
    inputs = [make_results(m, s, ("perturbed",) if m == "mmr" else ("perturbed", "missing", "cross_domain"))
              for m in CLEAN for s in SEEDS]
    runs = [write_run(root, r) for r in inputs]
    report = build_report(runs[::-1], root / "report")  # reversed: the report must reorder the methods
    return inputs, report


def group(report_json: dict, method: str) -> dict:
    return next(g for g in report_json["groups"] if g["method"] == method)


def test_aggregates_equal_numpy_mean_and_sample_std_over_seeds(three_by_three):
    inputs, report = three_by_three
    out = json.loads((report.parent / "results.json").read_text())
    for method in CLEAN:
        runs = [r for r in inputs if r["method"] == method]
        g = group(out, method)
        assert g["finetune_seeds"] == list(SEEDS) and len(g["runs"]) == 3
        clean = [r["clean"]["overall"] for r in runs]
        assert g["clean"]["overall"]["mean"] == pytest.approx(np.mean(clean))
        assert g["clean"]["overall"]["std"] == pytest.approx(np.std(clean, ddof=1))
        assert g["clean"]["overall"]["n"] == 3 and "ci95" not in g["clean"]["overall"]
        image_rr = [r["perturbed"]["image"]["rr"] for r in runs]
        assert g["perturbed"]["image"]["rr"]["std"] == pytest.approx(np.std(image_rr, ddof=1))
        jpeg = [np.mean([c["accuracy"] for c in r["perturbed"]["cells"] if c["target"] == "image"
                         and c["image"][0] == "jpeg"]) for r in runs]
        entry = g["perturbed"]["by_name"]["image"]["jpeg"]
        assert entry["mean_over_severities"]["mean"] == pytest.approx(np.mean(jpeg))
        assert entry["mean_over_severities"]["std"] == pytest.approx(np.std(jpeg, ddof=1))
        assert entry["by_severity"]["0"]["mean"] == pytest.approx(np.mean(clean))  # severity 0 is clean
        sev5 = [c["accuracy"] for r in runs for c in r["perturbed"]["cells"]
                if c["target"] == "both" and c["image"] == ["gaussian_noise", 5]]
        assert g["perturbed"]["by_name"]["both"]["gaussian_noise + keyboard_typo"]["by_severity"]["5"]["mean"] == \
            pytest.approx(np.mean(sev5))
    assert [i["path"] for i in out["inputs"]] and len(out["inputs"]) == 9


def test_a_method_missing_a_protocol_is_left_out_of_that_section_only(three_by_three):
    _, report = three_by_three
    out = json.loads((report.parent / "results.json").read_text())
    mmr = group(out, "mmr")
    assert "perturbed" in mmr and "missing" not in mmr and "cross_domain" not in mmr
    assert [a["method"] for a in out["cross_domain_average"]] == ["scratch", "robust-mmr"]
    text = report.read_text()
    clean, missing, cross = (section(text, name) for name in ("Clean accuracy", "Missing modality", "Across domains"))
    assert "| mmr |" in clean and "| mmr |" not in missing and "| mmr |" not in cross
    assert "| robust-mmr |" in missing and "| scratch |" in cross


def test_cross_domain_average_and_rr_follow_the_inputs(three_by_three):
    inputs, report = three_by_three
    out = json.loads((report.parent / "results.json").read_text())
    runs = [r for r in inputs if r["method"] == "scratch"]
    ood = np.mean([r["cross_domain"]["ood"]["overall"] for r in runs])
    iid = np.mean([r["cross_domain"]["iid"] for r in runs])
    average = out["cross_domain_average"][0]
    assert average["ood"] == pytest.approx(ood) and average["iid"] == pytest.approx(iid)
    assert average["rr"] == pytest.approx(np.mean([1 - (r["clean"]["overall"] - r["cross_domain"]["ood"]["overall"])
                                                   / r["clean"]["overall"] for r in runs]))


def test_report_md_shows_methods_in_order_with_baselines_and_the_command(three_by_three):
    inputs, report = three_by_three
    text = report.read_text()
    clean = section(text, "Clean accuracy")
    rows = [line for line in clean.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [row.split("|")[1].strip() for row in rows] == ["scratch", "mmr", "robust-mmr"]
    scratch = [r for r in inputs if r["method"] == "scratch"]
    q_only = [r["clean"]["baselines"]["question_only"] for r in scratch]
    assert "majority baseline" in clean and "question-only baseline" in clean
    assert f"{np.mean(q_only):.3f} ± {np.std(q_only, ddof=1):.3f}" in rows[0]
    assert "| 3 | 200 |" in rows[0]  # runs and test items
    assert "`robust-mmr report " in text and f"--out {report.parent}" in text
    per_corruption = section(text, "Per image corruption")
    assert "gaussian_noise" in per_corruption and "jpeg" in per_corruption
    assert "(mean over severities 1,3,5)" in text


def test_every_png_exists_with_a_sane_size_and_content(three_by_three):
    _, report = three_by_three
    for name in PNGS:
        with Image.open(report.parent / name) as im:
            assert 300 <= im.width <= 4000 and 200 <= im.height <= 5000, (name, im.size)
            assert np.asarray(im.convert("L")).std() > 5, name  # not a blank canvas
        assert f"]({name})" in report.read_text()
    with Image.open(report.parent / "gallery.png") as im:  # one row per corruption in the results
        assert im.height == pytest.approx(len(CORRUPTIONS) * 150, abs=2)


def test_a_single_run_shows_its_bootstrap_ci_instead_of_a_std(tmp_path):
    results = make_results("robust-mmr", 0, protocols=())
    report = build_report([write_run(tmp_path, results)], tmp_path / "report")
    lo, hi = results["clean"]["ci95"]
    assert f"{results['clean']['overall']:.3f} [{lo:.3f}, {hi:.3f}]" in report.read_text()
    out = json.loads((tmp_path / "report" / "results.json").read_text())
    assert out["groups"][0]["clean"]["overall"]["ci95"] == [lo, hi]
    assert not list((tmp_path / "report").glob("*.png"))  # clean only: nothing to plot
    assert "Fewer than 3 runs for: robust-mmr" in report.read_text()


def test_bad_inputs_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="no results file"):
        build_report([tmp_path / "nowhere"], tmp_path / "out")
    (tmp_path / "bad.json").write_text(json.dumps({"run": "x"}))
    with pytest.raises(InputError, match="missing task"):
        build_report([tmp_path / "bad.json"], tmp_path / "out")
    a = write_run(tmp_path / "a", make_results("mmr", 0, protocols=()))
    b = write_run(tmp_path / "b", make_results("scratch", 0, protocols=(), task="classify"))
    with pytest.raises(InputError, match="mix tasks"):
        build_report([a, b], tmp_path / "out")


def test_cli_prints_the_clean_table_and_uses_a_test_image_of_data(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)).save(data / "images/t.png")
    record = {"id": "q1", "image": "images/t.png", "question": "Is there a lesion?", "answer": "yes",
              "answer_type": "closed", "split": "test", "meta": {"domain": "site-a"}}
    (data / "vqa.jsonl").write_text(json.dumps(record) + "\n")
    runs = [str(write_run(tmp_path, make_results(m, 0, protocols=("perturbed",)))) for m in ("mmr", "scratch")]
    assert main(["report", *runs, "--out", str(tmp_path / "rep"), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.index("scratch") < out.index("mmr") and "report: " in out
    assert (tmp_path / "rep" / "gallery.png").is_file()
    assert "`images/t.png`" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "rep2")]) == 2
    assert "no results file" in capsys.readouterr().err


def section(text: str, heading: str) -> str:
    """The Markdown from ``heading`` up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}.*?$(.*?)(?=^#|\Z)", text, flags=re.M | re.S)
    assert match, heading
    return match.group(1)
