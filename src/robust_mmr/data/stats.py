"""Dataset statistics: record counts per split / domain / answer type, and an example grid per domain."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import numpy as np

from robust_mmr.data.images import ImageReadError, load_image, resolve_image_path
from robust_mmr.data.manifest import find_manifests, read_manifest
from robust_mmr.data.schema import ImageTextRecord, Record, VQARecord
from robust_mmr.errors import InputError

DOMAIN_KEYS = ("domain", "site", "modality", "image_organ", "location", "source")


def domain_key(records: list[Record]) -> str | None:
    """The first meta key of :data:`DOMAIN_KEYS` that every record carries, or None."""
    for key in DOMAIN_KEYS:
        if records and all(key in r.meta for r in records):
            return key
    return None


def count_table(records: list[Record], key: str | None) -> tuple[list[str], list[list[object]]]:
    """Rows of counts by split (and by the domain key when given), with answer types for VQA."""
    splits = sorted({r.split for r in records}, key=("train", "val", "test").index)
    groups = sorted({str(r.meta[key]) for r in records}) if key else ["all"]
    vqa = bool(records) and isinstance(records[0], VQARecord)
    headers = [key or "domain", *splits, "total"] + (["open", "closed"] if vqa else [])
    rows = []
    for group in groups + (["all"] if key else []):
        members = [r for r in records if group == "all" or str(r.meta[key]) == group]
        per_split = Counter(r.split for r in members)
        row: list[object] = [group, *(per_split[s] for s in splits), len(members)]
        if vqa:
            types = Counter(r.answer_type for r in members)
            row += [types["open"], types["closed"]]
        rows.append(row)
    return headers, rows


def example_grid(root: Path, records: list[ImageTextRecord], key: str | None, out: Path, per_domain: int = 4,
                 on_bad_sample: str = "skip") -> tuple[Path, list[dict]]:
    """Save a PNG grid: one row per domain, the first ``per_domain`` records whose image decodes, with their reports
    underneath. Returns the PNG and one ``{"id", "image", "reason"}`` per record passed over because its image
    cannot be used (``on_bad_sample=fail``: an :class:`InputError` naming the first instead)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({str(r.meta[key]) for r in records}) if key else ["all"]
    fig, axes = plt.subplots(len(groups), per_domain, figsize=(3.2 * per_domain, 4.3 * len(groups)), squeeze=False)
    skipped: list[dict] = []
    for row, group in zip(axes, groups):
        members = _decodable(root, [r for r in records if not key or str(r.meta[key]) == group], per_domain,
                             on_bad_sample, skipped)
        for ax, (record, image) in zip(row, members + [(None, None)] * (per_domain - len(members))):
            ax.axis("off")
            if record is None:
                continue
            vmax = 65535 if image.dtype == np.uint16 else 255
            ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
            caption = textwrap.fill(record.text, 38, max_lines=6, placeholder=" …")
            ax.set_title(f"{group} · {record.id}", fontsize=8)
            ax.text(0.0, -0.03, caption, transform=ax.transAxes, va="top", fontsize=7, family="monospace")
    fig.suptitle(f"{root.name}: examples per {key or 'dataset'}", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out, skipped


def _decodable(root: Path, records: list[ImageTextRecord], wanted: int, policy: str,
               skipped: list[dict]) -> list[tuple[ImageTextRecord, np.ndarray]]:
    """Up to ``wanted`` (record, decoded image) pairs in order; records whose image cannot be used are appended to
    ``skipped`` (``policy="fail"``: the first raises an :class:`InputError` naming it)."""
    found = []
    for record in records:
        if len(found) == wanted:
            break
        try:
            found.append((record, load_image(resolve_image_path(root, record.image))))
        except (ImageReadError, InputError) as err:
            if policy == "fail":
                raise InputError(f"record {record.id}: image {record.image}: {err} (on_bad_sample=fail; skip passes "
                                 "over such records and lists them)") from None
            skipped.append({"id": record.id, "image": record.image, "reason": str(err)})
    return found


def load_manifests(root: Path) -> dict[str, list[Record]]:
    """All manifests of a dataset directory, by kind (each must be valid)."""
    return {kind: read_manifest(path, kind) for kind, path in find_manifests(root).items()}
