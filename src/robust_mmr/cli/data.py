"""``robust-mmr data``: synthetic set, validation, statistics, conversion, leakage dedup, domain splits, shards."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from robust_mmr.cli.tables import format_table
from robust_mmr.data.converters import CONVERTERS, convert_dataset
from robust_mmr.data.dedup import DEFAULT_MAX_DISTANCE, REASON_HASH, REASON_ID, remove_test_overlaps
from robust_mmr.data.manifest import write_manifest
from robust_mmr.data.schema import MANIFEST_NAMES
from robust_mmr.data.shards import DEFAULT_SAMPLES_PER_SHARD, write_shards
from robust_mmr.data.splits import (
    DEFAULT_VAL_FRACTION,
    domain_values,
    folder_name,
    holdout_split,
    image_disjoint_split,
    link_image_roots,
    load_dataset,
    write_split,
)
from robust_mmr.data.schema import ImageTextRecord
from robust_mmr.data.stats import count_table, domain_key, example_grid, load_manifests
from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.data.validate import validate_dataset
from robust_mmr.errors import InputError


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
    stats.add_argument("--on-bad-sample", choices=("skip", "fail"), default="skip",
                       help="an example image that cannot be decoded: pass over it and list it (skip), or stop naming it")
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

    dedup = commands.add_parser("dedup", help="drop pre-training records whose image is in a downstream test split")
    dedup.add_argument("--pretrain", type=Path, required=True, help="pre-training manifest (or dataset directory)")
    dedup.add_argument("--against", type=Path, nargs="+", required=True,
                       help="downstream manifests or dataset directories; their test split is checked")
    dedup.add_argument("--max-distance", type=int, default=DEFAULT_MAX_DISTANCE,
                       help=f"dHash Hamming threshold in bits of 256 (default {DEFAULT_MAX_DISTANCE})")
    dedup.add_argument("--no-hash", action="store_true", help="match by synpic id only (no image decoding)")
    dedup.add_argument("--out", type=Path, help="directory for the clean manifest(s) and dedup.json")
    dedup.set_defaults(func=_dedup)

    split = commands.add_parser("split", help="leave-one-domain-out or image-disjoint split manifests over a meta key")
    split.add_argument("path", type=Path, help="dataset directory or manifest file")
    split.add_argument("--by", required=True, help="meta key, e.g. image_organ, modality, location")
    which = split.add_mutually_exclusive_group(required=True)
    which.add_argument("--holdout", help="the domain value that becomes the test split")
    which.add_argument("--lodo", action="store_true", help="one split per value of --by")
    which.add_argument("--image-disjoint", action="store_true",
                       help="test = every record of a fraction of each --by domain's images, train = the rest")
    split.add_argument("--out", type=Path, required=True, help="output directory (one sub-directory per split)")
    split.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                       help=f"fraction of train images carved as val when there is none "
                            f"(default {DEFAULT_VAL_FRACTION})")
    split.add_argument("--test-fraction", type=float, default=0.15,
                       help="--image-disjoint: fraction of each domain's images that becomes test (default 0.15)")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(func=_split)

    shard = commands.add_parser("shard", help="write an image-text split as WebDataset-style tar shards for streaming")
    shard.add_argument("dataset", type=Path, help="dataset directory with image_text.jsonl")
    shard.add_argument("--out", type=Path, required=True, help="output directory for shard-000000.tar, ...")
    shard.add_argument("--samples-per-shard", type=int, default=DEFAULT_SAMPLES_PER_SHARD,
                       help=f"samples per tar file (default {DEFAULT_SAMPLES_PER_SHARD})")
    shard.add_argument("--split", default="train", help="split to write (default train)")
    shard.set_defaults(func=_shard)


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
    if args.report is not None and not args.report.parent.is_dir():
        raise InputError(f"--report {args.report}: the folder {args.report.parent} does not exist")
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
    png, skipped = example_grid(args.path, pairs, domain_key(pairs), args.png or args.path / "stats.png",
                                on_bad_sample=args.on_bad_sample)
    for item in skipped:
        print(f"note: record {item['id']}: image {item['image']} passed over in the example grid: {item['reason']}")
    if skipped:
        print(f"note: {len(skipped)} example image(s) could not be decoded; `robust-mmr data validate` checks them all")
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


def _dedup(args: argparse.Namespace) -> int:
    root, pretrain = load_dataset(args.pretrain)
    tests = []
    for path in args.against:
        test_root, by_kind = load_dataset(path)
        tests.append(([r for recs in by_kind.values() for r in recs if r.split == "test"], test_root))
    distance = None if args.no_hash else args.max_distance
    clean: dict[str, list] = {}
    reports = {}
    for kind, records in pretrain.items():
        clean[kind], reports[kind] = remove_test_overlaps(records, root, tests, distance)
    rows = [[kind, len(pretrain[kind]), rep.kept, rep.removed[REASON_ID], rep.removed[REASON_HASH]]
            for kind, rep in reports.items()]
    print(format_table(["manifest", "records", "kept", REASON_ID, REASON_HASH], rows,
                       title=f"leakage check against {sum(len(t[0]) for t in tests)} test records"))
    for rep in reports.values():
        for example in rep.examples[:10]:
            print(f"  removed {example['id']} ({example['image']}): {example['reason']}, matches {example['match']} "
                  f"[{example['detail']}]")
        if rep.unreadable:
            print(f"  {len(rep.unreadable)} images could not be hashed (id check only), e.g. {rep.unreadable[0]}")
    if args.out:
        for kind, records in clean.items():
            write_manifest(args.out / MANIFEST_NAMES[kind], records)
        link_image_roots([r for recs in clean.values() for r in recs], root, args.out)
        card = {"pretrain": str(args.pretrain), "against": [str(p) for p in args.against], "max_distance": distance,
                "reports": {kind: rep.to_dict() for kind, rep in reports.items()}}
        (args.out / "dedup.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        print(f"clean manifest(s) and dedup.json written to {args.out}")
    return 0


def _split(args: argparse.Namespace) -> int:
    root, by_kind = load_dataset(args.path)
    if args.image_disjoint:
        records, card = image_disjoint_split(by_kind, args.by, args.test_fraction, args.seed)
        card_path = write_split(args.out, root, records, {"source": str(args.path), **card})
        digest = json.loads(card_path.read_text())["manifest_sha256"]
        rows = [[kind, Counter(r.split for r in recs)["train"], Counter(r.split for r in recs)["test"],
                 digest[MANIFEST_NAMES[kind]][:12]] for kind, recs in records.items()]
        print(format_table(["kind", "train", "test", "sha256"], rows,
                           title=f"image-disjoint split by {args.by}: {card['test_images']} test images never trained "
                                 f"on → {args.out}"))
        return 0
    holdouts = domain_values(by_kind, args.by) if args.lodo else [args.holdout]
    rows = []
    for value in holdouts:
        records, card = holdout_split(by_kind, args.by, value, args.val_fraction, args.seed)
        card = {"source": str(args.path), **card}
        out = args.out / f"{folder_name(args.by)}={folder_name(value)}"
        card_path = write_split(out, root, records, card)
        digest = json.loads(card_path.read_text())["manifest_sha256"]
        for kind, recs in records.items():
            counts = Counter(r.split for r in recs)
            rows.append([value, kind, counts["train"], counts["val"], counts["test"],
                         digest[MANIFEST_NAMES[kind]][:12], str(out)])
        print(f"{value}: val {card['val']['policy']}; excluded {card['excluded']}")
    print(format_table(["held out", "kind", "train", "val", "test", "sha256", "directory"], rows,
                       title=f"leave-one-{args.by}-out splits"))
    return 0


def _shard(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    card = write_shards(args.dataset, args.out, args.samples_per_shard, args.split)
    print(f"wrote {card['samples']} {args.split} samples in {card['shards']} shards to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    if card["skipped"]:
        counts = Counter(s["reason"] for s in card["skipped"])
        print(format_table(["reason", "count"], counts.most_common(), title=f"{len(card['skipped'])} records skipped"))
    print(f"index: {args.out / 'shards.json'}, {args.out / 'sizes.json'}")
    return 0
