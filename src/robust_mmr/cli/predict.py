"""``robust-mmr predict`` (answers for new images and questions) and ``robust-mmr export`` (a model directory
with a model card)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robust_mmr.cli.tables import format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="answer questions about new images (VQA), classify, or rank captions")
    p.add_argument("run", type=Path, help="fine-tuned run directory (or its export)")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--image", help="one image (DICOM, PNG, JPEG)")
    given.add_argument("--input", type=Path, help="rows to answer: a CSV with a header (image, question|text) or JSONL")
    p.add_argument("--question", help="the question about --image (VQA)")
    p.add_argument("--text", help="the text paired with --image (classification)")
    p.add_argument("--captions", type=Path, help="retrieval: a file of candidate captions, one per line")
    p.add_argument("--root", type=Path, help="folder that relative image paths are read from (default: the input "
                                             "file's folder, or the current one)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="auto", help="where the model runs: auto (a CUDA GPU when one is present, "
                                                    "else the CPU), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("auto", "32-true", "bf16-mixed"), default="auto",
                   help="inference precision (auto: bf16 on a bf16 GPU or where the CPU has native bf16, else fp32)")
    p.add_argument("--out", type=Path, help="write the predictions as JSON Lines")
    p.set_defaults(func=_predict)

    e = subparsers.add_parser("export", help="a run as a model directory: safetensors, config, model card")
    e.add_argument("run", type=Path, help="pre-training or fine-tuning run directory")
    e.add_argument("--out", type=Path, required=True, help="export directory")
    e.add_argument("--seed-runs", nargs="*", type=Path, default=[],
                   help="evaluated runs of the same recipe with other seeds: the card shows mean ± std over them")
    e.set_defaults(func=_export)


def _predict(args: argparse.Namespace) -> int:
    from robust_mmr.errors import InputError
    from robust_mmr.runfolder import refuse_same_path
    from robust_mmr.tasks.predict import TEXT_FIELD, RunPredictor, read_rows

    if args.out is not None:
        refuse_same_path(args.out, {"--input": args.input, "the run": args.run})
        if not args.out.parent.is_dir():
            raise InputError(f"--out {args.out}: the folder {args.out.parent} does not exist")
    predictor = RunPredictor.load(args.run, device=args.device, precision=args.precision)
    field = TEXT_FIELD[predictor.task]
    if args.input:
        rows, root = read_rows(args.input), args.root or args.input.parent
    else:
        rows, root = [{"image": args.image, field: getattr(args, field, None) or ""}], args.root or Path(".")
    gallery = None
    if args.captions:
        if not args.captions.is_file():
            raise InputError(f"--captions {args.captions}: no such file")
        gallery = [line.strip() for line in args.captions.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = predictor.predict(rows, root=root, top_k=args.top_k, gallery=gallery)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
    print(format_table(["row", "image", field, "prediction"], [_row(r, field) for r in results],
                       title=f"{predictor.task} predictions of {args.run}"))
    failed = sum("error" in r for r in results)
    print(f"{len(results) - failed} answered, {failed} with an error" + (f"; written to {args.out}" if args.out else ""))
    return 1 if failed else 0


def _row(result: dict, field: str) -> list:
    if "error" in result:
        prediction = f"ERROR: {result['error']}"
    elif "captions" in result:
        prediction = " | ".join(f"{c['caption'][:40]} ({c['similarity']:.2f})" for c in result["captions"])
    else:
        key = "answer" if "answer" in result else "label"
        prediction = ", ".join(f"{t[key]} ({t['p']:.2f})" for t in result["top"])
    return [result["row"], str(result.get("image", "")), str(result.get(field, "") or "")[:50], prediction]


def _export(args: argparse.Namespace) -> int:
    from robust_mmr.experiments.export import export_run

    card = export_run(args.run, args.out, args.seed_runs)
    print(f"exported {args.run} → {args.out} (model card: {card})")
    return 0
