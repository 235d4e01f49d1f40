"""One method job: pre-train one variant with one seed, fine-tune it downstream, evaluate every protocol.

The unit that both the demo (:mod:`robust_mmr.experiments.demo`) and the method benchmarks
(``benchmarks/method_*.py``) run. Under ``job.out``:

- ``pretrain/``: the pre-training run (preset + overrides + ``train.seed``);
- ``vqa-<hold-out>/`` (full fine-tuning), ``probe-<hold-out>/`` (a head on the frozen backbone) and
  ``lpft-<hold-out>/`` (a head trained on the frozen backbone's features first, then everything fine-tuned;
  its own run, under ``finetune``'s settings), per protocol in ``protocols``: one VQA run per
  hold-out (``""``: the dataset's standard split), each with its ``results.json`` (clean, perturbed, missing
  modality and, with a hold-out, the held-out domain);
- ``retrieve/`` and ``probe-retrieve/`` with ``retrieval``: ITC retrieval, clean and perturbed (ΔMR);
- ``job.json``, written when the job starts, and ``result.json``, the headline numbers, when it ends.

Fine-tuning seeds are ``FINETUNE_SEED_OFFSET`` + the pre-training seed: a stream of their own; the probe takes
``probe_finetune`` over ``finetune`` (it trains on cached features, so it can afford a longer patience). A job
whose ``result.json`` exists is not run again, and one begun or finished with other settings (any field but
:data:`NEUTRAL_FIELDS` and :data:`STAGE_FIELDS`; the pre-training config compared as resolved, so a preset and
the overrides that make the same model are the same job) stops the caller rather than being mixed in. A change
of a stage field reruns the job stage by stage: a finished pre-training or fine-tuning run whose recorded
settings are the ones asked for is reused, so asking for a new probe schedule reruns the probes alone.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from robust_mmr.evaluation.report_methods import RETRIEVAL_KEY
from robust_mmr.experiments.logs import log
from robust_mmr.runfolder import write_json

# protocol (its result key and folder prefix) → the FinetuneConfig flags it sets. ``blind`` is the trained blind
# baseline: full fine-tuning with the image removed in training and at test (evaluated clean and held out only).
PROTOCOLS: dict[str, dict] = {"vqa": {}, "probe": {"freeze_backbone": True}, "lpft": {"lp_ft": True},
                              "blind": {"blind": True}}
PROTOCOL_NAMES = {"vqa": "full fine-tuning", "probe": "probe", "lpft": "LP-FT", "blind": "trained blind"}
SPLIT_PREFIX = "split:"  # a hold-out "split:NAME" fine-tunes on the dataset Job.split_data[NAME] as it is split
FINETUNE_SEED_OFFSET = 100


@dataclass(frozen=True)
class Job:
    variant: str
    overrides: tuple[str, ...]  # model.*, objective.*, train.* for pre-training (train.seed added by the job)
    seed: int  # pre-training seed
    pretrain_data: str
    task_data: str
    out: str
    holdouts: tuple[str, ...]  # KEY=VALUE per VQA fine-tuning run; "" the dataset's standard split; "split:NAME"
    finetune: dict  # FinetuneConfig fields (task, seed and freeze_backbone set by the job)
    corruptions: tuple[str, ...]
    text_perturbations: tuple[str, ...]
    severities: tuple[int, ...]
    max_eval_items: int | None  # None: every test item
    retrieval: bool = False
    threads: int = 1
    preset: str = "tiny"
    protocols: tuple[str, ...] = ("vqa", "probe")  # of PROTOCOLS: full fine-tuning, the probe, LP-FT
    probe_finetune: dict = field(default_factory=dict)  # FinetuneConfig fields the probe sets over ``finetune``
    split_data: dict = field(default_factory=dict)  # NAME → dataset folder of the "split:NAME" hold-outs

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.seed}"

    def protocol_runs(self) -> tuple[str, ...]:
        """The protocols the job runs, in :data:`PROTOCOLS` order."""
        unknown = set(self.protocols) - set(PROTOCOLS)
        if unknown or not self.protocols:
            raise ValueError(f"protocols {self.protocols}: choose from {', '.join(PROTOCOLS)}")
        return tuple(key for key in PROTOCOLS if key in self.protocols)


# Job fields that do not change a job's results: a finished job is reused whatever they are.
NEUTRAL_FIELDS = ("threads", "out", "pretrain_data", "task_data", "split_data")
# Where and how fast a job runs, not what it computes: results made on a GPU are read back on a CPU.
EXECUTION_KEYS = tuple(f"config.train.{k}" for k in ("accelerator", "devices", "num_nodes", "strategy", "num_workers"))
# Job fields whose change reruns only the stages they touch (a finished job with more protocols or hold-outs than
# asked for serves the request as it is; one asked for more runs the missing ones beside those it reuses).
STAGE_FIELDS = ("protocols", "probe_finetune", "holdouts")


def holdout_slug(holdout: str) -> str:
    """Folder-name form of a hold-out (``""``: the dataset's standard split; ``split:NAME``: NAME)."""
    if holdout.startswith(SPLIT_PREFIX):
        return holdout[len(SPLIT_PREFIX):]
    return holdout.replace("=", "-") if holdout else "standard"


def holdout_data(job: Job, holdout: str) -> tuple[Path, str | None]:
    """(dataset folder, KEY=VALUE left out or None) of one of the job's hold-outs."""
    if holdout.startswith(SPLIT_PREFIX):
        name = holdout[len(SPLIT_PREFIX):]
        if name not in job.split_data:
            raise ValueError(f"hold-out {holdout!r}: the job has no split_data[{name!r}]")
        return Path(job.split_data[name]), None
    return Path(job.task_data), holdout or None


def vqa_run_dir(job: Job, protocol: str, holdout: str) -> Path:
    return Path(job.out) / f"{protocol}-{holdout_slug(holdout)}"


def run_job(job: Job, progress: bool = False) -> dict:
    """Run ``job`` (or read its finished result); returns the result dict (also in ``result.json``).

    The job runs on ``job.threads`` CPU threads; the caller's thread count is restored afterwards (results on the
    CPU depend on it: a later run in the same process must not inherit the job's)."""
    import torch

    finished = read_finished(job)
    if finished is not None:
        return finished
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        return _run_unfinished(job, progress)
    finally:
        torch.set_num_threads(threads)


def _run_unfinished(job: Job, progress: bool) -> dict:
    from robust_mmr.config import load_config
    from robust_mmr.training.pretrain import run_pretraining

    root = Path(job.out)
    previous = _json(root / "result.json")  # finished with other stages (read_finished checked the rest)
    # the (protocol, hold-out) fine-tunings to run: those asked for and those the finished job holds (reused below)
    pairs = {(key, holdout) for key in job.protocol_runs() for holdout in job.holdouts}
    if previous is not None:
        pairs |= {(key, holdout) for key in PROTOCOLS for holdout in previous.get(key, {})}
        split_data = {**previous["job"].get("split_data", {}), **job.split_data}
        job = replace(job, protocols=tuple(k for k in PROTOCOLS if any(p == k for p, _ in pairs)),
                      holdouts=tuple(dict.fromkeys((*previous["job"]["holdouts"], *job.holdouts))),
                      split_data=split_data)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "job.json", asdict(job))
    start = time.perf_counter()
    cfg = load_config(job.preset, pretrain_overrides(job))
    summary = finished_pretraining(root / "pretrain", cfg)
    if summary is None:
        log(f"{job.label}: pre-training {cfg.train.max_steps} steps at batch {cfg.train.batch_size}")
        summary = run_pretraining(cfg, Path(job.pretrain_data), root / "pretrain", progress=progress)
    result: dict = {"job": asdict(job), "pretrain": {"seconds": summary["seconds"],
                                                    "final_loss": summary["final_metrics"].get("train/loss")}}
    for key in job.protocol_runs():
        result[key] = {holdout: finetune_and_evaluate(job, key, holdout, progress) for holdout in job.holdouts
                       if (key, holdout) in pairs}
    if job.retrieval:
        for key in (k for k in job.protocol_runs() if k in RETRIEVAL_KEY):
            result[RETRIEVAL_KEY[key]] = retrieve_and_evaluate(job, key, progress)
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_json(root / "result.json", result)
    return result


def pretrain_overrides(job: Job) -> list[str]:
    return [*job.overrides, f"train.seed={job.seed}"]


def finished_pretraining(run_dir: Path, cfg) -> dict | None:
    """The summary of a pre-training run completed in ``run_dir`` with the config ``cfg``, else None."""
    from robust_mmr.config import load_config

    summary = _json(run_dir / "summary.json")
    if summary is None or summary.get("status") != "completed" or summary.get("steps") != cfg.train.max_steps:
        return None
    return summary if asdict(load_config(str(run_dir / "config.yaml"))) == asdict(cfg) else None


def finetune_settings(job: Job, task: str, protocol: str) -> dict:
    """The FinetuneConfig fields of one of the job's fine-tuning runs."""
    return {**job.finetune, **(job.probe_finetune if protocol == "probe" else {}), **PROTOCOLS[protocol],
            "task": task, "seed": FINETUNE_SEED_OFFSET + job.seed}


def finished_run(run_dir: Path, settings: dict) -> tuple[dict, dict] | None:
    """(task.json, results.json) of a fine-tuning run evaluated in ``run_dir`` with the FinetuneConfig ``settings``
    (those settings and the defaults for the rest), else None."""
    from robust_mmr.tasks.config import FinetuneConfig

    task, results = _json(run_dir / "task.json"), _json(run_dir / "results.json")
    if task is None or results is None:
        return None
    recorded = {**asdict(FinetuneConfig()), **task["finetune"]}  # a field the run predates takes its default
    return (task, results) if recorded == asdict(FinetuneConfig(**settings)) else None


def start_run(run_dir: Path) -> None:
    """Before (re)training in ``run_dir``: its old evaluation must not outlive the run it described."""
    (run_dir / "results.json").unlink(missing_ok=True)


EVALUATION_PROTOCOLS = ("clean", "perturbed", "missing", "cross-domain")


def _evaluation_settings(job: Job, progress: bool) -> dict:
    return dict(corruptions=list(job.corruptions), text_perts=list(job.text_perturbations),
                severities=job.severities, max_items=job.max_eval_items, progress=progress)


def finetune_and_evaluate(job: Job, protocol: str, holdout: str, progress: bool) -> dict:
    """Fine-tune VQA under ``protocol`` from the job's pre-training with ``holdout`` left out, evaluate every
    evaluation protocol into the run's ``results.json``; returns the headline numbers."""
    from robust_mmr.evaluation.protocols import evaluate_run
    from robust_mmr.tasks.config import FinetuneConfig
    from robust_mmr.tasks.data import Holdout
    from robust_mmr.tasks.finetune import run_finetuning

    (data, left_out), ft_dir = holdout_data(job, holdout), vqa_run_dir(job, protocol, holdout)
    settings = finetune_settings(job, "vqa", protocol)
    if (done := finished_run(ft_dir, settings)) is not None:
        return {**vqa_headline(done[1]), **fit_headline(done[0])}
    ft_cfg = FinetuneConfig(**settings)
    start_run(ft_dir)
    log(f"{job.label}: VQA {PROTOCOL_NAMES[protocol]}, {holdout or 'standard split'}")
    ft = run_finetuning(ft_cfg, data, ft_dir, init=str(Path(job.out) / "pretrain"),
                        holdout=Holdout.parse(left_out) if left_out else None, progress=progress)
    log(f"{job.label}: evaluating {ft_dir.name}")
    # the blind model never sees an image: image conditions would repeat its clean accuracy
    protocols = ("clean", "cross-domain") if protocol == "blind" else EVALUATION_PROTOCOLS
    full = evaluate_run(ft_dir, data, protocols=protocols, seed=0, **_evaluation_settings(job, progress))
    write_json(ft_dir / "results.json", full)
    return {**vqa_headline(full), **fit_headline(ft)}


def retrieve_and_evaluate(job: Job, protocol: str, progress: bool) -> dict:
    """ITC retrieval fine-tuning (or its probe) from the job's pre-training, evaluated clean and perturbed."""
    from robust_mmr.evaluation.protocols import evaluate_run
    from robust_mmr.tasks.config import FinetuneConfig
    from robust_mmr.tasks.retrieval import run_retrieval_finetuning

    data, rt_dir = Path(job.task_data), Path(job.out) / ("retrieve" if protocol == "vqa" else f"{protocol}-retrieve")
    settings = finetune_settings(job, "retrieve", protocol)
    if (done := finished_run(rt_dir, settings)) is not None:
        return {**retrieval_headline(done[1]), **fit_headline(done[0])}
    rt_cfg = FinetuneConfig(**settings)
    start_run(rt_dir)
    log(f"{job.label}: retrieval {PROTOCOL_NAMES[protocol]}")
    ft = run_retrieval_finetuning(rt_cfg, data, rt_dir, init=str(Path(job.out) / "pretrain"), progress=progress)
    full = evaluate_run(rt_dir, data, protocols=("clean", "perturbed"), seed=0, **_evaluation_settings(job, progress))
    write_json(rt_dir / "results.json", full)
    return {**retrieval_headline(full), **fit_headline(ft)}


def fit_headline(summary: dict) -> dict:
    """How a fine-tuning run converged: the epoch kept (1-based) and the epochs run."""
    return {"best_epoch": summary["best_epoch"] + 1, "epochs_run": summary["epochs_run"]}


def vqa_headline(results: dict) -> dict:
    """The headline numbers of one VQA evaluation (:data:`robust_mmr.evaluation.report_methods.VQA_METRICS`)."""
    from robust_mmr.perturbations.image.registry import image_corruptions

    unseen = set(image_corruptions(role="eval"))
    pert = results.get("perturbed", {"cells": []})
    missing = results.get("missing", {})
    by_image = results["clean"].get("by_image", {})
    image_cells = [c for c in pert["cells"] if c["target"] == "image"]
    unseen_cells = [c["accuracy"] for c in image_cells if c["image"][0] in unseen]
    seen_cells = [c["accuracy"] for c in image_cells if c["image"][0] not in unseen]
    cross = results.get("cross_domain", {})
    head = {
        "clean": results["clean"]["overall"], "clean_open": results["clean"].get("open"),
        "clean_closed": results["clean"].get("closed"),
        "perturbed": pert.get("mean_accuracy"),
        "perturbed_image": pert.get("image", {}).get("mean_accuracy"),
        "seen_corruptions": float(np.mean(seen_cells)) if seen_cells else None,
        "unseen_corruptions": float(np.mean(unseen_cells)) if unseen_cells else None,
        "perturbed_text": pert.get("text", {}).get("mean_accuracy"),
        "image_removed": missing.get("image_removed"), "text_removed": missing.get("text_removed"),
        "image_shuffled": missing.get("image_shuffled"),
        "clean_seen": by_image.get("seen", {}).get("overall"), "clean_unseen": by_image.get("unseen", {}).get("overall"),
        "held_out": cross.get("ood", {}).get("overall"), "held_out_open": cross.get("ood", {}).get("open"),
        "held_out_closed": cross.get("ood", {}).get("closed"), "domain_rr": cross.get("rr"),
        "n_test": results["n_test"], "n_held_out": cross.get("n_test"),
        "baselines": {"in_domain": results["clean"]["baselines"], "held_out": cross.get("baselines")},
    }
    # accuracy over an empty subset (no open questions, say) is NaN: report it as absent
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in head.items()}


def retrieval_headline(results: dict) -> dict:
    """Mean R@1 and mean rank over both directions, clean, and ΔMR under image and text perturbation."""
    clean, pert = results["clean"], results["perturbed"]
    return {"r1": float(np.mean([clean[d]["r1"] for d in ("i2t", "t2i")])),
            "mr": float(np.mean([clean[d]["mean_rank"] for d in ("i2t", "t2i")])),
            "delta_mr_image": pert.get("image", {}).get("delta_mr", {}).get("mean"),
            "delta_mr_text": pert.get("text", {}).get("delta_mr", {}).get("mean"),
            "n_test": results["n_test"]}


def read_finished(job: Job) -> dict | None:
    """The result of ``job`` when it has finished (``result.json`` exists), else None. A run begun or
    finished with other settings stops the caller (``SystemExit``) rather than being mixed in or resumed."""
    root = Path(job.out)
    wanted = comparable(asdict(job))
    for path in (root / "job.json", root / "result.json"):
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            found = comparable(record.get("job", record))
            differs = sorted(k for k in wanted if k not in (*NEUTRAL_FIELDS, *STAGE_FIELDS) and found.get(k) != wanted[k])
            if differs:
                raise SystemExit(f"{path} was made with other settings ({', '.join(differs)} differ); "
                                 "use another --out or remove that run")
            other_probe = "probe" in wanted["protocols"] and found["probe_finetune"] != wanted["probe_finetune"]
            missing = not set(wanted["protocols"]) <= set(found["protocols"]) or any(
                holdout not in record.get(key, {}) for key in wanted["protocols"] for holdout in wanted["holdouts"])
            if path.name == "result.json" and (missing or other_probe):
                return None  # finished with other stages: rerun the job, reusing the stages that match
    path = root / "result.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def comparable(spec: dict) -> dict:
    """A job spec as JSON values with every field present (a field the spec predates takes its default), its
    ``preset`` and ``overrides`` replaced by the pre-training config they resolve to, flattened to
    ``config.KEY`` entries: the order overrides were listed in, or a preset standing for some of them, does
    not make two jobs differ, and a difference is named by the config key."""
    from robust_mmr.config import load_config

    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(Job)
                if f.default is not MISSING or f.default_factory is not MISSING}
    out = json.loads(json.dumps({**defaults, **spec}))
    cfg = asdict(load_config(out.pop("preset"), out.pop("overrides")))  # train.seed: the job's own ``seed`` field
    out.update({k: v for k, v in _flatten(cfg, "config").items() if k not in EXECUTION_KEYS})
    out["finetune"] = {k: v for k, v in out["finetune"].items() if k not in ("accelerator", "num_workers")}
    return out


def _flatten(tree: dict, prefix: str) -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = json.loads(json.dumps(value))
    return flat


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
