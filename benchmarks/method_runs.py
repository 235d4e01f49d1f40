"""Shared machinery of the method benchmarks (``method_synthetic.py``, ``method_real.py``).

One *job* = one pre-training variant × one seed: pre-train, fine-tune VQA once per held-out domain
(and, optionally, ITC retrieval), evaluate every protocol, and keep the headline numbers in
``<out>/runs/<variant>/seed<k>/result.json`` (a finished job is skipped when the script is run
again). Jobs run in parallel processes; :func:`aggregate` turns the results into mean ± std tables
over seeds, the gaps between Robust-MMR variants and the two controls, and a plot.

Variants are data: a name and the config overrides that make it. The six built in are the three
methods and Robust-MMR with each of its three components removed (``../shared/DESIGN.md`` §1.2); ``--variant
NAME=KEY=VALUE,KEY=VALUE`` adds more (a sweep point, say).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from robust_mmr.experiment import log

ROBUST = "objective.method=robust-mmr"
VARIANTS: dict[str, tuple[str, ...]] = {
    "mmr": ("objective.method=mmr",),
    "mmr-aug": ("objective.method=mmr-aug",),
    "robust-mmr": (ROBUST,),
    "no-aware": (ROBUST, "objective.aware_masking=false"),
    "no-dc": (ROBUST, "objective.domain_consistency=false"),
    "no-mr": (ROBUST, "objective.modality_resilience=false"),
}
CONTROLS = ("mmr", "mmr-aug")
TEXT_PERTURBATIONS = ("keyboard_typo", "synonym", "word_drop", "abbreviate")
SEVERITIES = (1, 3, 5)
# Backbones (on top of the tiny preset): the demo's (2 + 2 encoder layers, 1 fusion layer), or tiny itself.
BACKBONES: dict[str, tuple[str, ...]] = {
    "demo": ("model.vision.layers=2", "model.text.layers=2", "model.fusion.layers=1", "model.decoder.layers=1",
             "model.decoder.read_layer=1"),
    "tiny": (),
}

# Headline numbers per job, in table order: (key, column title).
VQA_METRICS = (("clean", "clean"), ("perturbed", "perturbed (all)"), ("seen_corruptions", "training corr."),
               ("unseen_corruptions", "eval-only corr."), ("perturbed_text", "text pert."),
               ("image_removed", "image removed"), ("text_removed", "text removed"),
               ("held_out", "held-out domain"), ("held_out_closed", "held-out closed"),
               ("held_out_open", "held-out open"), ("best_epoch", "epoch kept"))
RETRIEVAL_METRICS = (("r1", "R@1 (clean)"), ("mr", "MR (clean)"), ("delta_mr_image", "ΔMR image"),
                     ("delta_mr_text", "ΔMR text"))


@dataclass(frozen=True)
class Job:
    variant: str
    overrides: tuple[str, ...]  # model.*, objective.*, train.* for pre-training (seed added by the job)
    seed: int
    pretrain_data: str
    task_data: str
    out: str
    holdouts: tuple[str, ...]  # KEY=VALUE per VQA fine-tuning run
    finetune: dict  # FinetuneConfig fields (task and seed set by the job)
    corruptions: tuple[str, ...]
    text_perturbations: tuple[str, ...]
    severities: tuple[int, ...]
    max_eval_items: int
    retrieval: bool = False
    threads: int = 1


# Job fields that do not change a job's results: a finished job is reused whatever they are.
NEUTRAL_FIELDS = ("threads", "out", "pretrain_data", "task_data")


PROTOCOLS = (("vqa", False), ("probe", True))  # result key, frozen backbone: full fine-tuning and the probe
FINETUNE_SEED_OFFSET = 100  # fine-tuning seed = 100 + pre-training seed: its own stream, not the same numbers


def holdout_slug(holdout: str) -> str:
    """Folder-name form of a hold-out (``""``: the dataset's standard split)."""
    return holdout.replace("=", "-") if holdout else "standard"


def run_job(job: Job) -> dict:
    """Run one job (or read its finished result); returns the result dict."""
    import torch

    from robust_mmr.config import load_config
    from robust_mmr.evaluation.protocols import evaluate_run
    from robust_mmr.experiment import quiet_lightning
    from robust_mmr.tasks.config import FinetuneConfig
    from robust_mmr.tasks.data import Holdout
    from robust_mmr.tasks.finetune import run_finetuning
    from robust_mmr.tasks.retrieval import run_retrieval_finetuning
    from robust_mmr.training.pretrain import run_pretraining

    root = Path(job.out)
    finished = read_finished(job)
    if finished is not None:
        return finished
    root.mkdir(parents=True, exist_ok=True)
    (root / "job.json").write_text(json.dumps(asdict(job), indent=2) + "\n", encoding="utf-8")
    torch.set_num_threads(job.threads)
    quiet_lightning()
    start = time.perf_counter()
    cfg = load_config("tiny", [*job.overrides, f"train.seed={job.seed}"])
    pre = root / "pretrain"
    summary = run_pretraining(cfg, Path(job.pretrain_data), pre, progress=False)
    result: dict = {"job": asdict(job), "pretrain": {"seconds": summary["seconds"],
                                                    "final_loss": summary["final_metrics"].get("train/loss")}}
    evaluation = dict(corruptions=list(job.corruptions), text_perts=list(job.text_perturbations),
                      severities=job.severities, max_items=job.max_eval_items, progress=False)
    data = Path(job.task_data)
    ft_seed = FINETUNE_SEED_OFFSET + job.seed
    for key, frozen in PROTOCOLS:
        result[key] = {}
        for holdout in job.holdouts:
            ft_dir = root / f"{key}-{holdout_slug(holdout)}"
            ft_cfg = FinetuneConfig(**{**job.finetune, "task": "vqa", "seed": ft_seed, "freeze_backbone": frozen})
            ft = run_finetuning(ft_cfg, data, ft_dir, init=str(pre), holdout=Holdout.parse(holdout) if holdout else None,
                                progress=False)
            full = evaluate_run(ft_dir, data, seed=0, **evaluation)
            (ft_dir / "results.json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
            result[key][holdout] = {**vqa_headline(full), **fit_headline(ft)}
    if job.retrieval:
        for key, frozen in PROTOCOLS:
            rt_dir = root / ("retrieve" if not frozen else "probe-retrieve")
            rt_cfg = FinetuneConfig(**{**job.finetune, "task": "retrieve", "seed": ft_seed, "freeze_backbone": frozen})
            ft = run_retrieval_finetuning(rt_cfg, data, rt_dir, init=str(pre), progress=False)
            full = evaluate_run(rt_dir, data, protocols=("clean", "perturbed"), seed=0, **evaluation)
            (rt_dir / "results.json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
            result["retrieval" if not frozen else "probe_retrieval"] = {**retrieval_headline(full), **fit_headline(ft)}
    result["seconds"] = round(time.perf_counter() - start, 1)
    (root / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def fit_headline(summary: dict) -> dict:
    """How a fine-tuning run converged: the epoch kept (1-based) and the epochs run."""
    return {"best_epoch": summary["best_epoch"] + 1, "epochs_run": summary["epochs_run"]}


def vqa_headline(results: dict) -> dict:
    """The headline numbers of one VQA evaluation (see :data:`VQA_METRICS`)."""
    from robust_mmr.perturbations.image.registry import image_corruptions

    unseen = set(image_corruptions(role="eval"))
    pert = results["perturbed"]
    image_cells = [c for c in pert["cells"] if c["target"] == "image"]
    unseen_cells = [c["accuracy"] for c in image_cells if c["image"][0] in unseen]
    seen_cells = [c["accuracy"] for c in image_cells if c["image"][0] not in unseen]
    cross = results.get("cross_domain", {})
    head = {
        "clean": results["clean"]["overall"], "clean_open": results["clean"].get("open"),
        "clean_closed": results["clean"].get("closed"),
        "perturbed": pert["mean_accuracy"],
        "perturbed_image": pert.get("image", {}).get("mean_accuracy"),
        "seen_corruptions": float(np.mean(seen_cells)) if seen_cells else None,
        "unseen_corruptions": float(np.mean(unseen_cells)) if unseen_cells else None,
        "perturbed_text": pert.get("text", {}).get("mean_accuracy"),
        "image_removed": results["missing"]["image_removed"], "text_removed": results["missing"]["text_removed"],
        "held_out": cross.get("ood", {}).get("overall"), "held_out_open": cross.get("ood", {}).get("open"),
        "held_out_closed": cross.get("ood", {}).get("closed"), "domain_rr": cross.get("rr"),
        "n_test": results["n_test"], "n_held_out": cross.get("n_test"),
        "baselines": {"in_domain": results["clean"]["baselines"], "held_out": cross.get("baselines")},
    }
    # accuracy over an empty subset (no open questions, say) is NaN: report it as absent
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in head.items()}


def retrieval_headline(results: dict) -> dict:
    clean = results["clean"]
    pert = results["perturbed"]
    return {"r1": float(np.mean([clean[d]["r1"] for d in ("i2t", "t2i")])),
            "mr": float(np.mean([clean[d]["mean_rank"] for d in ("i2t", "t2i")])),
            "delta_mr_image": pert.get("image", {}).get("delta_mr", {}).get("mean"),
            "delta_mr_text": pert.get("text", {}).get("delta_mr", {}).get("mean"),
            "n_test": results["n_test"]}


def _run_logged(job: Job) -> dict:
    try:
        return run_job(job)
    except Exception:  # keep the other jobs going; the failure is reported with its traceback
        return {"job": asdict(job), "error": traceback.format_exc()}


def read_finished(job: Job) -> dict | None:
    """The result of ``job`` when it has finished (``result.json`` exists), else None. A run begun or
    finished with other settings (any field but :data:`NEUTRAL_FIELDS`) stops the script rather than
    being mixed in or resumed from (its ``job.json`` is written when it starts)."""
    root = Path(job.out)
    wanted = _comparable(asdict(job))
    for path in (root / "job.json", root / "result.json"):
        if path.is_file():
            found = json.loads(path.read_text())
            found = _comparable(found.get("job", found))
            differs = sorted(k for k in wanted if k not in NEUTRAL_FIELDS and found.get(k) != wanted[k])
            if differs:
                raise SystemExit(f"{path} was made with other settings ({', '.join(differs)} differ); "
                                 "use another --out or remove that run")
    path = root / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _comparable(job: dict) -> dict:
    """A job spec as JSON values, its overrides as KEY -> VALUE (the last setting of a key wins, as in
    ``load_config``), so the order they were listed in does not matter."""
    out = json.loads(json.dumps(job))
    out["overrides"] = dict(item.split("=", 1) for item in out.get("overrides", []))
    return out


def finished_results(jobs: list[Job]) -> list[dict]:
    """The results of the jobs that have finished, their headlines recomputed from each run's saved
    ``results.json`` (so a summary follows this file's headline definitions, whatever made the job)."""
    return [refresh_headlines(r, Path(job.out)) for job, r in zip(jobs, map(read_finished, jobs)) if r is not None]


def refresh_headlines(result: dict, root: Path) -> dict:
    """``result`` with every VQA headline recomputed from ``<run>/results.json`` where that file exists."""
    for key, _ in PROTOCOLS:
        for holdout, head in result.get(key, {}).items():
            path = root / f"{key}-{holdout_slug(holdout)}" / "results.json"
            if path.is_file():
                head.update(vqa_headline(json.loads(path.read_text(encoding="utf-8"))))
    return result


def _result_of(future, job: Job) -> dict:
    try:
        return future.result()
    except Exception:  # the worker process itself died (out of memory, killed): the others go on
        return {"job": asdict(job), "error": traceback.format_exc()}


def run_jobs(jobs: list[Job], parallel: int) -> list[dict]:
    """Run ``jobs`` in ``parallel`` processes (spawned: safe with CUDA), logging each as it ends."""
    start = time.perf_counter()
    done = finished_results(jobs)  # checks every finished or begun job's settings before anything runs
    log(f"{len(jobs)} jobs ({len(done)} already finished), {parallel} at a time")
    results = []
    if parallel <= 1:
        finished = (_run_logged(job) for job in jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=parallel, mp_context=get_context("spawn"))
        futures = {pool.submit(_run_logged, job): job for job in jobs}
        finished = (_result_of(f, futures[f]) for f in as_completed(futures))
    for i, result in enumerate(finished, 1):
        label = f"{result['job']['variant']} seed {result['job']['seed']}"
        if "error" in result:
            log(f"[{i}/{len(jobs)}] {label} FAILED:\n{result['error']}")
        else:
            heads = "; ".join(f"{key} {holdout_slug(h)}: clean {v['clean']:.3f} held-out {_num(v['held_out'])} "
                              f"perturbed {v['perturbed']:.3f} (epoch {v['best_epoch']}/{v['epochs_run']})"
                              for key, _ in PROTOCOLS for h, v in result.get(key, {}).items())
            log(f"[{i}/{len(jobs)}] {label} ({result.get('seconds', 0):.0f} s): {heads}")
        results.append(result)
    log(f"all jobs done in {time.perf_counter() - start:.0f} s")
    return results


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------- aggregation


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


RETRIEVAL_KEY = {"vqa": "retrieval", "probe": "probe_retrieval"}  # protocol → its retrieval result


def _metric(result: dict, key: str, protocol: str, holdouts: tuple[str, ...] | None) -> float | None:
    """A VQA headline of ``protocol`` averaged over the job's ``holdouts`` (None: all), or a retrieval headline."""
    if key in dict(RETRIEVAL_METRICS):
        return result.get(RETRIEVAL_KEY[protocol], {}).get(key)
    values = [v[key] for h, v in result.get(protocol, {}).items()
              if (holdouts is None or h in holdouts) and v.get(key) is not None]
    return float(np.mean(values)) if values else None


def collect(results: list[dict], protocol: str = "vqa",
            holdouts: tuple[str, ...] | None = None) -> dict[str, dict[str, list[float]]]:
    """variant -> metric -> per-seed values (failed jobs left out)."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in sorted((r for r in results if "error" not in r), key=lambda r: r["job"]["seed"]):
        per = table.setdefault(r["job"]["variant"], {})
        for key, _ in (*VQA_METRICS, *RETRIEVAL_METRICS):
            value = _metric(r, key, protocol, holdouts)
            if value is not None:
                per.setdefault(key, []).append(value)
    return table


def gap_in_std(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) − mean(b), that gap in units of the larger of the two sample std)."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    spread, gap = max(sa, sb), ma - mb
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
    if stat is None:
        return "–"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


DIGITS = {"best_epoch": 1, "r1": 3, "mr": 1, "delta_mr_image": 2, "delta_mr_text": 2}  # table cell precision
GAP_KEYS = ("held_out", "perturbed", "seen_corruptions", "unseen_corruptions", "clean")


@dataclass(frozen=True)
class Section:
    """One summary table: a protocol (``vqa`` full fine-tuning, ``probe`` frozen backbone) over some hold-outs."""

    title: str
    protocol: str
    holdouts: tuple[str, ...] | None = None  # None: every hold-out of the job, averaged


def measurable(stats: dict, baselines: dict) -> bool:
    """Whether a variant's numbers can be read at all: its mean clean accuracy is above the in-domain
    question-only baseline and, where a domain was held out, its held-out accuracy above the held-out one.
    A model that does not beat the question-only prior has not learned to use the image; gaps between such
    models measure noise, not methods."""
    in_domain, held_out = baselines.get("question-only", (math.nan, math.nan))
    if "clean" not in stats or not stats["clean"]["mean"] > in_domain:
        return False
    return "held_out" not in stats or math.isnan(held_out) or stats["held_out"]["mean"] > held_out


def markdown(summary: dict, baselines: dict | None = None) -> str:
    """Tables: VQA headline numbers, retrieval (when measured), and the gaps to the controls. A variant that
    does not beat the question-only baseline (:func:`measurable`) is marked, and its gaps are not given."""
    lines = []
    stats = summary["variants"]
    ok = {v: measurable(m, baselines or {}) for v, m in stats.items()}
    n = {v: max((s["n"] for s in m.values()), default=0) for v, m in stats.items()}
    headers = ["variant", "seeds", *(t for _, t in VQA_METRICS), "beats question-only"]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for v, m in stats.items():
        cells = (_cell(m.get(k), DIGITS.get(k, 3)) for k, _ in VQA_METRICS)
        lines.append("| " + " | ".join([v, str(n[v]), *cells, "yes" if ok[v] else "**no: not measurable**"]) + " |")
    if baselines:
        lines += ["", "Baselines on the same items (in-domain / held-out): " + ", ".join(
            f"{name} {vals[0]:.3f} / {vals[1]:.3f}" for name, vals in baselines.items())]
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
                    cells = [f"{gaps[k]['gap']:+.3f} ({gaps[k]['in_std']:+.1f})" if k in gaps else "–" for k in GAP_KEYS]
                lines.append("| " + " | ".join([v, c, *cells]) + " |")
        lines += ["", "Gap = mean(variant) − mean(control); in std = gap / the larger of the two seed std. "
                  "The target is > +2 on held-out domain and perturbed accuracy against both controls."]
    return "\n".join(lines) + "\n"


def baselines_of(results: list[dict], protocol: str = "vqa",
                 holdouts: tuple[str, ...] | None = None) -> dict[str, tuple[float, float]]:
    """Majority and question-only accuracy (in-domain, held-out), averaged over the hold-outs and the seeds of
    one variant (they depend on the fine-tuning seed's validation carve-out, not on the pre-training)."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return {}
    runs = [r for r in ok if r["job"]["variant"] == ok[0]["job"]["variant"]]
    heads = [v for r in runs for h, v in r.get(protocol, {}).items() if holdouts is None or h in holdouts]
    out = {}
    for name in ("majority", "question_only"):
        iid = [v["baselines"]["in_domain"][name] for v in heads]
        ood = [v["baselines"]["held_out"][name] for v in heads if v["baselines"]["held_out"]]
        out[name.replace("_", "-")] = (float(np.mean(iid)) if iid else float("nan"),
                                       float(np.mean(ood)) if ood else float("nan"))
    return out


def plot(summaries: dict[str, dict], path: Path, title: str) -> None:
    """One panel per section: grouped bars (mean ± std, seeds as dots) of the headline VQA metrics per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = {name: s for name, s in summaries.items() if s["variants"]}
    first = next(iter(summaries.values()))
    keys = [k for k in ("clean", "seen_corruptions", "unseen_corruptions", "perturbed_text", "held_out",
                        "image_removed") if any(k in m for s in summaries.values() for m in s["variants"].values())]
    variants = list(first["variants"])
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
        ax.set_xticks(np.arange(len(keys)), [dict(VQA_METRICS)[k] for k in keys])
        ax.set_ylabel("VQA accuracy")
        ax.set_title(name, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].legend(fontsize=8, ncols=min(len(variants), 6), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(results: list[dict], out: Path, order: list[str], title: str, command: str,
                  sections: tuple[Section, ...] = (Section("Full fine-tuning", "vqa"),
                                                   Section("Probe (frozen backbone)", "probe"))) -> Path:
    """``summary.json``, ``summary.md`` and ``summary.png`` in ``out``, one table set per section; returns the
    Markdown path."""
    summaries = {s.title: {**aggregate(results, order, s.protocol, s.holdouts),
                           "baselines": baselines_of(results, s.protocol, s.holdouts)} for s in sections}
    for summary in summaries.values():
        summary["measurable"] = {v: measurable(m, summary["baselines"]) for v, m in summary["variants"].items()}
    if not any(s["variants"] for s in summaries.values()):
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
    return path


# ---------------------------------------------------------------- command line


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (a rerun skips finished jobs)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS),
                        help=f"variants to run (built in: {', '.join(VARIANTS)})")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE,...",
                        help="define an extra variant from config overrides, e.g. "
                             "'dc2=objective.method=robust-mmr,objective.dc_weight=2'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, required=True, help="pre-training steps (every variant)")
    parser.add_argument("--batch", type=int, default=32, help="pre-training batch size")
    parser.add_argument("--model", choices=BACKBONES, default="demo", help="backbone (on the tiny preset)")
    parser.add_argument("--finetune-epochs", type=int, default=30,
                        help="most fine-tuning epochs (early stopping on the validation split usually ends sooner)")
    parser.add_argument("--max-eval-items", type=int, default=300)
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator for training (cpu, gpu)")
    parser.add_argument("--parallel", type=int, default=1, help="jobs run at once")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per job (default: the machine's cores / --parallel)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per pre-training run")
    parser.add_argument("--summary-only", action="store_true",
                        help="only summarise the jobs already finished under --out (run nothing)")


def threads_per_job(args: argparse.Namespace) -> int:
    return args.threads or max(1, (os.cpu_count() or 1) // max(1, args.parallel))


def resolve_variants(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """The variants to run, in order: the chosen built-in ones, then the ``--variant`` definitions."""
    chosen = {}
    for name in args.variants:
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name!r}; built in: {', '.join(VARIANTS)} (define others with --variant)")
        chosen[name] = VARIANTS[name]
    for item in args.variant:
        name, sep, overrides = item.partition("=")
        if not sep or not overrides:
            sys.exit(f"--variant {item!r}: expected NAME=KEY=VALUE[,KEY=VALUE...]")
        chosen[name] = tuple(overrides.split(","))
    return chosen


def training_overrides(args: argparse.Namespace) -> list[str]:
    """Backbone and training overrides from the common arguments."""
    precision = "bf16-mixed" if args.accelerator != "cpu" else "32-true"
    return [*BACKBONES[args.model], f"train.max_steps={args.steps}", f"train.batch_size={args.batch}", f"train.num_workers={args.workers}",
            f"train.accelerator={args.accelerator}", f"train.precision={precision}",
            f"train.checkpoint_every={args.steps}"]  # one checkpoint, at the end
