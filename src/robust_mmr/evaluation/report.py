"""``robust-mmr report``: aggregate evaluated runs into results.json, report.md and PNG plots (DESIGN §4).

Runs are grouped by pre-training method (and held-out domain) and aggregated over their seeds;
see :mod:`~robust_mmr.evaluation.report_aggregate` for the numbers, :mod:`~robust_mmr.evaluation.report_tables`
for the Markdown and :mod:`~robust_mmr.evaluation.report_plots` for the figures.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robust_mmr.data.images import load_image, resolve_image_path
from robust_mmr.data.manifest import find_manifests, read_manifest
from robust_mmr.errors import InputError
from robust_mmr.evaluation.report_aggregate import TARGETS, aggregate, load_results
from robust_mmr.evaluation.report_plots import group_styles, plot_cross_domain, plot_missing, plot_severity
from robust_mmr.evaluation.report_tables import render_markdown
from robust_mmr.perturbations.image.gallery import save_gallery


def build_report(result_paths_or_run_dirs: Iterable[str | Path], out_dir: str | Path,
                 data_dir: str | Path | None = None) -> Path:
    """Write results.json, report.md and the PNGs into ``out_dir``; returns the path of report.md.

    ``data_dir`` supplies the gallery's test image; without it a synthetic scan is used.
    """
    paths = [str(p) for p in result_paths_or_run_dirs]
    loaded = load_results(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = aggregate(loaded)
    report["command"] = shlex.join(["robust-mmr", "report", *paths, "--out", str(out)]
                                   + (["--data", str(data_dir)] if data_dir is not None else []))

    corruptions = list(dict.fromkeys(c["image"][0] for _, r in loaded
                                     for c in r.get("perturbed", {}).get("cells", []) if c.get("image")))
    gallery = gallery_image(data_dir) if corruptions else None  # before the plots: a bad --data fails fast

    groups, styles, plots = report["groups"], group_styles(report["groups"]), {}
    for target in TARGETS:
        if any(target in g.get("perturbed", {}).get("by_name", {}) for g in groups):
            plots[f"severity_{target}"] = f"severity_{target}.png"
            plot_severity(groups, target, out / plots[f"severity_{target}"], styles)
    if any("cross_domain" in g for g in groups):
        plots["cross_domain"] = "cross_domain.png"
        plot_cross_domain(groups, report["cross_domain_average"], out / plots["cross_domain"], styles)
    if any("missing" in g for g in groups):
        plots["missing"] = "missing.png"
        plot_missing(groups, out / plots["missing"], styles)
    if gallery is not None:
        image, sample_id = gallery
        plots["gallery"] = "gallery.png"
        report["gallery_image"] = (f"The test image `{sample_id}` of `{data_dir}`" if data_dir is not None
                                   else "A synthetic scan (no --data given)")
        save_gallery(image, corruptions, out / plots["gallery"], seed=loaded[0][1]["seed"], sample_id=sample_id)
    report["plots"] = sorted(plots.values())

    (out / "results.json").write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n",
                                      encoding="utf-8")
    markdown = out / "report.md"
    markdown.write_text(render_markdown(report, report["command"], plots), encoding="utf-8")
    return markdown


def gallery_image(data_dir: str | Path | None) -> tuple[np.ndarray, str]:
    """The first test image of ``data_dir`` (any manifest) with its manifest path, or a synthetic scan.

    The manifest path is the sample id the evaluation seeds its corruptions with, so the gallery
    shows what the evaluation saw for that image.
    """
    if data_dir is None:
        from robust_mmr.data.synthetic import sample_image

        return sample_image(seed=0), "synthetic-0"
    records = [r for path in find_manifests(data_dir).values() for r in read_manifest(path)]
    if not records:
        raise InputError(f"{data_dir}: the manifests hold no records to draw the gallery from")
    record = next((r for r in records if r.split == "test"), records[0])
    return load_image(resolve_image_path(data_dir, record.image)), record.image


def _json_safe(value: object) -> object:
    """NaN (e.g. open accuracy with no open questions) becomes null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
