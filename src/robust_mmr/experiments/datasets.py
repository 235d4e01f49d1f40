"""The data an experiment runs on: a synthetic set made once and reused, and the pre-training pairs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from robust_mmr.data.manifest import read_manifest, write_manifest
from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.errors import InputError
from robust_mmr.experiments.logs import log

SYNTHETIC_DOMAINS = 3  # sites a, b, c
# Generator seeds of an experiment's downstream (VQA, retrieval) set and of its pre-training corpus: two draws of
# scenes, as ROCO is to VQA-RAD.
DOWNSTREAM_SEED, PRETRAIN_SEED = 0, 1


def synthetic_set(data: Path, n_images: int, image_size: int, seed: int) -> Path:
    """Generate a synthetic set of ``SYNTHETIC_DOMAINS`` sites into ``data``, or reuse it when it was made with
    the same settings (``generate.json``); a set made with other settings is an error rather than mixed in."""
    settings = {"n_images": n_images, "image_size": image_size, "seed": seed, "domains": SYNTHETIC_DOMAINS}
    record = data / "generate.json"
    if record.is_file():
        made = json.loads(record.read_text(encoding="utf-8"))
        if made != settings:
            raise InputError(f"{data} was generated with {made}, not {settings}; use another output folder")
        return data
    log(f"synthetic set: {n_images} scans at {image_size} px, seed {seed} → {data}")
    generate_dataset(data, n_images, seed=seed, num_domains=SYNTHETIC_DOMAINS, size=image_size, progress=False)
    record.write_text(json.dumps(settings) + "\n", encoding="utf-8")
    return data


def training_domain_pairs(data_dir: Path, out: Path, holdout_key: str, holdout_value: str) -> Path:
    """A pre-training dataset directory with the image–text pairs of the training split of the training
    domains: neither the held-out domain nor any image whose questions are validated or tested is seen."""
    pairs = [r for r in read_manifest(data_dir / "image_text.jsonl")
             if str(r.meta.get(holdout_key)) != holdout_value and r.split == "train"]
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out / "image_text.jsonl", pairs)
    link = out / "images"
    if not link.exists():
        os.symlink((data_dir / "images").resolve(), link)
    return out
