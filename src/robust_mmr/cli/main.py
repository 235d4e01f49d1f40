"""Entry point of the ``robust-mmr`` command.

Each subcommand group lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import sys

from robust_mmr import __version__
from robust_mmr.cli import data as data_cmd
from robust_mmr.cli import demo as demo_cmd
from robust_mmr.cli import finetune as finetune_cmd
from robust_mmr.cli import perturb as perturb_cmd
from robust_mmr.cli import predict as predict_cmd
from robust_mmr.cli import pretrain as pretrain_cmd
from robust_mmr.cli import report as report_cmd
from robust_mmr.errors import InputError

COMMAND_GROUPS = [demo_cmd, data_cmd, perturb_cmd, pretrain_cmd, finetune_cmd, predict_cmd, report_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-mmr",
        description="Robust multi-modal masked reconstruction for medical vision-and-language models.",
    )
    parser.add_argument("--version", action="version", version=f"robust-mmr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"robust-mmr: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
