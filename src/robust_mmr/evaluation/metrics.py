"""Metrics over per-item correctness, and robustness ratios (DESIGN §4)."""

from __future__ import annotations

import numpy as np


def accuracy_breakdown(hits: np.ndarray, closed: np.ndarray) -> dict[str, float]:
    """Accuracy overall / open / closed from per-item hits (N,) bool and closed flags (N,) bool."""
    out = {"overall": float(hits.mean()) if hits.size else float("nan")}
    for name, part in (("closed", closed), ("open", ~closed)):
        out[name] = float(hits[part].mean()) if part.any() else float("nan")
    return out


def bootstrap_ci(hits: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``hits`` over test items."""
    rng = np.random.default_rng(seed)
    means = rng.choice(hits.astype(np.float64), size=(n_resamples, hits.size), replace=True).mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def macro_f1(pred: np.ndarray, target: np.ndarray) -> float:
    """Macro-averaged F1 over the classes present in ``target``."""
    scores = []
    for c in np.unique(target):
        tp = np.sum((pred == c) & (target == c))
        fp = np.sum((pred == c) & (target != c))
        fn = np.sum((pred != c) & (target == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def relative_robustness(perturbed: float, clean: float) -> float:
    """RR = acc_perturbed / acc_clean."""
    return perturbed / clean if clean > 0 else float("nan")


def domain_robustness(ood: float, iid: float) -> float:
    """Cross-domain RR = 1 − (iid − ood) / iid."""
    return 1.0 - (iid - ood) / iid if iid > 0 else float("nan")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
