"""``robust-mmr perturb ...``: list the perturbation registries, draw an image gallery, try text perturbations."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from robust_mmr.cli.tables import format_table
from robust_mmr.data.images import ImageReadError, load_image
from robust_mmr.errors import InputError
from robust_mmr.perturbations.image import MODALITIES, ROLES, get_corruption, image_corruptions
from robust_mmr.perturbations.image.gallery import save_gallery
from robust_mmr.perturbations.image.params import describe_row
from robust_mmr.perturbations.seeding import SEVERITIES

TEXT_MODULE = "robust_mmr.perturbations.text"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("perturb", help="image and text perturbations: list, gallery, try text")
    commands = parser.add_subparsers(dest="perturb_command", metavar="SUBCOMMAND", required=True)

    listing = commands.add_parser("list", help="table of perturbations and their parameters per severity")
    listing.add_argument("--modality", choices=MODALITIES, help="only image corruptions for this modality")
    listing.add_argument("--role", choices=ROLES, help="only corruptions used in training or held out for eval")
    listing.set_defaults(func=run_list)

    gallery = commands.add_parser("gallery", help="PNG grid: corruptions x (clean + severities 1-5)")
    source = gallery.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="image file (PNG/JPEG, 8/16-bit, gray or RGB)")
    source.add_argument("--synthetic", action="store_true", help="use a generated synthetic scan")
    gallery.add_argument("--out", required=True, help="output PNG path")
    gallery.add_argument("--modality", choices=MODALITIES, help="only corruptions for this modality")
    gallery.add_argument("--seed", type=int, default=0, help="global seed; with the image name it fixes every cell")
    gallery.set_defaults(func=run_gallery)

    text = commands.add_parser("text", help="apply every text perturbation at every severity to TEXT")
    text.add_argument("text", help="a report sentence or question")
    text.add_argument("--seed", type=int, default=0, help="global seed of the perturbations")
    text.set_defaults(func=run_text)


def image_table(modality: str | None, role: str | None) -> str:
    rows = []
    for name in image_corruptions(modality=modality, role=role):
        spec = get_corruption(name)
        severity_cells = [describe_row(row) for row in spec.levels]
        random_cell = describe_row(spec.draws) if spec.draws else "-"
        rows.append([name, spec.family, spec.role, ",".join(spec.modalities), *severity_cells, random_cell])
    headers = ["corruption", "family", "role", "modalities", *(f"s{s}" for s in SEVERITIES), "random per sample"]
    return format_table(headers, rows, title="Image corruptions (spatial sizes in px of a 224-px reference)")


def run_list(args: argparse.Namespace) -> int:
    print(image_table(args.modality, args.role))
    text_module = _text_module()
    if text_module is not None:
        print()
        print(text_table(text_module))
    return 0


def run_gallery(args: argparse.Namespace) -> int:
    if args.synthetic:
        from robust_mmr.data.synthetic import sample_image

        image, sample_id = sample_image(seed=args.seed), f"synthetic-{args.seed}"
    else:
        try:
            image = load_image(args.image)
        except ImageReadError as err:
            raise InputError(f"cannot use --image: {err}") from None
        sample_id = Path(args.image).name
    names = image_corruptions(modality=args.modality)
    rows, cols = save_gallery(image, names, args.out, seed=args.seed, sample_id=sample_id)
    print(f"wrote {args.out} ({rows} corruptions x {cols} columns)")
    return 0


def run_text(args: argparse.Namespace) -> int:
    text_module = _text_module()
    if text_module is None:
        print(f"robust-mmr: error: text perturbations ({TEXT_MODULE}) are not available", file=sys.stderr)
        return 1
    rows = []
    for name in text_module.text_perturbations():
        for severity in SEVERITIES:
            result = text_module.perturb_text(args.text, name, severity, seed=args.seed, sample_id="cli")
            rows.append([name, severity, result.text])
    print(format_table(["perturbation", "severity", "text"], rows, title=f"Text perturbations of: {args.text}"))
    return 0


def _text_module():
    """``robust_mmr.perturbations.text`` if it is present with its API, else None (it ships separately)."""
    try:
        module = importlib.import_module(TEXT_MODULE)
    except ModuleNotFoundError as err:
        if err.name == TEXT_MODULE:
            return None
        raise
    return module if hasattr(module, "text_perturbations") else None


def text_table(text_module) -> str:
    """Text perturbations with token alignment and their parameter table per severity."""
    rows = []
    for name in text_module.text_perturbations():
        spec = text_module.TEXT_PERTURBATION_SPECS[name]
        cells = [" ".join(f"{key}={value}" for key, value in spec.severity_params[s].items()) for s in SEVERITIES]
        rows.append([name, "yes" if spec.token_aligned else "no", *cells])
    headers = ["perturbation", "token_aligned", *(f"s{s}" for s in SEVERITIES)]
    return format_table(headers, rows, title="Text perturbations")
