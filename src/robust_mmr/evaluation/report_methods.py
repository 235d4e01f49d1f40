"""The method benchmarks' summary: mean ± std over pre-training seeds of every variant's headline numbers
(:mod:`robust_mmr.experiments.job`), the gaps of Robust-MMR variants to the two controls in units of seed std,
the baselines (the trained blind model, the lookups, the text classifier), and which variants can be read at all
(:func:`measurable`: above the trained blind model).
Written as ``summary.json``, ``summary.md`` and ``summary.png`` by :func:`write_summary`; :func:`merge_documents`
joins such summaries over different seeds (run in different sessions or on different machines) into one.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robust_mmr.errors import InputError
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
    seeds: dict[str, list[int]] = {}
    for r in results:  # a job counts where it has this protocol on these hold-outs, not on others only
        if "error" not in r and _metric(r, "clean", protocol, holdouts) is not None:
            seeds.setdefault(r["job"]["variant"], []).append(r["job"]["seed"])
    return statistics({v: values[v] for v in order if v in values}, {v: sorted(s) for v, s in seeds.items()})


def statistics(values: dict[str, dict[str, list[float]]], seeds: dict[str, list[int]]) -> dict:
    """The summary of per-seed ``values`` (variant -> metric -> values, in seed order): per variant and metric
    mean, std, n and the values, the seeds, and every Robust-MMR variant's gaps to each control."""
    summary: dict = {"variants": {v: {k: stat_of(x) for k, x in m.items()} for v, m in values.items()},
                     "seeds": {v: seeds.get(v, []) for v in values}, "gaps": {}}
    for v in values:
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


def summarise(results: list[dict], order: list[str], command: str, sections: tuple[Section, ...]) -> dict:
    """The summary document of finished job results: per section that has results, the statistics
    (:func:`aggregate`), the baselines and which variants are measurable; the command, the failed jobs and the
    jobs' wall times."""
    summaries = {s.title: {**aggregate(results, order, s.protocol, s.holdouts),
                           "baselines": baselines_of(results, s.protocol, s.holdouts)} for s in sections}
    summaries = {title: summary for title, summary in summaries.items() if summary["variants"]}
    for summary in summaries.values():
        summary["measurable"] = {v: measurable(m, summary["baselines"]) for v, m in summary["variants"].items()}
    failures = [f"{r['job']['variant']} seed {r['job']['seed']}" for r in results if "error" in r]
    return {"command": command, "failed_jobs": failures, "sections": summaries,
            "wall_seconds": {"jobs": [r.get("seconds") for r in results if "error" not in r]}}


def headline(document: dict, section: str, label: str, items: int,
             lookup: tuple[str, str] = ("same-image-lookup", "same-image lookup")) -> str:
    """One line with each variant's mean ± std clean accuracy in ``section`` (Robust-MMR variants first), the
    trained blind model's and the ``lookup``'s (baseline key, display name), e.g. ``Headline, VQA-RAD standard
    split (451 questions, 3 seeds): robust-mmr 0.640 ± 0.005; mmr …; mmr-aug …; trained blind …; same-image
    lookup 0.592``. A variant with fewer seeds than the most says how many."""
    summary = document["sections"][section]
    n = max(m["clean"]["n"] for m in summary["variants"].values())
    parts = [f"{v} {_cell(m['clean'])}" + ("" if m["clean"]["n"] == n else f" ({_seeds(m['clean']['n'])})")
             for v, m in sorted(summary["variants"].items(), key=lambda item: item[0] in CONTROLS)]
    if summary.get("blind"):
        parts.append(f"{BLIND} {_cell(summary['blind'])}")
    elif BLIND in summary["baselines"]:
        parts.append(f"{BLIND} {summary['baselines'][BLIND][0]:.3f}")
    if lookup[0] in summary["baselines"]:
        parts.append(f"{lookup[1]} {summary['baselines'][lookup[0]][0]:.3f}")
    return f"Headline, {label} ({items} questions, {_seeds(n)}): " + "; ".join(parts)


def _seeds(n: int) -> str:
    return f"{n} seed" + "s" * (n != 1)


def seeds_of(document: dict) -> dict[str, list[int]]:
    """Per section, per variant: the pre-training seeds of a summary document. Documents written before the
    ``seeds`` entry existed give them by their command's ``--seeds`` less their failed jobs."""
    stated = re.search(r"--seeds((?: \d+)+)", document["command"])
    command_seeds = [int(s) for s in stated.group(1).split()] if stated else []
    out = {}
    for title, summary in document["sections"].items():
        out[title] = summary.get("seeds") or {
            v: sorted(s for s in command_seeds if f"{v} seed {s}" not in document["failed_jobs"])
            for v in summary["variants"]}
    return out


def agreed_value(documents: list[dict], key: str, given=None, option: str = "the command line"):
    """The one value of ``key`` that the summary documents record (documents without it are silent) and ``given``
    (a value from the command line ``option``, None: not given) agree on; InputError where they differ or none
    gives it."""
    values = {d[key] for d in documents if key in d} | ({given} if given is not None else set())
    if len(values) != 1:
        raise InputError(f"{key}: the inputs and {option} disagree ({sorted(values)})" if values else
                         f"{key} is recorded in no input (a summary written before it was): give it with {option}")
    return values.pop()


def merge_documents(documents: list[dict], command: str,
                    blind: dict[str, list[float]] | None = None) -> dict:
    """One summary document from summary documents of the same benchmark over different seeds (e.g. seeds run in
    different sessions): per section that every document has, each variant's per-seed values joined in seed order,
    then statistics, gaps and measurability recomputed. The lookups and the text classifier depend on the split,
    not on the pre-training, so documents must agree on them; each document's own trained blind model is kept as
    ``trained blind of input N``. ``blind``: section title -> per-seed accuracies of the trained blind model to use
    as :data:`BLIND` (e.g. the fine-tuning recipe's blind twin over 3 seeds); the best blind score is the highest
    of the blind models and the text classifier. Raises :class:`InputError` on a seed given twice or on
    disagreeing lookups."""
    if not documents:
        raise InputError("no summary documents to merge")
    seeds = [seeds_of(d) for d in documents]
    titles = [t for t in documents[0]["sections"] if all(t in d["sections"] for d in documents)]
    if not titles:
        raise InputError("the documents share no section (merge summaries of the same benchmark and split)")
    sections = {}
    for title in titles:
        values: dict[str, dict[int, dict[str, float]]] = {}
        for document, doc_seeds in zip(documents, seeds):
            for v, stats in document["sections"][title]["variants"].items():
                for i, seed in enumerate(doc_seeds[title][v]):
                    if seed in values.setdefault(v, {}):
                        raise InputError(f"{title}: {v} seed {seed} is in two documents; merge disjoint seeds")
                    values[v][seed] = {k: s["values"][i] for k, s in stats.items() if len(s["values"]) > i}
        ordered = {v: sorted(per) for v, per in values.items()}
        summary = statistics(
            {v: {k: [values[v][s][k] for s in ordered[v] if k in values[v][s]]
                 for k in dict.fromkeys(k for s in ordered[v] for k in values[v][s])} for v in values},
            ordered)
        summary["baselines"] = _merged_baselines([d["sections"][title] for d in documents],
                                                 (blind or {}).get(title), title)
        if (blind or {}).get(title):
            summary["blind"] = stat_of(blind[title])
        summary["measurable"] = {v: measurable(m, summary["baselines"]) for v, m in summary["variants"].items()}
        sections[title] = summary
    return {"command": command, "merged_from": [d["command"] for d in documents],
            "failed_jobs": [f for d in documents for f in d["failed_jobs"]], "sections": sections,
            "wall_seconds": {"jobs": [t for d in documents for t in d["wall_seconds"]["jobs"]]}}


def _merged_baselines(summaries: list[dict], blind: list[float] | None, title: str) -> dict[str, tuple[float, float]]:
    """The lookups of the first summary (checked equal in the others), each summary's trained blind model (by its
    input's position), ``blind`` as the trained blind model, and the best blind score."""
    out: dict[str, tuple[float, float]] = {}
    for name, value in summaries[0]["baselines"].items():
        if name in (BLIND, BEST_BLIND):
            continue
        for other in summaries[1:]:
            if not np.allclose(other["baselines"].get(name, (np.nan, np.nan)), value, equal_nan=True):
                raise InputError(f"{title}: the documents disagree on the {name} baseline (a different split or "
                                 "evaluation items?); merge summaries of the same benchmark only")
        out[name] = tuple(value)
    for i, summary in enumerate(summaries, 1):
        if BLIND in summary["baselines"]:
            out[f"{BLIND} of input {i}"] = tuple(summary["baselines"][BLIND])
    if blind:
        out[BLIND] = (float(np.mean(blind)), math.nan)
    blinds = [v for k, v in out.items() if k.startswith(BLIND) or k == "text-classifier"]
    if blinds:
        out[BEST_BLIND] = tuple(float(np.nanmax(column)) if not np.all(np.isnan(column)) else math.nan
                                for column in np.array(blinds, dtype=float).T)
    return out


def write_document(document: dict, out: Path, title: str, publish: Path | None = None,
                   headline_line: str | None = None) -> Path:
    """``summary.json``, ``summary.md`` and ``summary.png`` of a summary document in ``out`` (the headline line
    first in the Markdown where given); returns the Markdown path. ``publish`` (a path stem such as
    ``docs/benchmarks/real``): the plot and the JSON are also written there as ``STEM.png`` and ``STEM.json``."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = document["sections"]
    (out / "summary.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    plot(summaries, out / "summary.png", title)
    text = f"# {title}\n\nCommand: `{document['command']}`\n"
    if headline_line:
        text += f"\n{headline_line}\n"
    for name, summary in summaries.items():
        text += f"\n## {name}\n\n" + markdown(summary, summary["baselines"])
    if document["failed_jobs"]:
        text += f"\nFailed jobs (see their tracebacks above): {', '.join(document['failed_jobs'])}\n"
    path = out / "summary.md"
    path.write_text(text, encoding="utf-8")
    if publish is not None:
        publish.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "summary.png", publish.with_suffix(".png"))
        shutil.copyfile(out / "summary.json", publish.with_suffix(".json"))
    return path


def write_summary(results: list[dict], out: Path, order: list[str], title: str, command: str,
                  sections: tuple[Section, ...] = (Section("Full fine-tuning", "vqa"),
                                                   Section("Probe (frozen backbone)", "probe"),
                                                   Section("LP-FT (the probe, then full fine-tuning)", "lpft")),
                  publish: Path | None = None) -> Path:
    """:func:`summarise` the results and :func:`write_document` it; returns the Markdown path."""
    document = summarise(results, order, command, sections)
    if not document["sections"]:
        raise SystemExit(f"every job failed; nothing to summarise (tracebacks above, runs under {out / 'runs'})")
    return write_document(document, out, title, publish)
