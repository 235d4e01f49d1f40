"""Export a pre-training or fine-tuning run as a self-contained model directory with a generated model card.

The export holds what loading needs and nothing that unpickles: ``model.safetensors``, ``config.yaml`` (the
backbone's resolved config), ``task.json`` for a fine-tuned run, ``results.json`` where the run was evaluated,
and ``README.md``, the model card: method and backbone, the data and training steps, the evaluation table (mean ±
std over the seed runs given, else the one run with its bootstrap 95% CI) beside the baselines, intended use
and limits. It loads like the run itself: :func:`robust_mmr.training.checkpoint.load_pretrained` for a
pre-training export, :class:`robust_mmr.tasks.predict.RunPredictor` (or ``load_finetuned``) for a fine-tuned one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from robust_mmr.errors import InputError
from robust_mmr.evaluation.metrics import mean_std
from robust_mmr.runfolder import claim, file_sha256

COPIED = ("model.safetensors", "config.yaml", "task.json", "results.json")
CARD_METRICS = (("clean accuracy", ("clean", "overall")), ("open", ("clean", "open")), ("closed", ("clean", "closed")),
                ("perturbed (mean over cells)", ("perturbed", "mean_accuracy")),
                ("image removed", ("missing", "image_removed")), ("text removed", ("missing", "text_removed")),
                ("held-out domain", ("cross_domain", "ood", "overall")), ("domain RR", ("cross_domain", "rr")))


def export_run(run_dir: str | Path, out: str | Path, seed_runs: list[str | Path] = ()) -> Path:
    """Copy the loadable files of ``run_dir`` to ``out`` and write its model card; returns the card's path.
    ``seed_runs``: evaluated runs of the same recipe with other seeds, for the card's mean ± std."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "model.safetensors").is_file() or not (run_dir / "config.yaml").is_file():
        raise InputError(f"{run_dir}: not a run directory (needs model.safetensors and config.yaml)")
    if out.resolve() == run_dir.resolve():
        raise InputError("--out must be another directory than the run")
    _check_weights(run_dir)
    claim(out, "export", {"source": str(run_dir.resolve())})  # refuses a folder holding anything else
    for name in COPIED:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)  # an earlier export of this run may have had it
    card = out / "README.md"
    card.write_text(model_card(run_dir, [Path(p) for p in seed_runs]), encoding="utf-8")
    return card


def _check_weights(run_dir: Path) -> None:
    """The run's weights must load, and be the ones its task.json names (an :class:`InputError` otherwise)."""
    from safetensors import safe_open

    task = _json(run_dir / "task.json")
    if task and task.get("weights_sha256") and file_sha256(run_dir / "model.safetensors") != task["weights_sha256"]:
        raise InputError(f"{run_dir / 'model.safetensors'}: not the weights task.json was written with")
    try:
        with safe_open(str(run_dir / "model.safetensors"), framework="pt") as fh:
            for key in fh.keys():
                fh.get_slice(key)
    except Exception as err:  # safetensors' own error types
        raise InputError(f"{run_dir / 'model.safetensors'}: not a readable safetensors file ({err})") from err


def model_card(run_dir: Path, seed_runs: list[Path]) -> str:
    """The Markdown model card of a run."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    task = _json(run_dir / "task.json")  # None for a pre-training run
    pretrained = task is None or task.get("init") != "scratch"
    if task is None:
        pretrain = _json(run_dir / "summary.json")
    else:  # the pre-training run it started from, where it still exists
        pretrain = _json(Path(task["init"]) / "summary.json") if pretrained else None
    model = config["model"]
    method = config.get("objective", {}).get("method", "mmr")
    title = f"robust-mmr {task['task'] if task else 'pre-trained'} model ({method if pretrained else 'no pre-training'})"
    lines = [f"# {title}", "",
             "Made with robust-mmr (Robust Multi-Modal Masked Reconstruction, arXiv 2602.17689). Load it without "
             "unpickling anything: `robust_mmr.tasks.predict.RunPredictor.load(DIR)` (fine-tuned) or "
             "`robust_mmr.training.checkpoint.load_pretrained(DIR)`; `robust-mmr predict DIR ...` from the shell.", "",
             "## Model", "",
             f"- backbone: ViT {model['vision']['hidden']}-d × {model['vision']['layers']} (init `{model['vision']['init']}`), "
             f"text {model['text']['hidden']}-d × {model['text']['layers']} (init `{model['text']['init']}`), "
             f"{model['fusion']['layers']} co-attention fusion layer(s) at {model['fusion']['hidden']}; "
             f"{model['image_size']} px, {model['channels']} channel(s), {model['max_text_length']} text tokens",
             f"- pre-training method: `{method}`" if pretrained else "- no pre-training (backbone trained from "
                                                                      "scratch on the task)"]
    if pretrained and pretrain is None:
        lines += [f"- pre-training: the run `{task['init']}` (its summary is not at that path any more)"]
    if pretrain:
        lines += [f"- pre-training: {pretrain.get('steps')} steps at batch {config['train']['batch_size']} on "
                  f"{pretrain.get('train_pairs')} image–text pairs (`{pretrain.get('data', 'data not recorded')}`), "
                  f"final loss {pretrain.get('final_metrics', {}).get('train/loss')}"]
    if task:
        ft = task["finetune"]
        holdout = task.get("holdout")
        lines += [f"- fine-tuning: task `{task['task']}` on `{task.get('data', 'data not recorded')}` "
                  f"({', '.join(f'{k} {v}' for k, v in task.get('counts', {}).items())} records), "
                  f"{'probe (frozen backbone)' if ft.get('freeze_backbone') else 'LP-FT (head on frozen features, then everything)' if ft.get('lp_ft') else 'full fine-tuning'}, epoch "
                  f"{task.get('best_epoch', -1) + 1} of {task.get('epochs_run', '?')} kept on the validation split; "
                  + (f"held out {holdout['key']}={holdout['value']}" if holdout else "no domain held out")]
    lines += ["", "## Evaluation", ""] + _evaluation_table(run_dir, seed_runs)
    lines += ["", "## Intended use and limits", "",
              "- For research on the robustness of medical vision-and-language models. **Not a medical device**: its "
              "answers must not inform the care of any patient.",
              "- Numbers hold for the data and protocol named above only; a model trained on a few thousand images "
              "on a CPU is far from the paper's scale, and accuracy at or near the question-only baseline means the "
              "model does not use the image for those questions.",
              "- Inputs: grayscale or RGB images (DICOM, PNG, JPEG) resized to the size above; English text."]
    return "\n".join(lines) + "\n"


def _evaluation_table(run_dir: Path, seed_runs: list[Path]) -> list[str]:
    runs = [run_dir, *[p for p in seed_runs if Path(p).resolve() != run_dir.resolve()]]
    results = [r for r in (_json(p / "results.json") for p in runs) if r is not None]
    if not results:
        return ["Not evaluated yet (`robust-mmr evaluate RUN --data DIR`, then export again)."]
    measured = results[0].get("evaluated_on", {}).get("data", {})
    if any(r.get("task") == "retrieve" for r in results):
        return _retrieval_table(results)
    n = len(results)
    header = ["| metric | " + ("mean ± std over " + f"{n} seeds" if n > 1 else "value (bootstrap 95% CI)") + " |",
              "|---|---|"]
    rows = []
    for name, path in CARD_METRICS:
        values = [v for v in (_get(r, path) for r in results) if isinstance(v, (int, float))]
        if values:
            mean, std = mean_std(values)
            cell = f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"
            if n == 1 and path == ("clean", "overall") and results[0]["clean"].get("ci95"):
                lo, hi = results[0]["clean"]["ci95"]
                cell += f" ({lo:.3f}–{hi:.3f})"
            rows.append(f"| {name} | {cell} |")
    baselines = results[0]["clean"].get("baselines", {})
    notes = [f"Baselines on the same test items: majority answer {baselines['majority']:.3f}, question-only "
             f"{baselines['question_only']:.3f}." if baselines else "",
             f"Test items: {results[0].get('n_test')} (every test item of {measured.get('path', 'the run data')}, "
             f"manifest sha256 {str(measured.get('manifest_sha256'))[:12]}); evaluation seed {results[0].get('seed')}."
             if measured else f"Test items: {results[0].get('n_test')}; evaluation seed {results[0].get('seed')} "
             "(an evaluation that predates recorded data: re-evaluate to have the card name it)."]
    return header + rows + [""] + [n for n in notes if n]


def _retrieval_table(results: list[dict]) -> list[str]:
    rows = ["| metric | " + ("mean ± std" if len(results) > 1 else "value") + " |", "|---|---|"]
    for name, key in (("R@1", "r1"), ("R@10", "r10"), ("mean rank", "mean_rank")):
        mean, std = mean_std([r["clean"][key] for r in results])
        rows.append(f"| {name} (both directions) | {mean:.3f}" + (f" ± {std:.3f}" if len(results) > 1 else "") + " |")
    return rows + ["", f"Test pairs: {results[0].get('n_test')}."]


def _get(tree: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
