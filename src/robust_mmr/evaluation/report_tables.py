"""Markdown for the aggregated report (see :mod:`robust_mmr.evaluation.report_aggregate` for its layout).

A cell reads ``mean ± std`` over runs, ``value [lo, hi]`` (bootstrap 95% CI) for a single run where a
CI was recorded, or the bare value; ``(n=k)`` follows when a cell is over fewer runs than its row.
"""

from __future__ import annotations

import math

from robust_mmr.evaluation.report_aggregate import MISSING, TARGETS

MIN_SEEDS = 3  # DESIGN §4: every number over at least 3 seeds


def format_stat(stat: dict | None, row_runs: int | None = None) -> str:
    """``0.412 ± 0.013``, ``0.412 [0.35, 0.47]`` or ``0.412``; ``—`` when absent, ``n/a`` when undefined."""
    if stat is None:
        return "—"
    if stat["mean"] is None or math.isnan(stat["mean"]):  # None: NaN read back from results.json
        return "n/a"
    text = f"{stat['mean']:.3f}"
    if stat["n"] > 1:
        text += f" ± {stat['std']:.3f}"
    elif "ci95" in stat:
        text += f" [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}]"
    if row_runs is not None and stat["n"] != row_runs:
        text += f" (n={stat['n']})"
    return text


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


CLEAN_HEADERS = ["method", "runs", "test items", "overall", "open", "closed", "majority baseline",
                 "question-only baseline"]


def clean_rows(report: dict) -> list[list[str]]:
    """One row per group: clean accuracy overall / open / closed beside the two baselines."""
    rows = []
    for g in report["groups"]:
        c, n = g["clean"], len(g["runs"])
        rows.append([g["label"], str(n), _items(g["n_test"])]
                    + [format_stat(c[k], n) for k in ("overall", "open", "closed", "majority", "question_only")])
    return rows


def render_markdown(report: dict, command: str, plots: dict[str, str]) -> str:
    """The whole ``report.md``; ``plots`` maps a section (severity_image, cross_domain, ...) to its PNG name."""
    parts = [_header(report, command),
             "## Clean accuracy\n\n" + markdown_table(CLEAN_HEADERS, clean_rows(report))]
    parts += [section for section in (_perturbed(report, plots), _missing(report, plots), _cross_domain(report, plots))
              if section]
    if "gallery" in plots:
        parts.append(f"## Perturbation gallery\n\n{report['gallery_image']} under each image corruption of the "
                     "results, severities 1–5, drawn with the first run's evaluation seed.\n\n"
                     f"![gallery]({plots['gallery']})")
    parts.append(_inputs(report))
    return "\n\n".join(parts) + "\n"


def _items(n_test: list[int]) -> str:
    return str(n_test[0]) if len(n_test) == 1 else f"{n_test[0]}–{n_test[-1]}"


def _header(report: dict, command: str) -> str:
    lines = [f"# robust-mmr report: {report['task']}", "",
             f"Produced by `{command}` from {len(report['inputs'])} evaluated run(s), listed at the end.", "",
             "Numbers are test accuracies (fraction correct). Each is the mean ± sample standard deviation over "
             "the runs (seeds: pre-training or fine-tuning) of a method; *runs* says how many, *test items* how many "
             "test items each run was scored on. A number from a single run shows the bootstrap 95% CI over test "
             "items in brackets where the evaluation recorded one (clean and held-out accuracy); other single-run "
             "numbers carry no spread. RR under perturbation is acc_perturbed / acc_clean per run; across domains "
             "it is 1 − (iid − ood) / iid."]
    held = {g["held_out"] for g in report["groups"]}
    if held == {None}:
        lines += ["", "All runs were trained on every domain."]
    elif len(held) == 1:
        lines += ["", f"All runs were trained without {held.pop()} (the clean, perturbed and missing-modality "
                      "numbers are on the in-domain test split)."]
    few = [g["label"] for g in report["groups"] if len(g["runs"]) < MIN_SEEDS]
    if few:
        lines += ["", f"Fewer than {MIN_SEEDS} runs for: {', '.join(few)}; treat their differences with care."]
    return "\n".join(lines)


def _perturbed(report: dict, plots: dict[str, str]) -> str:
    groups = [g for g in report["groups"] if "perturbed" in g]
    if not groups:
        return ""
    headers = ["method", "runs", "clean"] + [f"{t} {k}" for t in (*TARGETS, "all") for k in ("mean", "RR")]
    rows = []
    for g in groups:
        p, n = g["perturbed"], len(g["runs"])
        row = [g["label"], str(n), format_stat(g["clean"]["overall"], n)]
        for t in TARGETS:
            row += [format_stat(p.get(t, {}).get(k), n) for k in ("mean_accuracy", "rr")]
        rows.append(row + [format_stat(p["all"][k], n) for k in ("mean_accuracy", "rr")])
    parts = ["## Under perturbation",
             "Mean accuracy over every perturbation × severity cell of a target (image corruptions, text "
             "perturbations, or both paired), and RR. *runs* counts the runs with perturbed results.",
             markdown_table(headers, rows)]
    for target in TARGETS:
        table = _per_name_table(groups, target)
        if table:
            parts.append(f"### Per {_target_noun(target)} (mean over severities {_severities(groups, target)})")
            parts.append(table)
            if f"severity_{target}" in plots:
                parts.append(f"![accuracy vs severity, {target}]({plots[f'severity_{target}']})")
    return "\n\n".join(parts)


def _per_name_table(groups: list[dict], target: str) -> str:
    having = [g for g in groups if target in g["perturbed"]["by_name"]]
    if not having:
        return ""
    names = list(dict.fromkeys(n for g in having for n in g["perturbed"]["by_name"][target]))
    rows = []
    for name in names:
        row = [name]
        for g in having:
            entry = g["perturbed"]["by_name"][target].get(name)
            row.append(format_stat(entry["mean_over_severities"] if entry else None, len(g["runs"])))
        rows.append(row)
    return markdown_table([_target_noun(target)] + [g["label"] for g in having], rows)


def _target_noun(target: str) -> str:
    return {"image": "image corruption", "text": "text perturbation", "both": "image + text pair"}[target]


def _severities(groups: list[dict], target: str) -> str:
    found = sorted({s for g in groups for e in g["perturbed"]["by_name"].get(target, {}).values()
                    for s in e["severities"]})
    return ",".join(str(s) for s in found)


def _missing(report: dict, plots: dict[str, str]) -> str:
    groups = [g for g in report["groups"] if "missing" in g]
    if not groups:
        return ""
    keys = [k for k in MISSING if all(k in g["missing"] for g in groups)]
    rows = []
    for g in groups:
        n = len(g["runs"])
        rows.append([g["label"], str(n), format_stat(g["clean"]["overall"], n),
                     *(format_stat(g["missing"][k], n) for k in keys)])
    parts = ["## Missing modality", "Accuracy with the image removed, with the test images shuffled within their "
             "organ / region and modality (what the image contributes, without a token the model may not know), and "
             "with the text removed.",
             markdown_table(["method", "runs", "clean", *(k.replace("_", " ") for k in keys)], rows)]
    if "missing" in plots:
        parts.append(f"![missing modality]({plots['missing']})")
    return "\n\n".join(parts)


def _cross_domain(report: dict, plots: dict[str, str]) -> str:
    groups = [g for g in report["groups"] if "cross_domain" in g]
    if not groups:
        return ""
    counted = any("n_test" in g["cross_domain"] for g in groups)  # held-out item counts, where evaluate records them
    rows = []
    for g in groups:
        cd, n = g["cross_domain"], len(g["runs"])
        rows.append([g["held_out"], g["method"], str(n)]
                    + ([_items(cd["n_test"]) if "n_test" in cd else "—"] if counted else [])
                    + [format_stat(cd["ood"][k], n) for k in ("overall", "open", "closed")]
                    + [format_stat(cd[k], n) for k in ("iid", "rr", "majority", "question_only")])
    headers = (["held-out domain", "method", "runs"] + (["held-out test items"] if counted else [])
               + ["held-out overall", "open", "closed", "in-domain", "RR", "majority baseline",
                  "question-only baseline"])
    average = [[a["method"], f"{len(a['domains'])} ({', '.join(a['domains'])})", f"{a['ood']:.3f}",
                f"{a['iid']:.3f}", f"{a['rr']:.3f}"] for a in report["cross_domain_average"]]
    parts = ["## Across domains",
             "Each run was trained without one domain and tested on that domain's test items (held-out) and on "
             "the in-domain test split (in-domain reference). Baselines are on the held-out items.",
             markdown_table(headers, rows),
             "Average over held-out domains (the mean of the per-domain means; averages over different domain sets "
             "are not comparable):",
             markdown_table(["method", "domains", "held-out accuracy", "in-domain", "RR"], average)]
    if "cross_domain" in plots:
        parts.append(f"![cross-domain]({plots['cross_domain']})")
    return "\n\n".join(parts)


def _inputs(report: dict) -> str:
    rows = [[i["path"], i["method"], i["held_out"] or "—", str(i["finetune_seed"]), str(i["seed"]), str(i["n_test"]),
             str(i["oov_test_answers"]), ", ".join(i["protocols"])] for i in report["inputs"]]
    return "## Runs\n\n" + markdown_table(
        ["results", "method", "held out", "fine-tuning seed", "evaluation seed", "test items",
         "answers outside vocabulary (counted wrong)", "protocols"], rows)
