"""Converters from native dataset releases to canonical manifests (DESIGN §2, layouts in FORMATS.md).

Each module has ``convert(in_path, out_dir, report, **options) -> list[Record]``: it links the native
image folders into ``out_dir`` (never copies images), returns the records, and reports every native row
it did not convert (:class:`~robust_mmr.data.converters.common.ConversionReport`). :func:`convert_dataset`
runs one, writes the manifests and ``conversion.json`` (kept / skipped counts, reasons, examples).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robust_mmr.data.converters import generic, medpix2, melinda, roco, slake, vqa_med_2019, vqa_rad
from robust_mmr.data.converters.common import ConversionReport
from robust_mmr.data.manifest import write_records
from robust_mmr.data.schema import MANIFEST_NAMES, kind_of
from robust_mmr.errors import InputError

CONVERTERS: dict[str, Callable[..., list[Any]]] = {
    "vqa-rad": vqa_rad.convert,
    "slake": slake.convert,
    "vqa-med-2019": vqa_med_2019.convert,
    "roco": roco.convert,
    "melinda": melinda.convert,
    "medpix2": medpix2.convert,
    "csv": generic.convert,
}
REPORT_NAME = "conversion.json"


def converter_options(source: str) -> tuple[str, ...]:
    """The keyword options a source's converter accepts."""
    params = inspect.signature(_converter(source)).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def convert_dataset(source: str, in_path: str | Path, out_dir: str | Path, **options: Any) -> ConversionReport:
    """Convert a native release into canonical manifests in ``out_dir``; returns the report.

    ``options`` whose value is None are ignored; any other option the source does not take is an
    InputError naming the ones it does take.
    """
    convert = _converter(source)
    given = {k: v for k, v in options.items() if v is not None}
    allowed = converter_options(source)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InputError(f"option(s) {', '.join(unknown)} do not apply to --source {source}; "
                         f"it takes: {', '.join(allowed) or 'no options'}")
    in_path, out_dir = Path(in_path), Path(out_dir)
    if not in_path.exists():
        raise InputError(f"{in_path}: no such input directory or file")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(source=source)
    records = convert(in_path, out_dir, report, **given)
    if not records:
        raise InputError(f"{in_path}: no record converted from --source {source} "
                         f"(skipped {report.skipped}: {dict(report.skip_counts)})")
    stale = [out_dir / name for name in MANIFEST_NAMES.values()
             if (out_dir / name).is_file() and name not in {MANIFEST_NAMES[kind_of(r)] for r in records}]
    for path in stale:  # another conversion's manifest of another kind must not pass for part of this one
        path.unlink()
        print(f"note: removed {path} (left by an earlier conversion into {out_dir})")
    write_records(out_dir, records)
    (out_dir / REPORT_NAME).write_text(json.dumps({**report.to_dict(), "options": given}, indent=2) + "\n",
                                       encoding="utf-8")
    return report


def _converter(source: str) -> Callable[..., list[Any]]:
    try:
        return CONVERTERS[source]
    except KeyError:
        raise InputError(f"unknown source {source!r}; valid: {', '.join(CONVERTERS)}") from None
