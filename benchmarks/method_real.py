"""Method benchmark on real data: pre-train on VQA-Med-2019, fine-tune VQA on VQA-RAD leave-one-organ-out.

Two stages.

``prepare`` converts VQA-Med-2019 and VQA-RAD (native releases under ``--data-root``, default
``../shared/data``) into ``<out>/sources``, captions every VQA-Med-2019 training and validation image
from its category answers (:mod:`robust_mmr.data.captions`), removes the images that are also VQA-RAD
test images (same synpic id or near-duplicate pixels, :mod:`robust_mmr.data.dedup`), and writes a
compact, self-contained copy to ``<out>/data``: ``pretrain/image_text.jsonl`` and ``vqa_rad/vqa.jsonl``,
each with its ``images/`` as 8-bit grayscale PNG whose longest side is ``--image-size`` (aspect kept),
plus ``prepare.json`` with the counts. VQA-Med-2019's test images are left out of pre-training: their
captions would be made of its test reference answers, so a checkpoint could no longer be evaluated on
VQA-Med-2019, and each has a single question, so a single-fact caption.

``run`` needs only ``<out>/data`` (so it runs where ``../shared`` is absent, e.g. a GPU machine given
the folder): every variant pre-trains on the captions once per seed (the ``--model`` backbone, by default the
``real`` preset, at the prepared image size or ``--image-size``), then fine-tunes VQA on VQA-RAD once per held-out organ (HEAD,
CHEST, ABD: trained on the other two) and evaluates clean, under image corruptions (three never
used in training), text perturbations, with a modality removed and on the held-out organ. Output:
``<out>/summary.md`` (the tables of :mod:`robust_mmr.evaluation.report_methods` averaged over organs, then one table per held-out
organ with open / closed / overall accuracy, both RRs and the majority and question-only baselines),
``summary.json``, ``summary.png`` and every run under ``<out>/runs``. ``--splits loo`` or ``--splits standard``
runs one of the two VQA-RAD settings only (default: both).
The held-out organ is held out of fine-tuning only: pre-training sees VQA-Med-2019 images of every organ
(the VQA-RAD test images themselves are removed from it), unlike the synthetic benchmark, whose held-out
site is never pre-trained on.

    python benchmarks/method_real.py prepare --out runs/bench-real
    python benchmarks/method_real.py run --out runs/bench-real --steps 200 --finetune-epochs 2 --image-size 64 \\
        --max-eval-items 150 --parallel 2 --threads 1
    # on a GPU machine, with runs/bench-real-gpu/data prepared or copied there (not run on a GPU here):
    python benchmarks/method_real.py run --out runs/bench-real-gpu --model tiny --steps 2000 --finetune-epochs 10 \\
        --accelerator gpu --parallel 6 --threads 2 --workers 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from robust_mmr.data.captions import captions_from_category_answers
from robust_mmr.data.converters import convert_dataset
from robust_mmr.data.dedup import remove_test_overlaps
from robust_mmr.data.images import ImageReadError, load_image, resolve_image_path
from robust_mmr.data.manifest import read_manifest, write_manifest
from robust_mmr.data.schema import Record
from robust_mmr.data.splits import image_disjoint_split, sha256
from robust_mmr.errors import InputError
from robust_mmr.evaluation.report_methods import (Section, agreed_value, format_values, headline, merge_documents,
                                                   summarise, write_document)
from robust_mmr.evaluation.report_tables import markdown_table
from robust_mmr.experiments.arguments import (
    SEVERITIES,
    TEXT_PERTURBATIONS,
    add_common_arguments,
    command_line,
    probe_settings,
    resolve_variants,
    threads_per_job,
    training_overrides,
)
from robust_mmr.experiments.job import PROTOCOL_NAMES, Job
from robust_mmr.experiments.logs import log
from robust_mmr.experiments.runner import finished_results, run_jobs

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
PRETRAIN_SPLITS = ("train", "val")  # VQA-Med-2019 splits captioned for pre-training (see the docstring)
HOLDOUT_KEY = "image_organ"
COMPACT_BUDGET_MB = 40  # what is carried to a GPU machine
# Corruptions of the generic registry (VQA-RAD mixes CT, MRI and X-ray; pre-training draws from the same
# registry): five training-role ones, then three eval-role ones never used in training. The first four
# are also paired with the text perturbations ("both" cells).
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast_down", "gamma_up", "bias_field",
               "impulse_noise", "pixelate", "burned_in_text")
# MiniLM tokens: 42 of the 3,700 captions are longer (the end of their finding is cut); VQA-RAD questions <= 32
MAX_TEXT_LENGTH = 40
# Fine-tuning: the FinetuneConfig defaults at batch 64 with patience 8, as in the recipe search (recipe_real.py).
# VQA-RAD has no val split and its test questions are asked about training images, so validation is 10% of the
# training *questions* (val_carve auto → question), the same for every seed: no image leaves training. An earlier
# image carve (20% of the images, different per seed) cost the models a fifth of the images the test asks about.
FINETUNE = {"batch_size": 64, "patience": 8}
DISJOINT_DIR = "vqa_rad_image_disjoint"
DISJOINT = "split:image-disjoint"  # the job hold-out naming it (robust_mmr.experiments.job.SPLIT_PREFIX)
DISJOINT_TEST_FRACTION = 0.15  # of each organ's images: ~47 of 315 images, ~500 questions (like the 451 of MEVF's)
STANDARD = ""  # the hold-out value of the standard (MEVF) train/test split: nothing held out
# per-held-out-organ table: (headline key, column title)
ORGAN_METRICS = (("clean", "in-domain"), ("clean_open", "in-dom. open"), ("clean_closed", "in-dom. closed"),
                 ("held_out", "held-out"), ("held_out_open", "held-out open"),
                 ("held_out_closed", "held-out closed"), ("domain_rr", "domain RR"),
                 ("perturbation_rr", "perturbation RR"))


# ---------------------------------------------------------------- prepare


def prepare(args: argparse.Namespace) -> None:
    """Convert, caption, deduplicate and write the compact copy with its ``prepare.json``."""
    sources, data = args.out / "sources", args.out / "data"
    med_dir, rad_dir = sources / "vqa_med_2019", sources / "vqa_rad"
    log(f"converting VQA-Med-2019 and VQA-RAD from {args.data_root} → {sources}")
    convert_dataset("vqa-med-2019", args.data_root / "vqa_med_2019", med_dir)
    convert_dataset("vqa-rad", args.data_root / "vqa_rad", rad_dir)
    rad = read_manifest(rad_dir / "vqa.jsonl")
    captions, counts = pretrain_captions(read_manifest(med_dir / "vqa.jsonl"), med_dir,
                                         [r for r in rad if r.split == "test"], rad_dir)
    if data.exists():
        log(f"replacing the previous compact copy {data}")
        shutil.rmtree(data)
    pretrain, bad_pretrain = compact_dataset(captions, med_dir, data / "pretrain", args.image_size)
    pretrain = [replace(r, split="train", meta={**r.meta, "source_split": r.split}) for r in pretrain]
    task, bad_task = compact_dataset(rad, rad_dir, data / "vqa_rad", args.image_size)
    write_manifest(data / "pretrain" / "image_text.jsonl", pretrain)
    write_manifest(data / "vqa_rad" / "vqa.jsonl", task)
    disjoint_card = write_image_disjoint(task, data)

    size_mb = folder_bytes(data) / 2**20
    counts = {"image_size": args.image_size, "data_root": str(args.data_root), "size_mb": round(size_mb, 2), **counts,
              "pretrain": {"images": len(pretrain), "unreadable": bad_pretrain,
                           "by_source_split": dict(Counter(r.meta["source_split"] for r in pretrain))},
              "vqa_rad": {"images": len({r.image for r in task}), "qa_per_organ": qa_per_organ(task),
                          "answer_types": dict(Counter(f"{r.split} {r.answer_type}" for r in task)),
                          "unreadable": bad_task},
              "vqa_rad_image_disjoint": disjoint_card}
    (data / "prepare.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    log(f"compact copy {data}: {len(pretrain)} pre-training images, {len(task)} VQA-RAD QA on "
        f"{counts['vqa_rad']['images']} images, {size_mb:.1f} MB")
    if size_mb > COMPACT_BUDGET_MB:
        log(f"WARNING: {size_mb:.1f} MB is over the {COMPACT_BUDGET_MB} MB meant to be carried; "
            "prepare again with a smaller --image-size")


def write_image_disjoint(task: list[Record], data: Path) -> dict:
    """VQA-RAD re-split image-disjoint (:func:`robust_mmr.data.splits.image_disjoint_split`, per organ) into
    ``data/vqa_rad_image_disjoint`` beside the standard split, its ``images`` a relative link to the same compact
    images; returns its card (also its ``split.json``, with the manifest's sha256)."""
    records, card = image_disjoint_split({"vqa": task}, HOLDOUT_KEY, DISJOINT_TEST_FRACTION, seed=0)
    out = data / DISJOINT_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").symlink_to(Path("..") / "vqa_rad" / "images", target_is_directory=True)
    write_manifest(out / "vqa.jsonl", records["vqa"])
    card = {"source": "vqa_rad (the standard split's records)", **card,
            "manifest_sha256": {"vqa.jsonl": sha256(out / "vqa.jsonl")}}
    (out / "split.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    log(f"image-disjoint VQA-RAD split: {card['counts']['vqa']} records, {card['test_images']} test images never "
        "trained on")
    return card


def pretrain_captions(med: list[Record], med_dir: Path, rad_test: list[Record],
                      rad_dir: Path) -> tuple[list[Record], dict]:
    """Captions of the VQA-Med-2019 :data:`PRETRAIN_SPLITS` images minus those shared with the VQA-RAD
    test split, and the counts of each step (for ``prepare.json``)."""
    chosen = [r for r in med if r.split in PRETRAIN_SPLITS]
    captions = captions_from_category_answers(chosen)
    images = Counter(r.split for r in {r.image: r for r in chosen}.values())
    dropped = sorted({r.image for r in chosen} - {c.image for c in captions})
    log(f"captioned {len(captions)} of {sum(images.values())} VQA-Med-2019 {'+'.join(PRETRAIN_SPLITS)} images "
        f"({len(dropped)} without a usable answer)")
    log("removing images shared with the VQA-RAD test split (synpic id, dHash) ...")
    kept, overlaps = remove_test_overlaps(captions, med_dir, [(rad_test, rad_dir)])
    log(f"removed {sum(overlaps.removed.values())}: {dict(overlaps.removed)}")
    counts = {"vqa_med_2019": {"splits": list(PRETRAIN_SPLITS), "images": dict(images),
                               "captioned": dict(Counter(c.split for c in captions)),
                               "dropped_without_usable_answer": len(dropped), "dropped_images": dropped,
                               "test_images_left_out": len({r.image for r in med if r.split == "test"})},
              "overlaps_with_vqa_rad_test": overlaps.to_dict()}
    return kept, counts


def compact_dataset(records: list[Record], src_root: Path, dst_root: Path, size: int) -> tuple[list[Record], list[str]]:
    """Write every distinct image of ``records`` to ``dst_root`` as a grayscale PNG (same relative path,
    ``.png``); returns the records pointing at the copies and the images that could not be read
    (their records are left out)."""
    copies, unreadable = {}, []
    for image in tqdm(dict.fromkeys(r.image for r in records), desc=f"images → {dst_root.name}", unit="img"):
        target = Path(image).with_suffix(".png").as_posix()
        try:
            write_compact_image(resolve_image_path(src_root, image), dst_root / target, size)
        except ImageReadError as err:
            unreadable.append(f"{image}: {err.reason}")
            continue
        copies[image] = target
    return [replace(r, image=copies[r.image]) for r in records if r.image in copies], unreadable


def write_compact_image(src: Path, dst: Path, size: int) -> None:
    """``src`` as an 8-bit grayscale PNG whose longest side is ``size`` (aspect kept, Lanczos)."""
    image = Image.fromarray(grey_uint8(load_image(src)), mode="L")
    scale = size / max(image.size)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    image.resize(shape, Image.Resampling.LANCZOS).save(dst, optimize=True)


def grey_uint8(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) uint8/uint16 → (H, W) uint8; colour is averaged like the model's 1-channel input
    (``robust_mmr.training.data.image_to_tensor``), alpha ignored, 16-bit scaled by 1/257."""
    x = pixels.astype(np.float32)
    if x.ndim == 3:
        x = x[..., :3].mean(axis=-1)
    if pixels.dtype == np.uint16:
        x /= 257.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def qa_per_organ(records: list[Record]) -> dict[str, dict[str, int]]:
    """VQA-RAD QA count per ``image_organ`` and split."""
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        per = counts.setdefault(str(r.meta[HOLDOUT_KEY]), {})
        per[r.split] = per.get(r.split, 0) + 1
    return dict(sorted(counts.items()))


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- run


def run(args: argparse.Namespace, command: str) -> None:
    """Pre-train, fine-tune per held-out organ and evaluate every variant × seed; write the summary."""
    data = args.out / "data"
    if not (data / "prepare.json").is_file():
        sys.exit(f"error: {data} holds no prepared data; run first: "
                 f"python benchmarks/method_real.py prepare --out {args.out}")
    prepared = json.loads((data / "prepare.json").read_text(encoding="utf-8"))
    image_size = args.image_size or prepared["image_size"]
    test_records = [r for r in read_manifest(data / "vqa_rad" / "vqa.jsonl") if r.split == "test"]
    organs = sorted({str(r.meta[HOLDOUT_KEY]) for r in test_records})
    variants = resolve_variants(args)
    overrides = [f"model.image_size={image_size}", f"model.max_text_length={MAX_TEXT_LENGTH}", f"train.lr={args.lr}",
                 f"train.warmup_steps={max(1, args.steps // 20)}", *training_overrides(args)]
    finetune = {**FINETUNE, "max_epochs": args.finetune_epochs, "accelerator": args.accelerator}
    loo = tuple(f"{HOLDOUT_KEY}={organ}" for organ in organs)
    splits = {"loo": (f"Leave one organ out (mean over the {len(loo)} folds)", loo),
              "standard": ("Standard split (MEVF train/test)", (STANDARD,)),
              "disjoint": ("Image-disjoint split (no test image trained on)", (DISJOINT,))}
    protocols = {name: tuple(dict.fromkeys((*args.protocols, *(("blind",) if name in args.blind_for else ()))))
                 for name in variants}
    jobs = [Job(variant=name, overrides=(*overrides, *extra), seed=seed, pretrain_data=str(data / "pretrain"),
                task_data=str(data / "vqa_rad"), out=str(args.out / "runs" / name / f"seed{seed}"),
                holdouts=tuple(h for s in args.splits for h in splits[s][1]), finetune=finetune,
                corruptions=CORRUPTIONS, text_perturbations=TEXT_PERTURBATIONS, severities=SEVERITIES,
                max_eval_items=args.max_eval_items, retrieval=False, threads=threads_per_job(args), preset=args.model,
                protocols=protocols[name], probe_finetune=probe_settings(args),
                split_data={DISJOINT[len("split:"):]: str(data / DISJOINT_DIR)})
            for seed in args.seeds for name, extra in variants.items()]
    results = finished_results(jobs) if args.summary_only else run_jobs(jobs, args.parallel)
    title = (f"Real-data method benchmark: VQA-Med-2019 captions ({prepared['pretrain']['images']} images) → "
             f"VQA-RAD: {'; '.join(splits[s][0] for s in args.splits)}; {args.model} backbone at {image_size} px, "
             f"{args.steps} pre-training steps at batch {args.batch}")
    sections = tuple(Section(f"{heading}, {name}", protocol, holdouts) for heading, holdouts in
                     (splits[s] for s in args.splits) for protocol, name in PROTOCOL_NAMES.items()
                     if protocol != "blind")
    document = summarise(results, list(variants), command, sections)
    if not document["sections"] and all("error" in r for r in results):
        raise InputError(f"every job failed; nothing to summarise (tracebacks above, runs under {args.out / 'runs'})")
    if not document["sections"]:
        raise InputError("nothing to tabulate: the trained blind model is a row beside the variants it serves; "
                         "summarise those with it (e.g. --protocols vqa blind --summary-only)")
    standard = f"{splits['standard'][0]}, {PROTOCOL_NAMES['vqa']}"
    line = None
    if standard in document["sections"]:
        document["standard_test_questions"] = len(test_records)  # for the headline of a later merge
        line = headline(document, standard, "VQA-RAD standard split", len(test_records))
    if "loo" in args.splits:
        document["per_organ"] = organ_document(results, list(variants), organs)
    path = write_document(document, args.out, title, args.publish, line)
    if "loo" in args.splits:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(organ_tables(document["per_organ"]))
    print(path.read_text(encoding="utf-8"))
    log(f"summary: {path} (plot: {args.out / 'summary.png'})")


def organ_document(results: list[dict], order: list[str], organs: list[str]) -> dict:
    """The per-organ numbers (in the summary JSON as ``per_organ``): protocol name → held-out organ →
    ``{"variants": {variant: {metric: per-seed values}}, "baselines": {name: {"clean"/"held_out": values}}}``."""
    document: dict = {}
    for protocol, name in PROTOCOL_NAMES.items():
        per = organ_values(results, protocol)
        if not any((v, f"{HOLDOUT_KEY}={organ}") in per for v in order for organ in organs):
            continue  # this protocol ran on other splits only
        document[name] = {}
        for organ in organs:
            holdout = f"{HOLDOUT_KEY}={organ}"
            document[name][organ] = {"variants": {v: per[(v, holdout)] for v in order if (v, holdout) in per},
                                     "baselines": baseline_values(results, holdout, protocol)}
    return document


def organ_tables(per_organ: dict) -> str:
    """Markdown from :func:`organ_document`: per protocol and held-out organ, mean ± std over seeds of each
    variant's numbers, then the trained blind model of the same fold and the majority and question-only baselines."""
    blind = per_organ.get(PROTOCOL_NAMES["blind"], {})
    lines = []
    for name, organs in ((n, o) for n, o in per_organ.items() if n != PROTOCOL_NAMES["blind"]):
        lines += ["", f"## Per held-out organ, {name}", "", "Domain RR = 1 − (in-domain − held-out) / in-domain; "
                  "perturbation RR = perturbed (all cells) / clean."]
        for organ, cell in organs.items():
            headers = ["variant", "seeds", *(title for _, title in ORGAN_METRICS)]
            rows = [(variant, str(len(values["clean"])), values) for variant, values in cell["variants"].items()]
            rows += [(f"*trained blind ({variant}'s pre-training)*", str(len(values["clean"])), values)
                     for variant, values in blind.get(organ, {}).get("variants", {}).items()]
            rows += [(f"*{baseline}*", "", values) for baseline, values in cell["baselines"].items()]
            body = [[label, seeds, *(format_values(values.get(key, [])) for key, _ in ORGAN_METRICS)]
                    for label, seeds, values in rows]
            lines += ["", f"### {organ} held out ({name})", "", markdown_table(headers, body)]
    return "\n".join(lines) + "\n"


def organ_values(results: list[dict], protocol: str) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(variant, holdout) → metric → per-seed values (failed jobs left out)."""
    table: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in sorted((r for r in results if "error" not in r), key=lambda r: r["job"]["seed"]):
        for holdout, head in r.get(protocol, {}).items():
            perturbed = head.get("perturbed")  # None for the blind model: no image to perturb
            values = {**head, "perturbation_rr": perturbed / head["clean"] if perturbed is not None and head["clean"]
                      else None}
            per = table.setdefault((r["job"]["variant"], holdout), {})
            for key, _ in ORGAN_METRICS:
                if values.get(key) is not None:
                    per.setdefault(key, []).append(values[key])
    return table


def baseline_values(results: list[dict], holdout: str, protocol: str) -> dict[str, dict[str, list[float]]]:
    """Majority / question-only accuracy (in-domain as ``clean``, held-out as ``held_out``), one value per
    seed of the first finished variant: they depend on the fine-tuning split (its seeded validation
    carve-out) and the evaluated items, not on the pre-training."""
    ok = [r for r in results if "error" not in r]
    out: dict[str, dict[str, list[float]]] = {}
    for r in (r for r in ok if r["job"]["variant"] == ok[0]["job"]["variant"]):
        head = r.get(protocol, {}).get(holdout)
        if head is None:
            continue
        for name in ("majority", "question_only"):
            per = out.setdefault(name.replace("_", "-"), {})
            per.setdefault("clean", []).append(head["baselines"]["in_domain"][name])
            if head["baselines"]["held_out"]:
                per.setdefault("held_out", []).append(head["baselines"]["held_out"][name])
    return out


# ---------------------------------------------------------------- merge


def merge(args: argparse.Namespace, command: str) -> None:
    """One summary from published summaries over different seeds (:func:`merge_documents`), with the blind twins
    of ``recipe_real.py`` results as the trained blind model of the section whose lookups they share."""
    documents = [_read_json(path) for path in args.inputs]
    blind = {}
    for path in args.recipe_blind:
        rows = [r for r in _read_json(path) if r["candidate"] == args.model and r.get("blind")]
        if not rows:
            raise InputError(f"{path} holds no blind run of the {args.model!r} candidate")
        lookups = {name.replace("_", "-"): value for name, value in rows[0]["blind"]["baselines"].items()}
        titles = [title for title, summary in documents[0]["sections"].items()
                  if all(np.isclose(summary["baselines"].get(name, (np.nan,))[0], value)
                         for name, value in lookups.items())]
        if not titles:
            raise InputError(f"{path}: its lookups match no section of {args.inputs[0]} (another split?)")
        blind.update({title: [r["blind"]["test"] for r in sorted(rows, key=lambda r: r["seed"])] for title in titles})
    document = merge_documents(documents, command, blind)
    standard = next((t for t in document["sections"] if t.startswith("Standard split")), None)
    line = None
    if standard:
        questions = agreed_value(documents, "standard_test_questions", args.questions, "--questions")
        document["standard_test_questions"] = questions
        line = headline(document, standard, "VQA-RAD standard split", questions)
    path = write_document(document, args.out, args.title, args.publish, line)
    print(path.read_text(encoding="utf-8"))
    log(f"summary: {path} (plot: {args.out / 'summary.png'})")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read {path}: {err}") from err


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    prep = stages.add_parser("prepare", help="convert, caption, deduplicate, write the compact copy")
    prep.add_argument("--out", type=Path, required=True, help="benchmark folder (the copy goes to <out>/data)")
    prep.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                      help="folder holding vqa_med_2019/ and vqa_rad/ in their native layouts")
    prep.add_argument("--image-size", type=int, default=128, help="longest side of the compact images")
    bench = stages.add_parser("run", help="pre-train, fine-tune and evaluate from <out>/data")
    add_common_arguments(bench)
    bench.set_defaults(model="real")  # the recipe search's choice (recipe_real.py, BENCHMARKS.md)
    bench.add_argument("--image-size", type=int, default=None, help="model input size (default: the prepared size)")
    bench.add_argument("--lr", type=float, default=3e-4, help="pre-training learning rate")
    bench.add_argument("--blind-for", nargs="*", default=["mmr"], metavar="VARIANT",
                       help="variants whose jobs also train the blind baseline (the same recipe with the image "
                            "removed in training and at test; default: mmr, the vanilla recipe)")
    bench.add_argument("--splits", nargs="+", choices=("loo", "standard", "disjoint"),
                       default=["standard", "disjoint", "loo"],
                       help="VQA-RAD splits to fine-tune on: the standard split, the image-disjoint one, leave one "
                            "organ out (3 folds)")
    join = stages.add_parser("merge", help="one summary from published summaries over different seeds")
    join.add_argument("inputs", nargs="+", type=Path, help="summary JSONs (published STEM.json or summary.json)")
    join.add_argument("--out", type=Path, required=True, help="folder for summary.{md,json,png}")
    join.add_argument("--recipe-blind", nargs="*", type=Path, default=[],
                      help="recipe_real.py JSONs whose blind twins are the trained blind model")
    join.add_argument("--model", default="real", help="the recipe candidate whose blind twins to read")
    join.add_argument("--questions", type=int, default=None,
                      help="test questions of the standard split, for the headline of inputs that do not record it")
    join.add_argument("--title", default="Real-data method benchmark, seeds merged", help="plot and page title")
    join.add_argument("--publish", type=Path, default=None, help="also write STEM.png and STEM.json")
    args = parser.parse_args(argv)
    try:
        if args.stage == "prepare":
            if args.image_size < 16:
                raise InputError(f"--image-size must be at least 16 (one ViT patch), got {args.image_size}")
            prepare(args)
        elif args.stage == "merge":
            merge(args, command_line("benchmarks/method_real.py", argv))
        else:
            run(args, command_line("benchmarks/method_real.py", argv))
    except InputError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
