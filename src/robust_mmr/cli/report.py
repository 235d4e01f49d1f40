"""``robust-mmr report``: tables and plots from evaluated runs, aggregated per method over seeds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robust_mmr.cli.tables import format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="results.json + report.md + PNG plots from evaluated runs")
    p.add_argument("results", nargs="+", type=Path, metavar="RUN_DIR_OR_RESULTS_JSON",
                   help="fine-tuning run directories holding results.json, or results JSON files")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--data", type=Path, help="dataset directory: the gallery uses its first test image "
                                             "(default: a synthetic scan)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from robust_mmr.evaluation.report import build_report
    from robust_mmr.evaluation.report_tables import CLEAN_HEADERS, clean_rows

    markdown = build_report(args.results, args.out, data_dir=args.data)
    report = json.loads((markdown.parent / "results.json").read_text(encoding="utf-8"))
    print(format_table(CLEAN_HEADERS, clean_rows(report),
                       title=f"{report['task']}: clean test accuracy, mean ± std over runs"))
    print(f"report: {markdown}")
    return 0
