"""``robust-mmr finetune`` and ``robust-mmr evaluate``: downstream training and the robustness protocols."""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from pathlib import Path

from robust_mmr.cli.tables import format_table
from robust_mmr.config import PRESETS, settings_from_overrides
from robust_mmr.evaluation.ranking import DIRECTIONS
from robust_mmr.errors import InputError
from robust_mmr.hardware import describe
from robust_mmr.runfolder import claim, data_identity, locked, refuse_same_path, write_json
from robust_mmr.tasks.config import TASKS, FinetuneConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune VQA or classification from a pre-trained run or scratch")
    p.add_argument("--task", choices=TASKS, default="vqa")
    p.add_argument("--init", default="scratch", help="pre-training run directory, or 'scratch' (a control)")
    p.add_argument("--config", default="tiny", help=f"model preset for --init scratch ({', '.join(PRESETS)})")
    p.add_argument("--data", type=Path, required=True, help="dataset directory (vqa.jsonl / classification.jsonl)")
    p.add_argument("--holdout", help="leave a domain out of training, KEY=VALUE (e.g. domain=site-c)")
    p.add_argument("--vocab", choices=("train", "m3ae"), default="train",
                   help="answer vocabulary from train answers, or train+val+test as in M3AE (for comparison only)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--seeds", help="comma-separated seeds: one run per seed in OUT/seedN (then `report OUT/seed*`)")
    p.add_argument("--overwrite", action="store_true",
                   help="clear an --out that holds another run (another task, init, data or settings) first")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="fine-tuning settings (max_epochs=30 patience=4 freeze_backbone=true seed=1); model.* keys "
                        "change a scratch backbone's preset")
    p.set_defaults(func=_finetune)

    e = subparsers.add_parser("evaluate", help="clean / perturbed / missing / cross-domain evaluation of a run")
    e.add_argument("run", type=Path, help="fine-tuning run directory")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--protocol", default="all", help="clean, perturbed, missing, cross-domain or all (comma-separated)")
    e.add_argument("--corruptions", help="comma-separated image corruptions (default: all for --modality)")
    e.add_argument("--text-perturbations", help="comma-separated text perturbations (default: all)")
    e.add_argument("--severities", default="1,2,3,4,5")
    e.add_argument("--modality", default="generic")
    e.add_argument("--seed", type=int, default=0, help="evaluation seed (perturbation draws)")
    e.add_argument("--max-items", type=int, help="evaluate a fixed random subset of the test items")
    e.add_argument("--precision", choices=("auto", "32-true", "bf16-mixed"), default="auto",
                   help="inference precision (auto: bf16 on a bf16 GPU or where the CPU has native bf16, else fp32)")
    e.add_argument("--device", default="auto", help="where the model runs: auto (a CUDA GPU when one is present, "
                                                    "else the CPU), cpu, cuda or cuda:N")
    e.add_argument("--batch-size", type=int, help="items encoded and fused per pass (default: 64 for a classifier, "
                                                  "256 for retrieval; larger keeps a GPU busier)")
    e.add_argument("--on-bad-sample", choices=("skip", "fail"), default="skip",
                   help="a test item whose image cannot be used: leave it out and list it (skip), or stop naming it")
    e.add_argument("--reference", type=Path,
                   help="an evaluated reference run (dir or results.json): adds corruption errors CE / mCE")
    e.add_argument("--out", type=Path, help="results JSON (default RUN/results.json)")
    e.set_defaults(func=_evaluate)


def _finetune(args: argparse.Namespace) -> int:
    from robust_mmr.tasks.data import TASK_MANIFESTS, Holdout
    from robust_mmr.tasks.finetune import run_finetuning
    from robust_mmr.tasks.module import CHECKPOINTS

    model_overrides = [item for item in args.overrides if item.startswith("model.")]
    settings = [item for item in args.overrides if not item.startswith("model.")]
    cfg = settings_from_overrides(FinetuneConfig, settings, {"task": args.task}, "finetune settings")
    if args.seeds:
        seeds = _int_list(args.seeds, "--seeds")
        for seed in seeds:
            print(f"== seed {seed} ==")
            _finetune(argparse.Namespace(**{**vars(args), "seeds": None, "out": args.out / f"seed{seed}",
                                            "overrides": [*args.overrides, f"seed={seed}"]}))
        print(f"{len(seeds)} runs in {args.out}/seed*: evaluate each, then `robust-mmr report {args.out}/seed*`")
        return 0
    holdout = Holdout.parse(args.holdout) if args.holdout else None
    _check_init(args.init)
    manifest = TASK_MANIFESTS.get(cfg.task, "image_text.jsonl")
    if not (args.data / manifest).is_file():
        raise InputError(f"--data {args.data}: no {manifest} there for task {cfg.task!r}")
    refuse_same_path(args.out, {"--init": args.init, "--data": args.data})
    identity = finetune_identity(args, cfg, model_overrides)
    status = claim(args.out, "finetune", identity, overwrite=args.overwrite)
    if status == "same":
        if (args.out / CHECKPOINTS / "last.ckpt").is_file() and cfg.task != "retrieve":
            print(f"note: {args.out} holds this fine-tuning run, interrupted; it continues from its last "
                  "checkpointed epoch")
        else:
            state = ("finished" if (args.out / "task.json").is_file()
                     else "interrupted with no checkpoint to continue from")
            print(f"note: {args.out} holds this fine-tuning run, {state}; it restarts from its first epoch and "
                  "replaces it")
    for old in args.out.glob("results*.json"):  # evaluations of the weights about to be replaced
        old.unlink()
    with locked(args.out):
        if cfg.task == "retrieve":
            return _finetune_retrieval(args, cfg, model_overrides, holdout)
        splits = ("train",) if args.vocab == "train" else ("train", "val", "test")
        summary = run_finetuning(cfg, args.data, args.out, init=args.init, preset=args.config, holdout=holdout,
                                 vocab_splits=splits, model_overrides=model_overrides)
    for note in summary["notes"]:
        print(f"note: {note}")
    print(format_table(["split", "records"], list(summary["counts"].items()), title=f"{cfg.task} fine-tuning"))
    print(f"best validation accuracy {summary['best_val_accuracy']:.3f} in {summary['seconds']} s → {args.out}")
    return 0


BASELINE_NAMES = {"majority": "majority", "question_only": "question-only", "same_image_lookup": "same-image lookup",
                  "text_classifier": "text classifier"}  # evaluation.baselines, as printed
EXECUTION_SETTINGS = ("accelerator", "num_workers", "devices", "strategy", "precision")  # how, not what


def finetune_identity(args: argparse.Namespace, cfg: FinetuneConfig, model_overrides: list[str]) -> dict:
    """What a fine-tuning run is: task, init (a resolved path, or a scratch preset with its overrides), the data
    (folder + manifest hash), the hold-out, the vocabulary and the settings that shape the weights."""
    from dataclasses import asdict

    from robust_mmr.tasks.data import TASK_MANIFESTS

    manifest = TASK_MANIFESTS.get(cfg.task, "image_text.jsonl")
    init = "scratch" if args.init == "scratch" else str(Path(args.init).resolve())
    return {"task": cfg.task, "init": init, "preset": args.config if args.init == "scratch" else None,
            "model_overrides": sorted(model_overrides), "data": data_identity(args.data, manifest),
            "holdout": args.holdout, "vocab": args.vocab,
            "settings": {k: v for k, v in asdict(cfg).items() if k not in EXECUTION_SETTINGS}}


def _check_init(init: str) -> None:
    """``--init`` must be ``scratch`` or a pre-training run (not a fine-tuning run, not a missing folder)."""
    if init == "scratch":
        return
    path = Path(init)
    if (path / "task.json").is_file():
        raise InputError(f"--init {init} is a fine-tuning run; --init takes a pre-training run directory or scratch")
    if not (path / "model.safetensors").is_file():
        raise InputError(f"--init {init}: no model.safetensors there (not a pre-training run directory)")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    return values


def _finetune_retrieval(args: argparse.Namespace, cfg: FinetuneConfig, model_overrides: list[str], holdout) -> int:
    from robust_mmr.tasks.retrieval import run_retrieval_finetuning

    summary = run_retrieval_finetuning(cfg, args.data, args.out, init=args.init, preset=args.config,
                                       model_overrides=model_overrides, holdout=holdout)
    for note in summary["notes"]:
        print(f"note: {note}")
    print(format_table(["split", "pairs"], list(summary["counts"].items()), title="retrieve fine-tuning"))
    print(f"best validation R@1 (mean of both directions) {summary['best_val_r1']:.3f} in {summary['seconds']} s "
          f"→ {args.out}")
    return 0


def evaluation_record(args: argparse.Namespace, task: dict, protocols: tuple[str, ...],
                      severities: tuple[int, ...]) -> dict:
    """What an evaluation of the run with ``task`` (its task.json) measured: the data (folder + manifest hash), how
    many items, which conditions."""
    from robust_mmr.tasks.data import TASK_MANIFESTS

    return {"data": data_identity(args.data, TASK_MANIFESTS.get(task["task"], "image_text.jsonl")),
            "max_items": args.max_items, "protocols": list(protocols), "seed": args.seed,
            "corruptions": args.corruptions, "text_perturbations": args.text_perturbations,
            "severities": list(severities), "modality": args.modality}


def results_path(run: Path, task: dict, record: dict) -> Path:
    """``RUN/results.json`` for an evaluation of every test item of the data the run was fine-tuned on (what the
    model card quotes); any other evaluation goes beside it as ``results-<hash of its record>.json``, so several
    evaluations of one run coexist and none passes for another."""
    own = Path(task["data"]).resolve() == Path(record["data"]["path"]) and record["max_items"] is None
    if own:
        return run / "results.json"
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10]
    return run / f"results-{digest}.json"


def _reference_cells(path: Path) -> list[dict]:
    """The perturbed cells of an evaluated reference run (its directory or its results JSON)."""
    from robust_mmr.errors import InputError

    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"--reference {path}: no results.json (evaluate the reference run first)")
    cells = json.loads(file.read_text(encoding="utf-8")).get("perturbed", {}).get("cells")
    if not cells:
        raise InputError(f"--reference {path}: has no perturbed results")
    return cells


def _evaluate(args: argparse.Namespace) -> int:
    from robust_mmr.evaluation.protocols import PROTOCOLS, corruption_errors, evaluate_run

    protocols = PROTOCOLS if args.protocol == "all" else tuple(args.protocol.split(","))
    severities = tuple(_int_list(args.severities, "--severities"))
    if args.max_items is not None and args.max_items < 1:
        raise InputError(f"--max-items {args.max_items}: expected a positive number of test items")
    if args.out is not None and not args.out.parent.is_dir():
        raise InputError(f"--out {args.out}: the folder {args.out.parent} does not exist")
    reference = _reference_cells(args.reference) if args.reference else None
    results = evaluate_run(
        args.run, args.data, protocols, seed=args.seed,
        corruptions=args.corruptions.split(",") if args.corruptions else None,
        text_perts=args.text_perturbations.split(",") if args.text_perturbations else None,
        severities=severities, modality=args.modality,
        max_items=args.max_items, precision=args.precision, device=args.device, batch_size=args.batch_size,
        on_bad_sample=args.on_bad_sample)
    if results.get("skipped"):
        print(f"note: {len(results['skipped'])} test items left out, their image cannot be used (listed in the "
              f"results' 'skipped'), e.g. {results['skipped'][0]['image']}: {results['skipped'][0]['reason']}")
    print(f"{describe(results['precision'])}; device: {results['device']}")
    if reference is not None and "perturbed" in results and results["task"] != "retrieve":
        results["perturbed"]["corruption_error"] = {"reference": str(args.reference),
                                                    **corruption_errors(results["perturbed"]["cells"], reference)}
    task = json.loads((args.run / "task.json").read_text(encoding="utf-8"))
    results["evaluated_on"] = evaluation_record(args, task, protocols, severities)
    out = args.out or results_path(args.run, task, results["evaluated_on"])
    write_json(out, results)
    if results["task"] == "retrieve":
        print(retrieval_table(results))
        print(f"results: {out}")
        return 0
    clean = results["clean"]
    rows = [["clean", clean["overall"], clean["open"], clean["closed"]],
            *[[f"{BASELINE_NAMES.get(name, name)} baseline", value, "", ""]
              for name, value in clean["baselines"].items()]]
    if "perturbed" in results:
        p = results["perturbed"]
        rows += [[f"perturbed {t} (mean)", p[t]["mean_accuracy"], "", ""] for t in ("image", "text", "both") if t in p]
        ce = p.get("corruption_error", {})
        rows += [[f"mCE {t} vs reference", ce[t]["mce"], "", ""] for t in ("image", "text", "both") if t in ce]
    if "missing" in results:
        rows += [[f"missing: {k.replace('_', ' ')}", v, "", ""] for k, v in results["missing"].items()]
    if "cross_domain" in results:
        cd = results["cross_domain"]
        rows.append([f"held-out {cd['held_out']}", cd["ood"]["overall"], cd["ood"]["open"], cd["ood"]["closed"]])
    print(format_table(["condition", "accuracy", "open", "closed"], rows,
                       title=f"{results['task']} on {results['n_test']} test items ({results['oov_test_answers']} answers "
                             "outside the vocabulary, counted wrong)"))
    print(f"results: {out}")
    return 0


def retrieval_table(results: dict) -> str:
    """A terminal table of a retrieval results dict: R@1 / R@10 / mean rank per direction, and ΔMR."""
    def row(name: str, m: dict, delta: dict | None = None) -> list:
        return [name, m["i2t"]["r1"], m["t2i"]["r1"], m["i2t"]["r10"], m["t2i"]["r10"], m["i2t"]["mean_rank"],
                m["t2i"]["mean_rank"], "" if delta is None else delta["mean"]]

    clean = results["clean"]
    rows = [row("clean (ITC)", clean)]
    if "itm_rerank" in clean:
        rows.append(row(f"clean, ITM re-rank top-{clean['itm_rerank']['k']}", clean["itm_rerank"]))
    for target in ("image", "text", "both"):
        cells = [c for c in results.get("perturbed", {}).get("cells", []) if c["target"] == target]
        if cells:
            mean = {d: {k: float(statistics.fmean([c[d][k] for c in cells])) for k in ("r1", "r10", "mean_rank")}
                    for d in DIRECTIONS}
            rows.append(row(f"perturbed {target} (mean)", mean, results["perturbed"][target]["delta_mr"]))
    cross = results.get("cross_domain")
    if cross:
        rows.append(row(f"in-domain reference ({cross['n_test']} pairs)", cross["iid"]))
        rows.append(row(f"held out {cross['held_out']} ({cross['n_test']} pairs)", cross["ood"], cross["delta_mr"]))
    headers = ["condition", "R@1 i→t", "R@1 t→i", "R@10 i→t", "R@10 t→i", "MR i→t", "MR t→i", "ΔMR"]
    title = f"retrieval over {results['n_test']} test captions / {results['n_images']} images"
    return "\n".join([format_table(headers, rows, title=title), *(f"note: {n}" for n in results["notes"])])
