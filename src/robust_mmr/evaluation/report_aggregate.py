"""Load ``results.json`` files of evaluated runs and aggregate them per method over seeds.

Runs are grouped by (pre-training method, held-out domain): runs trained without a domain form their
own group per domain, since their training data differ. Every aggregated number is a *stat*::

    {"mean": float, "std": float, "n": int, "values": [float, ...]}           # n runs
    {..., "ci95": [lo, hi]}                                                     # n == 1, where recorded

``std`` is the sample std over runs (0 for one run); a single run carries the bootstrap 95% CI over
test items where the evaluation recorded one (clean accuracy and held-out accuracy).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robust_mmr.errors import InputError
from robust_mmr.evaluation.metrics import mean_std

METHOD_ORDER = ("scratch", "mmr", "mmr-aug", "robust-mmr")  # the order methods appear side by side
TARGETS = ("image", "text", "both")
MISSING = ("image_removed", "image_shuffled", "text_removed")  # the image-shuffled test is newer: optional
REQUIRED = ("run", "task", "method", "finetune_seed", "seed", "n_test", "clean")
REQUIRED_CLEAN = ("overall", "open", "closed", "baselines")


def load_results(paths: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """(path, results dict) for each run directory (its ``results.json``) or results file; duplicates dropped."""
    loaded, seen = [], set()
    for given in paths:
        path = Path(given)
        path = path / "results.json" if path.is_dir() else path
        if not path.is_file():
            raise InputError(f"{given}: no results file; give a run directory holding results.json "
                             "(from `robust-mmr evaluate RUN --data DIR`) or the results JSON itself")
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not a JSON results file ({err})") from err
        _check_results(results, path)
        loaded.append((path, results))
    if not loaded:
        raise InputError("no results given; pass one or more run directories or results.json files")
    tasks = sorted({r["task"] for _, r in loaded})
    if len(tasks) > 1:
        raise InputError(f"the results mix tasks ({', '.join(tasks)}); a report covers one task, run it per task")
    return loaded


def aggregate(loaded: list[tuple[Path, dict]]) -> dict:
    """The machine-readable report: input runs, per-group stats and the cross-domain average per method."""
    groups: dict[tuple[str, str | None], list[tuple[Path, dict]]] = {}
    for path, results in loaded:
        groups.setdefault((results["method"], held_out_of(results)), []).append((path, results))
    keys = sorted(groups, key=lambda k: (k[1] is not None, k[1] or "", method_rank(k[0]), k[0]))
    several_settings = len({k[1] for k in keys}) > 1
    out_groups = [_aggregate_group(method, held_out, groups[(method, held_out)], several_settings)
                  for method, held_out in keys]
    return {"task": loaded[0][1]["task"],
            "inputs": [_describe_input(path, results) for path, results in loaded],
            "groups": out_groups,
            "cross_domain_average": _cross_domain_average(out_groups)}


def held_out_of(results: dict) -> str | None:
    """``KEY=VALUE`` of the domain a run was trained without, or None."""
    holdout = results.get("holdout")
    return f"{holdout['key']}={holdout['value']}" if holdout else None


def method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def summarise(values: list[float], ci95: list[float] | None = None) -> dict:
    """A stat over runs: mean, sample std, n, the values, and the single run's CI when given."""
    mean, std = mean_std(values)
    stat = {"mean": mean, "std": std, "n": len(values), "values": [float(v) for v in values]}
    if len(values) == 1 and ci95 is not None:
        stat["ci95"] = [float(ci95[0]), float(ci95[1])]
    return stat


def _check_results(results: object, path: Path) -> None:
    if not isinstance(results, dict):
        raise InputError(f"{path}: expected a JSON object as written by `robust-mmr evaluate`")
    missing = [k for k in REQUIRED if k not in results]
    missing += [f"clean.{k}" for k in REQUIRED_CLEAN if k not in results.get("clean", {})]
    if missing:
        raise InputError(f"{path}: not an evaluation results file, missing {', '.join(missing)}; "
                         f"expected keys {', '.join(REQUIRED)} as written by `robust-mmr evaluate`")


def _describe_input(path: Path, results: dict) -> dict:
    protocols = ["clean"] + [p for p in ("perturbed", "missing", "cross_domain") if p in results]
    return {"path": str(path), "run": results["run"], "method": results["method"],
            "held_out": held_out_of(results), "finetune_seed": results["finetune_seed"],
            "seed": results["seed"], "n_test": results["n_test"],
            "oov_test_answers": results.get("oov_test_answers"), "protocols": protocols}


def _aggregate_group(method: str, held_out: str | None, runs: list[tuple[Path, dict]], several_settings: bool) -> dict:
    runs = sorted(runs, key=lambda pr: (pr[1]["finetune_seed"], pr[1]["seed"], str(pr[0])))
    results = [r for _, r in runs]
    label = method
    if several_settings:
        label = f"{method} (all domains)" if held_out is None else f"{method} (without {held_out})"
    group = {"method": method, "held_out": held_out, "label": label, "runs": [str(p) for p, _ in runs],
             "finetune_seeds": [r["finetune_seed"] for r in results], "n_test": sorted({r["n_test"] for r in results}),
             "clean": _clean(results)}
    perturbed = [r for r in results if "perturbed" in r]
    if perturbed:
        group["perturbed"] = _perturbed(perturbed)
    missing = [r for r in results if "missing" in r]
    if missing:
        group["missing"] = {k: summarise([r["missing"][k] for r in missing]) for k in MISSING
                            if all(k in r["missing"] for r in missing)}
    crossed = [r for r in results if "cross_domain" in r]
    if crossed:
        group["cross_domain"] = _cross_domain(crossed)
    return group


def _clean(results: list[dict]) -> dict:
    ci = results[0]["clean"].get("ci95")
    out = {"overall": summarise([r["clean"]["overall"] for r in results], ci)}
    out.update({k: summarise([r["clean"][k] for r in results]) for k in ("open", "closed")})
    out.update({k: summarise([r["clean"]["baselines"][k] for r in results]) for k in ("majority", "question_only")})
    return out


def cell_name(cell: dict) -> str:
    """A perturbed cell's row name: the corruption, the text perturbation, or ``image + text`` for both."""
    parts = [cell[m][0] for m in ("image", "text") if cell.get(m)]
    return " + ".join(parts)


def cell_severity(cell: dict) -> int:
    return int((cell.get("image") or cell.get("text"))[1])


def _perturbed(results: list[dict]) -> dict:
    out: dict = {}
    for target in TARGETS:
        having = [r["perturbed"][target] for r in results if target in r["perturbed"]]
        if having:
            out[target] = {k: summarise([h[k] for h in having]) for k in ("mean_accuracy", "rr")}
    out["all"] = {k: summarise([r["perturbed"][k] for r in results]) for k in ("mean_accuracy", "rr")}
    out["by_name"] = {t: by_name for t in TARGETS if (by_name := _by_name(results, t))}
    return out


def _by_name(results: list[dict], target: str) -> dict:
    """Per perturbation name: the mean over severities and each severity (0 = clean), each a stat over runs."""
    per_run: list[dict[str, dict[int, float]]] = []  # run -> name -> severity -> accuracy
    for r in results:
        table: dict[str, dict[int, float]] = {}
        for cell in r["perturbed"]["cells"]:
            if cell["target"] == target:
                table.setdefault(cell_name(cell), {})[cell_severity(cell)] = cell["accuracy"]
        per_run.append(table)
    names = list(dict.fromkeys(name for table in per_run for name in table))
    out = {}
    for name in names:
        runs = [(r, table[name]) for r, table in zip(results, per_run) if name in table]
        severities = sorted({s for _, accs in runs for s in accs})
        by_severity = {"0": summarise([r["clean"]["overall"] for r, _ in runs])}
        for s in severities:
            by_severity[str(s)] = summarise([accs[s] for _, accs in runs if s in accs])
        out[name] = {"severities": severities,
                     "mean_over_severities": summarise([float(np.mean(list(accs.values()))) for _, accs in runs]),
                     "by_severity": by_severity}
    return out


def _cross_domain(results: list[dict]) -> dict:
    cds = [r["cross_domain"] for r in results]
    out = {"ood": {"overall": summarise([c["ood"]["overall"] for c in cds], cds[0].get("ood_ci95"))}}
    out["ood"].update({k: summarise([c["ood"][k] for c in cds]) for k in ("open", "closed")})
    out["iid"] = summarise([c["iid"] for c in cds])
    out["rr"] = summarise([c["rr"] for c in cds])
    out.update({k: summarise([c["baselines"][k] for c in cds]) for k in ("majority", "question_only")})
    if all("n_test" in c for c in cds):
        out["n_test"] = sorted({c["n_test"] for c in cds})
    return out


def _cross_domain_average(groups: list[dict]) -> list[dict]:
    """Per method: the mean over held-out domains of the per-domain means (OOD accuracy, in-domain, RR)."""
    by_method: dict[str, list[dict]] = {}
    for g in groups:
        if "cross_domain" in g:
            by_method.setdefault(g["method"], []).append(g)
    return [{"method": method, "domains": [g["held_out"] for g in gs],
             "ood": float(np.mean([g["cross_domain"]["ood"]["overall"]["mean"] for g in gs])),
             "iid": float(np.mean([g["cross_domain"]["iid"]["mean"] for g in gs])),
             "rr": float(np.mean([g["cross_domain"]["rr"]["mean"] for g in gs]))}
            for method, gs in sorted(by_method.items(), key=lambda kv: (method_rank(kv[0]), kv[0]))]
