"""``robust-mmr data``: synthetic set, validation, statistics, conversion, leakage dedup, domain splits."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from robust_mmr.cli.tables import format_table
from robust_mmr.data.converters import CONVERTERS, convert_dataset
from robust_mmr.data.schema import ImageTextRecord
from robust_mmr.data.stats import count_table, domain_key, example_grid, load_manifests
from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.data.validate import validate_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="generate, validate and describe datasets")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    synth = commands.add_parser("synth", help="generate the synthetic domain-shift dataset")
    synth.add_argument("--out", type=Path, required=True, help="output directory")
    synth.add_argument("--n", type=int, default=2000, help="number of image-report pairs (default 2000)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--domains", type=int, default=3, help="number of acquisition domains, 2-5 (default 3)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.set_defaults(func=_synth)

    validate = commands.add_parser("validate", help="check every record of a dataset directory or manifest")
    validate.add_argument("path", type=Path, help="dataset directory or a manifest file")
    validate.add_argument("--strict", action="store_true", help="exit 1 if any record is rejected")
    validate.add_argument("--no-images", action="store_true", help="skip decoding images (schema checks only)")
    validate.add_argument("--show", type=int, default=50, help="problems to print (default 50; all go to --report)")
    validate.add_argument("--report", type=Path, help="write the full report as JSON here")
    validate.set_defaults(func=_validate)

    stats = commands.add_parser("stats", help="counts per split/domain/answer type and an example grid PNG")
    stats.add_argument("path", type=Path, help="dataset directory")
    stats.add_argument("--png", type=Path, help="grid output (default DIR/stats.png)")
    stats.set_defaults(func=_stats)

    convert = commands.add_parser("convert", help="convert a native dataset release to canonical manifests")
    convert.add_argument("--source", required=True, choices=list(CONVERTERS))
    convert.add_argument("--in", dest="in_path", type=Path, required=True,
                         help="native release folder (csv: the .csv/.jsonl file)")
    convert.add_argument("--out", type=Path, required=True, help="output dataset directory (images are linked)")
    convert.add_argument("--variant", help="vqa-rad: mevf (default) or original")
    convert.add_argument("--lang", help="slake: en (default), zh or all")
    convert.add_argument("--categories", help="vqa-med-2019: e.g. C1,C2,C3 (default C1,C2,C3,C4)")
    convert.add_argument("--label-column", help="melinda: label column (default p_meth_label)")
    convert.add_argument("--columns", help="csv: FIELD=COLUMN,... e.g. id=fig,image=path,text=caption")
    convert.add_argument("--images", help="csv/melinda: image folder (csv: default the table's folder)")
    convert.add_argument("--split", help="csv: split of rows without a split column (default train)")
    convert.set_defaults(func=_convert)


def _synth(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    card = generate_dataset(args.out, args.n, seed=args.seed, num_domains=args.domains, size=args.size)
    elapsed = time.perf_counter() - start
    counts = card["counts"]
    print(f"wrote {counts['images']} images, {counts['images']} reports and {counts['questions']} questions "
          f"to {args.out} in {elapsed:.1f} s")
    rows = [[d["name"], d["report_style"], d["noise"], d["noise_level"], d["gamma"], d["blur_sigma"],
             d["downsample"], d["artefact"]] for d in card["domains"]]
    print(format_table(["domain", "report", "noise", "level", "gamma", "blur", "downsample", "artefact"], rows,
                       title="acquisition domains"))
    return 0


def _validate(args: argparse.Namespace) -> int:
    report = validate_dataset(args.path, check_images=not args.no_images, progress=sys.stderr.isatty())
    rows = [[m.file, m.kind, m.kept, m.rejected] for m in report.manifests]
    print(format_table(["manifest", "kind", "kept", "rejected"], rows, title=f"validation of {args.path}"))
    if report.problems:
        print()
        print(format_table(["reason", "count"], report.reason_counts().most_common(), title="rejection reasons"))
        print()
        for problem in report.problems[: max(args.show, 0)]:
            print(problem)
        hidden = len(report.problems) - max(args.show, 0)
        if hidden > 0:
            print(f"... and {hidden} more problems (--show N to print more, --report FILE for all)")
    if args.report:
        args.report.write_text(report.to_json(), encoding="utf-8")
        print(f"full report: {args.report}")
    print(f"kept {report.kept} records, rejected {report.rejected}")
    return 1 if args.strict and report.rejected else 0


def _stats(args: argparse.Namespace) -> int:
    manifests = load_manifests(args.path)
    for kind, records in manifests.items():
        key = domain_key(records)
        headers, rows = count_table(records, key)
        print(format_table(headers, rows, title=f"{kind}: {len(records)} records"))
        print()
    pairs = manifests.get("image_text") or manifests.get("classification")
    if pairs is None:
        # VQA-only datasets: show each image once with its first question as caption.
        seen: dict[str, ImageTextRecord] = {}
        for r in manifests["vqa"]:
            seen.setdefault(r.image, ImageTextRecord(r.id, r.image, f"Q: {r.question} A: {r.answer}", r.split, r.meta))
        pairs = list(seen.values())
    png = example_grid(args.path, pairs, domain_key(pairs), args.png or args.path / "stats.png")
    card = args.path / "dataset.json"
    if card.is_file():
        print(f"generator: {json.loads(card.read_text())['generator']}")
    print(f"example grid: {png}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    options = {"variant": args.variant, "lang": args.lang, "categories": args.categories,
               "label_column": args.label_column, "columns": args.columns, "images": args.images, "split": args.split}
    report = convert_dataset(args.source, args.in_path, args.out, **options)
    print(f"converted {args.source}: kept {report.kept}, skipped {report.skipped} -> {args.out}")
    for note in report.notes:
        print(f"  note: {note}")
    if report.skipped:
        print(format_table(["reason", "count"], report.skip_counts.most_common(), title="skipped rows"))
        for example in report.examples:
            print(f"  {example}")
    print(f"report: {args.out / 'conversion.json'}")
    return 0
