"""Leave-one-domain-out splits over any ``meta`` key (DESIGN §2), written with a content hash.

For a held-out value ``v`` of key ``k``:

- every record with ``meta[k] == v`` goes to ``test`` (whatever its native split);
- records of the other (training) domains keep ``train`` / ``val``; their native ``test`` records are
  excluded (counted in the card), so ``test`` is purely out-of-domain;
- when the training domains have no ``val`` records at all (VQA-RAD has none), a seeded fraction of
  their ``train`` *images* per domain becomes ``val`` — by image, so no image is in both, and the same
  images for every manifest kind of the dataset. The card says which policy was used.

An *image-disjoint* split (:func:`image_disjoint_split`) instead moves a seeded fraction of each domain's images,
with every record on them, to ``test`` and everything else to ``train``: no test image is seen in training, and
every domain is in both. It is the split where a lookup of the image cannot answer (VQA-RAD's own split asks its
test questions about training images).

Each split is a dataset directory (manifests + links to the source's image folders) with a
``split.json`` card holding counts, the policy, and the sha256 of every written manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from robust_mmr.data.converters.common import link_folder
from robust_mmr.data.manifest import find_manifests, manifest_kind, read_manifest, write_records
from robust_mmr.data.schema import MANIFEST_NAMES, Record
from robust_mmr.errors import InputError

CARD_NAME = "split.json"
DEFAULT_VAL_FRACTION = 0.1


def load_dataset(path: Path) -> tuple[Path, dict[str, list[Record]]]:
    """``(root, records by kind)`` from a dataset directory or one manifest file."""
    if path.is_file():
        return path.parent, {manifest_kind(path): read_manifest(path)}
    return path, {kind: read_manifest(p, kind) for kind, p in find_manifests(path).items()}


def domain_values(by_kind: dict[str, list[Record]], key: str) -> list[str]:
    """Sorted distinct values of ``meta[key]``; InputError if no record has the key."""
    values = sorted({str(r.meta[key]) for recs in by_kind.values() for r in recs if key in r.meta})
    if not values:
        keys = sorted({k for recs in by_kind.values() for r in recs for k in r.meta})
        raise InputError(f"no record has meta key {key!r}; meta keys present: {', '.join(keys) or 'none'}")
    return values


def holdout_split(by_kind: dict[str, list[Record]], key: str, holdout: str, val_fraction: float = DEFAULT_VAL_FRACTION,
                  seed: int = 0) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """Records re-split for held-out domain ``holdout``, and the card fields describing it."""
    values = domain_values(by_kind, key)
    if holdout not in values:
        raise InputError(f"{key}={holdout!r} does not occur; values: {', '.join(values)}")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val fraction must be in (0, 1), got {val_fraction}")
    missing = sum(key not in r.meta for recs in by_kind.values() for r in recs)
    training = [r for recs in by_kind.values() for r in recs if key in r.meta and str(r.meta[key]) != holdout]
    has_val = any(r.split == "val" for r in training)
    carved = set() if has_val else _carve_val_images(training, key, val_fraction, seed)
    out: dict[str, list[Record]] = {}
    dropped = 0
    for kind, records in by_kind.items():
        kept = []
        for r in records:
            if key not in r.meta:
                continue
            if str(r.meta[key]) == holdout:
                kept.append(dataclasses.replace(r, split="test"))
            elif r.split == "test":
                dropped += 1
            else:
                kept.append(dataclasses.replace(r, split="val" if r.image in carved else r.split))
        out[kind] = kept
    val_policy = ({"policy": "kept from source"} if has_val else
                  {"policy": "carved from train by image (the source has no val split for these domains)",
                   "fraction": val_fraction, "seed": seed, "images": len(carved)})
    card = {
        "key": key, "holdout": holdout, "train_domains": [v for v in values if v != holdout], "val": val_policy,
        "excluded": {"in-domain test records": dropped, f"records without meta.{key}": missing},
        "counts": {kind: dict(Counter(r.split for r in recs)) for kind, recs in out.items()},
        "domain_counts": {kind: _domain_counts(recs, key) for kind, recs in out.items()},
    }
    return out, card


def image_disjoint_split(by_kind: dict[str, list[Record]], key: str, test_fraction: float = 0.15,
                         seed: int = 0) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """Records re-split so that ``test`` holds every record of a seeded ``test_fraction`` of each ``meta[key]``
    domain's images (at least one image per domain of ≥ 2) and ``train`` every other record, whatever its
    native split; returns them and the card fields (the test images' sha256 among them)."""
    values = domain_values(by_kind, key)
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    images: dict[str, set[str]] = {}
    for r in (r for recs in by_kind.values() for r in recs if key in r.meta):
        images.setdefault(str(r.meta[key]), set()).add(r.image)
    rng = np.random.default_rng(seed)
    test_images: set[str] = set()
    for value in values:
        ordered = sorted(images[value])
        n = max(1, round(test_fraction * len(ordered))) if len(ordered) >= 2 else 0
        test_images.update(ordered[i] for i in rng.permutation(len(ordered))[:n])
    missing = sum(key not in r.meta for recs in by_kind.values() for r in recs)
    out = {kind: [dataclasses.replace(r, split="test" if r.image in test_images else "train")
                  for r in records if key in r.meta] for kind, records in by_kind.items()}
    card = {
        "kind": "image-disjoint", "key": key, "test_fraction": test_fraction, "seed": seed,
        "test_images": len(test_images),
        "test_images_sha256": hashlib.sha256("\n".join(sorted(test_images)).encode()).hexdigest(),
        "excluded": {f"records without meta.{key}": missing},
        "counts": {kind: dict(Counter(r.split for r in recs)) for kind, recs in out.items()},
        "domain_counts": {kind: _domain_counts(recs, key) for kind, recs in out.items()},
    }
    return out, card


def write_split(out: Path, root: Path, by_kind: dict[str, list[Record]], card: dict[str, Any]) -> Path:
    """Write manifests, image-folder links and ``split.json`` (with manifest sha256) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_records(out, [r for recs in by_kind.values() for r in recs])
    link_image_roots([r for recs in by_kind.values() for r in recs], root, out)
    card = {**card, "manifest_sha256": {MANIFEST_NAMES[k]: sha256(out / MANIFEST_NAMES[k]) for k in by_kind}}
    path = out / CARD_NAME
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def link_image_roots(records: list[Record], root: Path, out: Path) -> None:
    """Link each top-level entry that records' image paths start with from ``root`` into ``out``."""
    if root.resolve() == out.resolve():
        return
    for top in sorted({Path(r.image).parts[0] for r in records}):
        link_folder(out, top, root / top)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_name(value: str) -> str:
    """A directory name for a domain value (``Pelvic Cavity`` → ``Pelvic_Cavity``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_") or "empty"


def _carve_val_images(training: list[Record], key: str, fraction: float, seed: int) -> set[str]:
    """A seeded ``fraction`` of each training domain's train images (at least one per domain of ≥ 2)."""
    rng = np.random.default_rng(seed)
    by_domain: dict[str, list[str]] = {}
    for r in training:
        if r.split == "train":
            by_domain.setdefault(str(r.meta[key]), []).append(r.image)
    carved: set[str] = set()
    for domain in sorted(by_domain):
        images = sorted(set(by_domain[domain]))
        n = max(1, round(fraction * len(images))) if len(images) >= 2 else 0
        carved.update(images[i] for i in rng.permutation(len(images))[:n])
    return carved


def _domain_counts(records: list[Record], key: str) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for r in records:
        counts.setdefault(str(r.meta[key]), Counter())[r.split] += 1
    return {value: dict(c) for value, c in sorted(counts.items())}
