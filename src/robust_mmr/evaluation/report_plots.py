"""PNG plots of the aggregated report: accuracy vs severity, cross-domain bars, missing-modality bars.

A method keeps one colour across every figure; with several held-out settings, each has its own line style
and bar hatch.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robust_mmr.evaluation.report_aggregate import MISSING  # noqa: E402

DPI = 110
PANEL_IN = (2.6, 2.1)  # one small-multiple panel, inches (width, height)
MAX_COLUMNS = 6
MAX_BAR_WIDTH = 0.22  # in x units, one unit per bar group
LINESTYLES = ("-", "--", ":", "-.")
HATCHES = (None, "..", "xx", "--")
TARGET_TITLES = {"image": "image corruptions", "text": "text perturbations", "both": "image + text perturbed together"}


def group_styles(groups: list[dict]) -> dict[str, dict]:
    """Per group label: a colour per method, and a line style and bar hatch per held-out setting."""
    cmap = plt.get_cmap("tab10")
    methods = list(dict.fromkeys(g["method"] for g in groups))
    settings = list(dict.fromkeys(g["held_out"] for g in groups))
    return {g["label"]: {"color": cmap(methods.index(g["method"]) % 10),
                         "linestyle": LINESTYLES[settings.index(g["held_out"]) % len(LINESTYLES)],
                         "hatch": HATCHES[settings.index(g["held_out"]) % len(HATCHES)]} for g in groups}


def plot_severity(groups: list[dict], target: str, out: Path, styles: dict[str, dict]) -> None:
    """Small multiples, one panel per perturbation name: accuracy vs severity, a line ± std band per group."""
    having = [g for g in groups if target in g.get("perturbed", {}).get("by_name", {})]
    names = list(dict.fromkeys(n for g in having for n in g["perturbed"]["by_name"][target]))
    cols = min(len(names), MAX_COLUMNS)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL_IN[0], rows * PANEL_IN[1] + 1.0), dpi=DPI,
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, names):
        for g in having:
            entry = g["perturbed"]["by_name"][target].get(name)
            if entry is None:
                continue
            sev = sorted(entry["by_severity"], key=int)
            x = np.array([int(s) for s in sev])
            mean = np.array([entry["by_severity"][s]["mean"] for s in sev])
            std = np.array([entry["by_severity"][s]["std"] for s in sev])
            style = styles[g["label"]]
            ax.plot(x, mean, marker="o", markersize=3, color=style["color"], linestyle=style["linestyle"],
                    label=g["label"])
            ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.set_xticks(range(0, 6))
    for i in range(len(names), rows * cols):  # empty slots: the panel above shows the severity ticks
        axes.flat[i].set_axis_off()
        axes.flat[i - cols].tick_params(labelbottom=True)
    fig.supxlabel("severity (0 = clean)", fontsize=9)
    fig.supylabel("accuracy", fontsize=9)
    # the title rides on the figure legend: constrained layout stacks an outside legend over a suptitle
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncol=min(len(handles), 4), fontsize=8,
               frameon=False, title=f"Accuracy vs severity: {TARGET_TITLES[target]} "
                                    "(mean over runs, band ±1 std)", title_fontsize=10)
    _save(fig, out)


def plot_cross_domain(groups: list[dict], averages: list[dict], out: Path, styles: dict[str, dict]) -> None:
    """Grouped bars: held-out accuracy per held-out domain (and the average), one bar per method.

    Error bars: ±1 std over runs, or the bootstrap 95% CI for a single run; a black tick marks the
    in-domain reference of the same runs.
    """
    having = [g for g in groups if "cross_domain" in g]
    domains = list(dict.fromkeys(g["held_out"] for g in having))
    methods = list(dict.fromkeys(g["method"] for g in having))
    colour_of = {g["method"]: styles[g["label"]]["color"] for g in having}
    labelled: set[str] = set()
    width = min(0.8 / len(methods), MAX_BAR_WIDTH)
    fig, ax = plt.subplots(figsize=(min(11.0, max(6.0, 2.0 + 0.35 * len(methods) * (len(domains) + 1))), 4.2),
                           dpi=DPI)
    for j, method in enumerate(methods):
        offset = (j - (len(methods) - 1) / 2) * width
        for i, domain in enumerate(domains):
            g = next((g for g in having if g["method"] == method and g["held_out"] == domain), None)
            if g is None:
                continue
            ood = g["cross_domain"]["ood"]["overall"]
            ax.bar(i + offset, ood["mean"], width, yerr=_error(ood), capsize=3, color=colour_of[method],
                   edgecolor="white",
                   label=None if method in labelled else method)
            labelled.add(method)
            ax.plot([i + offset - width / 2, i + offset + width / 2], [g["cross_domain"]["iid"]["mean"]] * 2,
                    color="black", linewidth=1.5)
        average = next((a for a in averages if a["method"] == method), None)
        if average is not None and len(domains) > 1:
            ax.bar(len(domains) + offset, average["ood"], width, color=colour_of[method], hatch="//",
                   edgecolor="white")
            ax.plot([len(domains) + offset - width / 2, len(domains) + offset + width / 2], [average["iid"]] * 2,
                    color="black", linewidth=1.5)
    ax.plot([], [], color="black", linewidth=1.5, label="in-domain reference")
    ticks = domains + (["average over\ndomains (hatched)"] if len(domains) > 1 else [])
    ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
    ax.set_xlim(-0.6, len(ticks) - 0.4)
    ax.set_xlabel("held-out domain (left out of training)", fontsize=9)
    ax.set_ylabel("accuracy on the held-out domain")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Cross-domain accuracy\nerror bars: ±1 std over runs (95% CI for a single run)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, out)


def plot_missing(groups: list[dict], out: Path, styles: dict[str, dict]) -> None:
    """Grouped bars: clean / image removed / image shuffled / text removed, one bar per group, ±1 std error bars."""
    having = [g for g in groups if "missing" in g]
    keys = [k for k in MISSING if all(k in g["missing"] for g in having)]
    conditions = ["clean"] + keys
    width = min(0.8 / len(having), MAX_BAR_WIDTH)
    fig, ax = plt.subplots(figsize=(min(11.0, max(6.0, 2.0 + 0.3 * len(having) * len(conditions))), 4.0), dpi=DPI)
    for j, g in enumerate(having):
        stats = [g["clean"]["overall"]] + [g["missing"][k] for k in keys]
        x = np.arange(len(conditions)) + (j - (len(having) - 1) / 2) * width
        ax.bar(x, [s["mean"] for s in stats], width, yerr=[s["std"] for s in stats], capsize=3,
               color=styles[g["label"]]["color"], hatch=styles[g["label"]]["hatch"], edgecolor="white",
               label=g["label"])
    ax.set_xticks(range(len(conditions)), [c.replace("_", " ") for c in conditions])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Missing modality and shuffled images (error bars: ±1 std over runs)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, out)


def _error(stat: dict) -> list[list[float]] | float:
    """±std, or the asymmetric CI distances for a single run with a CI."""
    if stat["n"] == 1 and "ci95" in stat:
        return [[stat["mean"] - stat["ci95"][0]], [stat["ci95"][1] - stat["mean"]]]
    return stat["std"]


def _save(fig: plt.Figure, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
