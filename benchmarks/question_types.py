"""Which questions use the image? Per-question-type VQA accuracy of fine-tuned runs, clean, with the
image removed and under image corruptions, beside the question-only baseline.

A question type the model answers as well without the image as with it (or no better than the
question-only prior) leaves image robustness nothing to measure. Runs are grouped by the name of the
folder two levels above each run (``<bench>/runs/<variant>/seed<k>/<run>``, the method benchmarks'
layout); each number is the mean over that group's runs.

    python benchmarks/question_types.py --data runs/bench-synthetic/data \\
        runs/bench-synthetic/runs/{mmr,mmr-aug,robust-mmr}/seed*/vqa-domain-site-c \\
        --split test_ood --corruption gaussian_noise:5 --corruption pixelate:5
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from robust_mmr.evaluation.baselines import question_only_hits
from robust_mmr.evaluation.predict import Cell, Predictor
from robust_mmr.tasks.data import Holdout, load_task_records, split_records
from robust_mmr.tasks.finetune import load_finetuned
from robust_mmr.tasks.labels import LabelVocab


def parse_corruption(text: str) -> tuple[str, int]:
    name, _, severity = text.partition(":")
    if not severity.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:SEVERITY, got {text!r}")
    return name, int(severity)


def run_accuracy(run_dir: Path, data: Path, split: str, cells: dict[str, Cell], key: str) -> tuple[dict, dict]:
    """(cell name -> question type -> accuracy, question type -> (n, question-only accuracy)) for one run."""
    model, tokenizer, _, task = load_finetuned(run_dir)
    holdout = Holdout(**task["holdout"]) if task["holdout"] else None
    parts, _ = split_records(load_task_records(data, task["task"]), holdout, task["finetune"]["val_fraction"],
                             task["finetune"].get("val_carve", "auto"))
    records = parts[split]
    types = np.array([str(r.meta.get(key, "?")) for r in records])
    predictor = Predictor(model, tokenizer, LabelVocab(tuple(task["labels"])), data, records, seed=0)
    prior = question_only_hits(parts["train"], records)
    accuracy = {}
    for name, cell in cells.items():
        hits = predictor.hits(cell)[0]
        accuracy[name] = {t: float(hits[types == t].mean()) for t in sorted(set(types))}
    baseline = {t: (int((types == t).sum()), float(prior[types == t].mean())) for t in sorted(set(types))}
    return accuracy, baseline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="fine-tuned VQA run folders")
    parser.add_argument("--data", type=Path, required=True, help="the dataset the runs were fine-tuned on")
    parser.add_argument("--split", choices=("test", "test_ood"), default="test",
                        help="in-domain test or the held-out domain's test records")
    parser.add_argument("--corruption", action="append", type=parse_corruption, default=[],
                        metavar="NAME:SEVERITY", help="an image corruption to evaluate (repeatable)")
    parser.add_argument("--key", default="question_type", help="record meta key that names the question type")
    args = parser.parse_args(argv)
    cells = {"clean": Cell(), "no image": Cell(drop_image=True)}
    cells.update({f"{n}:{s}": Cell(image=(n, s)) for n, s in args.corruption})

    grouped: dict[str, list[dict]] = defaultdict(list)
    baseline: dict = {}
    for run in args.runs:
        accuracy, baseline = run_accuracy(run, args.data, args.split, cells, args.key)
        grouped[run.resolve().parent.parent.name].append(accuracy)
        print(f"evaluated {run}", flush=True)
    groups = list(grouped)
    headers = ["question type", "n", "question-only", *(f"{g} {c}" for g in groups for c in cells)]
    lines = [f"Split: {args.split}; runs per group: " + ", ".join(f"{g} {len(grouped[g])}" for g in groups), "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for qtype, (n, prior) in baseline.items():
        values = [np.mean([acc[c][qtype] for acc in grouped[g]]) for g in groups for c in cells]
        lines.append("| " + " | ".join([qtype, str(n), f"{prior:.2f}", *(f"{v:.2f}" for v in values)]) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
