"""The evaluation protocols on a fine-tuned classifier run (DESIGN §4):

- ``clean``: accuracy overall / open / closed with a bootstrap 95% CI, apart for test images seen and unseen
  in fine-tuning, beside the baselines of :mod:`robust_mmr.evaluation.baselines` (majority, exact question,
  same-image lookup, a text classifier);
- ``perturbed``: every chosen corruption × severity on the image, text perturbation × severity on
  the text, and paired on both; per-cell accuracy, the mean, RR = acc_pert / acc_clean;
- ``missing``: accuracy with the image removed and with the text removed, and the *image-shuffled* test (each
  test image swapped for another test image of its organ / modality, answers unchanged): what the image
  contributes, measured without a token the model may never have seen;
- ``cross-domain``: when the run held a domain out, accuracy on the unseen domain's test records,
  the in-domain test reference, and RR = 1 − (iid − ood) / iid.

Every cell records its evaluation seed and the parameters sampled for one example item. The model runs on
``device`` (a CUDA GPU when one is present, else the CPU), recorded in the results with the precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from robust_mmr.errors import InputError
from robust_mmr.evaluation.baselines import lookup_baselines
from robust_mmr.evaluation.metrics import (
    accuracy_breakdown,
    bootstrap_ci,
    domain_robustness,
    macro_f1,
    relative_robustness,
)
from robust_mmr.evaluation.predict import AUTO_DEVICE, Cell, Predictor, accelerator_of, resolve_device
from robust_mmr.evaluation.protocol_common import PROTOCOLS, check_protocols, pretraining_method, subsample
from robust_mmr.evaluation.retrieval import RETRIEVAL_PROTOCOLS, evaluate_retrieval_run
from robust_mmr.hardware import precision_record
from robust_mmr.perturbations.image.registry import image_corruptions
from robust_mmr.perturbations.seeding import SEVERITIES
from robust_mmr.perturbations.text import text_perturbations
from robust_mmr.tasks.data import Holdout, load_task_records, screen_records, split_records
from robust_mmr.tasks.finetune import load_finetuned
from robust_mmr.tasks.labels import LabelVocab
from robust_mmr.tasks.retrieval import is_retrieval_run

__all__ = ["PROTOCOLS", "corruption_errors", "evaluate_run"]


def evaluate_run(run_dir: Path, data_dir: Path, protocols: tuple[str, ...] = PROTOCOLS, seed: int = 0,
                 corruptions: list[str] | None = None, text_perts: list[str] | None = None,
                 severities: tuple[int, ...] = SEVERITIES, modality: str = "generic", max_items: int | None = None,
                 progress: bool = True, precision: str = "auto", device: str = AUTO_DEVICE,
                 batch_size: int | None = None, on_bad_sample: str = "skip") -> dict:
    """Evaluate the fine-tuned run in ``run_dir`` on its test split(s) of ``data_dir``; returns the results dict.
    A test item whose image cannot be used is left out and listed in ``results["skipped"]`` (``on_bad_sample=fail``:
    an :class:`InputError` naming the first).
    ``precision``: the model's at inference (``auto``: from the hardware of ``device``, :mod:`robust_mmr.hardware`).
    ``device``: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. ``batch_size``: items
    encoded and fused per pass (None: 64 for a classifier, 256 for retrieval); larger keeps a GPU busier."""
    if is_retrieval_run(run_dir):
        protocols = RETRIEVAL_PROTOCOLS if protocols == PROTOCOLS else protocols  # "all" means all that apply
        return evaluate_retrieval_run(run_dir, data_dir, protocols, seed, corruptions, text_perts, severities,
                                      modality, max_items, progress, precision=precision, device=device,
                                      batch_size=batch_size, on_bad_sample=on_bad_sample)
    check_protocols(protocols)
    model, tokenizer, _, task = load_finetuned(run_dir)
    vocab = LabelVocab(tuple(task["labels"]))
    holdout = Holdout(**task["holdout"]) if task["holdout"] else None
    records = load_task_records(data_dir, task["task"])
    parts, _ = split_records(records, holdout, task["finetune"]["val_fraction"],
                             task["finetune"].get("val_carve", "auto"))
    test, skipped = _usable(data_dir, subsample(parts["test"], max_items), model, on_bad_sample)
    device_used = resolve_device(device)
    precision_used = precision_record(precision, accelerator_of(device_used))
    batching = {} if batch_size is None else {"batch_size": batch_size}
    predictor = Predictor(model, tokenizer, vocab, data_dir, test, seed=seed, precision=precision_used["resolved"],
                          device=device_used, **batching)
    closed = np.array([getattr(r, "answer_type", "open") == "closed" for r in test])
    results: dict = {"run": str(run_dir), "task": task["task"], "method": pretraining_method(task["init"]),
                     "finetune_seed": task["finetune"]["seed"], "seed": seed, "n_test": len(test),
                     "holdout": task["holdout"], "oov_test_answers": int((predictor.labels < 0).sum()),
                     "precision": precision_used, "device": str(device_used), "skipped": skipped}

    clean_pred, _ = predictor.predict(Cell())
    clean_hits = clean_pred == predictor.labels
    clean = accuracy_breakdown(clean_hits, closed)
    if task["task"] == "classify":
        clean["macro_f1"] = macro_f1(clean_pred, predictor.labels)
    results["clean"] = {**clean, "ci95": bootstrap_ci(clean_hits, seed=seed),
                        "by_image": seen_unseen(clean_hits, closed, test, parts["train"]),
                        "baselines": lookup_baselines(parts["train"], parts["val"], test)}
    if "perturbed" in protocols:
        corruptions = corruptions or image_corruptions(modality=modality)
        text_perts = text_perts or text_perturbations()
        cells = [("image", Cell(image=(c, s))) for c in corruptions for s in severities]
        cells += [("text", Cell(text=(t, s))) for t in text_perts for s in severities]
        cells += [("both", Cell(image=(c, s), text=(t, s))) for c, t in zip(corruptions, text_perts) for s in severities]
        table = []
        for target, cell in tqdm(cells, desc="perturbed cells", disable=not progress):
            hits, example = predictor.hits(cell)
            table.append({"target": target, "image": cell.image, "text": cell.text, "accuracy": float(hits.mean()),
                          "seed": seed, "example_params": example})
        results["perturbed"] = {"cells": table, **_perturbed_summary(table, clean["overall"])}
    if "missing" in protocols:
        results["missing"] = {
            name: accuracy_breakdown(predictor.hits(cell)[0], closed)["overall"]
            for name, cell in (("image_removed", Cell(drop_image=True)), ("text_removed", Cell(drop_text=True)),
                               ("image_shuffled", Cell(shuffle_images=True)))
        }
    if "cross-domain" in protocols and holdout is not None:
        ood, ood_skipped = _usable(data_dir, subsample(parts["test_ood"], max_items), model, on_bad_sample)
        results["skipped"] += ood_skipped
        ood_pred = Predictor(model, tokenizer, vocab, data_dir, ood, seed=seed, precision=predictor.precision,
                             device=device_used, batch_size=predictor.batch_size)
        ood_hits, _ = ood_pred.hits(Cell())
        ood_closed = np.array([getattr(r, "answer_type", "open") == "closed" for r in ood])
        ood_acc = accuracy_breakdown(ood_hits, ood_closed)
        results["cross_domain"] = {"held_out": f"{holdout.key}={holdout.value}", "n_test": len(ood), "ood": ood_acc,
                                   "ood_ci95": bootstrap_ci(ood_hits, seed=seed), "iid": clean["overall"],
                                   "rr": domain_robustness(ood_acc["overall"], clean["overall"]),
                                   "baselines": lookup_baselines(parts["train"], parts["val"], ood)}
    return results


def _usable(data_dir: Path, records: list, model, policy: str) -> tuple[list, list[dict]]:
    """The records a classifier can be evaluated on (every one for a blind model, which opens no image)."""
    return (records, []) if getattr(model, "blind", False) else screen_records(data_dir, records, policy)


def seen_unseen(hits: np.ndarray, closed: np.ndarray, test: list, train: list) -> dict:
    """Accuracy (overall / open / closed) and item count apart for test items whose image is a fine-tuning
    training image (``seen``) and the others (``unseen``)."""
    train_images = {r.image for r in train}
    seen = np.array([r.image in train_images for r in test], dtype=bool)
    return {name: {"n": int(part.sum()), **(accuracy_breakdown(hits[part], closed[part]) if part.any() else {})}
            for name, part in (("seen", seen), ("unseen", ~seen))}


def _perturbed_summary(cells: list[dict], clean: float) -> dict:
    out = {}
    for target in ("image", "text", "both"):
        accs = [c["accuracy"] for c in cells if c["target"] == target]
        if accs:
            mean = float(np.mean(accs))
            out[target] = {"mean_accuracy": mean, "rr": relative_robustness(mean, clean)}
    accs = [c["accuracy"] for c in cells]
    out["mean_accuracy"] = float(np.mean(accs))
    out["rr"] = relative_robustness(out["mean_accuracy"], clean)
    return out


def corruption_errors(cells: list[dict], reference_cells: list[dict]) -> dict:
    """Corruption error relative to a reference run (ImageNet-C, Hendrycks & Dietterich 2019):
    CE = Σ_s (1 − acc_s) / Σ_s (1 − acc_ref_s) per perturbed cell name over the severities both runs have,
    and its mean (mCE) per target. Below 1 means fewer errors than the reference."""
    def errors(table: list[dict]) -> dict[tuple[str, str], dict[int, float]]:
        out: dict[tuple[str, str], dict[int, float]] = {}
        for c in table:
            name = " + ".join(c[m][0] for m in ("image", "text") if c.get(m))
            severity = int((c.get("image") or c.get("text"))[1])
            out.setdefault((c["target"], name), {})[severity] = 1.0 - c["accuracy"]
        return out

    ours, ref = errors(cells), errors(reference_cells)
    per_cell: dict[str, dict[str, float]] = {}
    for (target, name), errs in ours.items():
        shared = sorted(set(errs) & set(ref.get((target, name), {})))
        denominator = sum(ref[(target, name)][s] for s in shared)
        if shared and denominator > 0:
            per_cell.setdefault(target, {})[name] = sum(errs[s] for s in shared) / denominator
    if not per_cell:
        raise InputError("the reference run has no perturbed cells in common with this run")
    return {target: {"ce": table, "mce": float(np.mean(list(table.values())))} for target, table in per_cell.items()}
