"""The method benchmarks' summary: mean ± std over pre-training seeds of every variant's headline numbers
(:mod:`robust_mmr.experiments.job`), the gaps of Robust-MMR variants to the two controls in units of seed std,
the baselines (the trained blind model, the lookups, the text classifier), and which variants can be read at all
(:func:`measurable`: above the trained blind model).
Written as ``summary.json``, ``summary.md`` and ``summary.png`` by :func:`write_summary`.
"""

from __future__ import annotations

import json
import math
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robust_mmr.evaluation.metrics import mean_std

CONTROLS = ("mmr", "mmr-aug")  # every other variant is compared with both
RETRIEVAL_KEY = {"vqa": "retrieval", "probe": "probe_retrieval"}  # a job result's retrieval key per protocol

# Headline numbers per job, in table order: (key, column title).
VQA_METRICS = (("clean", "clean"), ("perturbed", "perturbed (all)"), ("seen_corruptions", "training corr."),
               ("unseen_corruptions", "eval-only corr."), ("perturbed_text", "text pert."),
               ("image_removed", "image removed"), ("image_shuffled", "image shuffled"),
               ("text_removed", "text removed"),
               ("held_out", "held-out domain"), ("held_out_closed", "held-out closed"),
               ("held_out_open", "held-out open"), ("best_epoch", "epoch kept"))
RETRIEVAL_METRICS = (("r1", "R@1 (clean)"), ("mr", "MR (clean)"), ("delta_mr_image", "ΔMR image"),
                     ("delta_mr_text", "ΔMR text"))


def _metric(result: dict, key: str, protocol: str, holdouts: tuple[str, ...] | None) -> float | None:
    """A VQA headline of ``protocol`` averaged over the job's ``holdouts`` (None: all), or a retrieval headline."""
    if key in dict(RETRIEVAL_METRICS):
        return result.get(RETRIEVAL_KEY.get(protocol, ""), {}).get(key)
    values = [v[key] for h, v in result.get(protocol, {}).items()
              if (holdouts is None or h in holdouts) and v.get(key) is not None]
    return float(np.mean(values)) if values else None


def collect(results: list[dict], protocol: str = "vqa",
            holdouts: tuple[str, ...] | None = None) -> dict[str, dict[str, list[float]]]:
    """variant -> metric -> per-seed values (failed jobs and jobs without ``protocol`` left out)."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in sorted((r for r in results if "error" not in r), key=lambda r: r["job"]["seed"]):
        for key, _ in (*VQA_METRICS, *RETRIEVAL_METRICS):
            value = _metric(r, key, protocol, holdouts)
            if value is not None:
                table.setdefault(r["job"]["variant"], {}).setdefault(key, []).append(value)
    return table


def gap_in_std(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) − mean(b), that gap in units of the larger of the two sample std); the second is NaN when
    either side has a single value (no spread to measure the gap against)."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    spread, gap = max(sa, sb), ma - mb
    if min(len(a), len(b)) < 2:
        return gap, math.nan
    if spread > 0:
        return gap, gap / spread
    return gap, 0.0 if gap == 0 else math.copysign(math.inf, gap)


def aggregate(results: list[dict], order: list[str], protocol: str = "vqa",
              holdouts: tuple[str, ...] | None = None) -> dict:
    """Per variant and metric: mean, std, n and the per-seed values; gaps of every Robust-MMR variant
    to each control on the headline metrics. ``protocol``: ``vqa`` (full fine-tuning) or ``probe``."""
    values = collect(results, protocol, holdouts)
    variants = [v for v in order if v in values]
    summary: dict = {"variants": {}, "gaps": {}}
    for v in variants:
        summary["variants"][v] = {k: stat_of(x) for k, x in values[v].items()}
    for v in variants:
        if v in CONTROLS:
            continue
        for c in CONTROLS:
            if c not in values:
                continue
            summary["gaps"].setdefault(v, {})[c] = {
                k: dict(zip(("gap", "in_std"), gap_in_std(values[v][k], values[c][k])))
                for k in GAP_KEYS if k in values[v] and k in values[c]}
    return summary


def stat_of(values: list[float]) -> dict:
    """Mean, sample std, count and the values themselves."""
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values), "values": values}


def format_values(values: list[float]) -> str:
    """``mean ± std`` of ``values`` for a table cell (``–`` when there are none)."""
    return _cell(stat_of(values) if values else None)


def _cell(stat: dict | None, digits: int = 3) -> str:
    """``mean ± std``; the value alone for a single seed (it has no spread)."""
    if stat is None:
        return "–"
    if stat["n"] < 2:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _gap_cell(gap: dict) -> str:
    """``+gap (+in std)``, or ``+gap (1 seed)`` where there is no spread to measure it against."""
    spread = "1 seed" if math.isnan(gap["in_std"]) else f"{gap['in_std']:+.1f}"
    return f"{gap['gap']:+.3f} ({spread})"


def _baseline(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


DIGITS = {"best_epoch": 1, "r1": 3, "mr": 1, "delta_mr_image": 2, "delta_mr_text": 2}  # table cell precision
GAP_KEYS = ("held_out", "perturbed", "seen_corruptions", "unseen_corruptions", "clean")


@dataclass(frozen=True)
class Section:
    """One summary table: a protocol (``vqa`` full fine-tuning, ``probe`` frozen backbone) over some hold-outs."""

    title: str
    protocol: str
    holdouts: tuple[str, ...] | None = None  # None: every hold-out of the job, averaged


BLIND = "trained blind"  # the baseline name of the best blind run (PROTOCOLS["blind"] of the jobs)
BEST_BLIND = "best blind"  # the better of the trained blind model and the text classifier, per column


def bar(baselines: dict) -> str:
    """The baseline a variant must beat to be read: the best blind score (the trained blind model or the text
    classifier on the questions, whichever is higher) where the jobs ran a blind model, else the exact-question
    lookup."""
    return BEST_BLIND if BEST_BLIND in baselines else "question-only"


def measurable(stats: dict, baselines: dict) -> bool:
    """Whether a variant's numbers can be read at all: its mean clean accuracy is above the in-domain
    :func:`bar` (the best blind score: the same recipe with the image removed, or the text classifier) and, where
    a domain was held out, its held-out accuracy above the held-out one. A model that does not beat a blind one has
    not shown that it uses the image; gaps between such models measure noise, not methods."""
    in_domain, held_out = baselines.get(bar(baselines), (math.nan, math.nan))
    if "clean" not in stats or not stats["clean"]["mean"] > in_domain:
        return False
    return "held_out" not in stats or math.isnan(held_out) or stats["held_out"]["mean"] > held_out


def markdown(summary: dict, baselines: dict | None = None) -> str:
    """Tables: VQA headline numbers, retrieval (when measured), and the gaps to the controls. A variant that
    does not beat the trained blind model (or, without one, the question-only lookup; :func:`measurable`) is
    marked, and its gaps are not given."""
    lines = []
    stats = summary["variants"]
    ok = {v: measurable(m, baselines or {}) for v, m in stats.items()}
    n = {v: max((s["n"] for s in m.values()), default=0) for v, m in stats.items()}
    headers = ["variant", "seeds", *(t for _, t in VQA_METRICS), f"beats {bar(baselines or {})}"]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for v, m in stats.items():
        cells = (_cell(m.get(k), DIGITS.get(k, 3)) for k, _ in VQA_METRICS)
        lines.append("| " + " | ".join([v, str(n[v]), *cells, "yes" if ok[v] else "**no: not measurable**"]) + " |")
    if baselines:
        lines += ["", "Baselines on the same items (in-domain / held-out): " + ", ".join(
            f"{name} {_baseline(vals[0])} / {_baseline(vals[1])}" for name, vals in baselines.items())]
    if any("r1" in m for m in stats.values()):
        headers = ["variant", *(t for _, t in RETRIEVAL_METRICS)]
        lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for v, m in stats.items():
            lines.append("| " + " | ".join([v, *(_cell(m.get(k), DIGITS[k]) for k, _ in RETRIEVAL_METRICS)]) + " |")
    if summary["gaps"]:
        headers = ["variant", "vs", *(f"{dict(VQA_METRICS)[k]}: gap (in std)" for k in GAP_KEYS)]
        lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for v, per in summary["gaps"].items():
            for c, gaps in per.items():
                if not (ok[v] and ok.get(c, False)):
                    cells = ["not measurable"] * len(GAP_KEYS)
                else:
                    cells = [_gap_cell(gaps[k]) if k in gaps else "–" for k in GAP_KEYS]
                lines.append("| " + " | ".join([v, c, *cells]) + " |")
        lines += ["", "Gap = mean(variant) − mean(control); in std = gap / the larger of the two seed std. "
                  "The target is > +2 on held-out domain and perturbed accuracy against both controls."]
    return "\n".join(lines) + "\n"


LOOKUPS = ("majority", "question_only", "same_image_lookup", "text_classifier")  # evaluation.baselines


def baselines_of(results: list[dict], protocol: str = "vqa",
                 holdouts: tuple[str, ...] | None = None) -> dict[str, tuple[float, float]]:
    """Baseline accuracy (in-domain, held-out) averaged over the hold-outs: the lookups and the text classifier
    over the seeds of one variant (they depend on the split, not on the pre-training), and the trained blind model
    (:data:`BLIND`): the jobs' ``blind`` protocol, the variant whose blind runs score best on the mean in-domain
    accuracy over its seeds."""
    ok = [r for r in results if "error" not in r and r.get(protocol)]
    if not ok:
        return {}
    runs = [r for r in ok if r["job"]["variant"] == ok[0]["job"]["variant"]]
    heads = [v for r in runs for h, v in r.get(protocol, {}).items() if holdouts is None or h in holdouts]
    out = {}
    for name in LOOKUPS:
        iid = [v["baselines"]["in_domain"][name] for v in heads if name in v["baselines"]["in_domain"]]
        ood = [v["baselines"]["held_out"][name] for v in heads
               if v["baselines"]["held_out"] and name in v["baselines"]["held_out"]]
        if iid:
            out[name.replace("_", "-")] = (float(np.mean(iid)), float(np.mean(ood)) if ood else float("nan"))
    blind = collect(results, "blind", holdouts)
    if blind:
        best = max(blind, key=lambda v: np.mean(blind[v]["clean"]))
        held_out = blind[best].get("held_out")
        out[BLIND] = (float(np.mean(blind[best]["clean"])), float(np.mean(held_out)) if held_out else float("nan"))
        text = out.get("text-classifier", (float("nan"), float("nan")))
        out[BEST_BLIND] = tuple(float(np.nanmax([a, b])) if not (math.isnan(a) and math.isnan(b)) else float("nan")
                                for a, b in zip(out[BLIND], text))
    return out


def plot(summaries: dict[str, dict], path: Path, title: str) -> None:
    """One panel per section: grouped bars (mean ± std, seeds as dots) of the headline VQA metrics per variant,
    the baseline to beat (:func:`bar`) dashed over each group (held-out baseline over the held-out group)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = {name: s for name, s in summaries.items() if s["variants"]}
    keys = [k for k in ("clean", "seen_corruptions", "unseen_corruptions", "perturbed_text", "held_out",
                        "image_shuffled") if any(k in m for s in summaries.values() for m in s["variants"].values())]
    variants = list(dict.fromkeys(v for s in summaries.values() for v in s["variants"]))  # a variant some section ran
    width = 0.8 / len(variants)
    fig, axes = plt.subplots(len(summaries), 1, figsize=(1.6 * len(keys) + 2, 3.4 * len(summaries) + 0.8),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, summary) in zip(axes[:, 0], summaries.items()):
        for i, v in enumerate(variants):
            xs = np.arange(len(keys)) + (i - (len(variants) - 1) / 2) * width
            stats = [summary["variants"].get(v, {}).get(k) for k in keys]
            means = [s["mean"] if s else np.nan for s in stats]
            stds = [s["std"] if s else 0 for s in stats]
            ax.bar(xs, means, width, yerr=stds, capsize=2, label=v, color=colours(i), alpha=0.85)
            for x, s in zip(xs, stats):
                if s:
                    ax.scatter([x] * len(s["values"]), s["values"], s=8, color="black", zorder=3)
        reference = bar(summary.get("baselines", {}))
        in_domain, held_out = summary.get("baselines", {}).get(reference, (np.nan, np.nan))
        for j, k in enumerate(keys):  # the baseline the bars must beat to be measurable
            ax.hlines(held_out if k == "held_out" else in_domain, j - 0.45, j + 0.45, colors="black",
                      linestyles="dashed", linewidth=1, label=reference if j == 0 else None, zorder=4)
        ax.set_xticks(np.arange(len(keys)), [dict(VQA_METRICS)[k] for k in keys])
        ax.set_ylabel("VQA accuracy")
        ax.set_title(name, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].legend(fontsize=8, ncols=min(len(variants) + 1, 7), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(results: list[dict], out: Path, order: list[str], title: str, command: str,
                  sections: tuple[Section, ...] = (Section("Full fine-tuning", "vqa"),
                                                   Section("Probe (frozen backbone)", "probe"),
                                                   Section("LP-FT (the probe, then full fine-tuning)", "lpft")),
                  publish: Path | None = None) -> Path:
    """``summary.json``, ``summary.md`` and ``summary.png`` in ``out``, one table set per section that has results;
    returns the Markdown path. ``publish`` (a path stem such as ``docs/benchmarks/real``): the plot and the JSON of
    its tables' numbers (mean, std, per-seed values per variant and section, the baselines, the command) are also
    written there as ``STEM.png`` and ``STEM.json``."""
    summaries = {s.title: {**aggregate(results, order, s.protocol, s.holdouts),
                           "baselines": baselines_of(results, s.protocol, s.holdouts)} for s in sections}
    summaries = {title: summary for title, summary in summaries.items() if summary["variants"]}
    for summary in summaries.values():
        summary["measurable"] = {v: measurable(m, summary["baselines"]) for v, m in summary["variants"].items()}
    if not summaries:
        raise SystemExit(f"every job failed; nothing to summarise (tracebacks above, runs under {out / 'runs'})")
    failures = [f"{r['job']['variant']} seed {r['job']['seed']}" for r in results if "error" in r]
    document = {"command": command, "failed_jobs": failures, "sections": summaries,
                "wall_seconds": {"jobs": [r.get("seconds") for r in results if "error" not in r]}}
    (out / "summary.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    plot(summaries, out / "summary.png", title)
    text = f"# {title}\n\nCommand: `{command}`\n"
    for name, summary in summaries.items():
        if summary["variants"]:
            text += f"\n## {name}\n\n" + markdown(summary, summary["baselines"])
    if failures:
        text += f"\nFailed jobs (see their tracebacks above): {', '.join(failures)}\n"
    path = out / "summary.md"
    path.write_text(text, encoding="utf-8")
    if publish is not None:
        publish.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "summary.png", publish.with_suffix(".png"))
        shutil.copyfile(out / "summary.json", publish.with_suffix(".json"))
    return path
