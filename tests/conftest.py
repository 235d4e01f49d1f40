"""Shared fixtures: a small synthetic dataset and a hand-made valid dataset directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """60 synthetic scans over 3 domains at 64 px (generated once per test session)."""
    from robust_mmr.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, n=60, seed=7, num_domains=3, size=64, progress=False)
    return out


@pytest.fixture(scope="session")
def small_dir(synth_dir, tmp_path_factory) -> Path:
    """The synthetic set cut to 8 training pairs: 4 batches of 2 per epoch."""
    out = tmp_path_factory.mktemp("small")
    (out / "images").symlink_to(synth_dir / "images")
    lines = [json.loads(x) for x in (synth_dir / "image_text.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["split"] == "train"][:8]
    (out / "image_text.jsonl").write_text("".join(json.dumps(x) + "\n" for x in train))
    return out


@pytest.fixture(scope="session")
def small_shards(small_dir, tmp_path_factory) -> Path:
    """The 8 training pairs of ``small_dir`` in 4 tar shards of 2, written by `data shard`."""
    from robust_mmr.cli.main import main

    out = tmp_path_factory.mktemp("shards")
    assert main(["data", "shard", str(small_dir), "--out", str(out), "--samples-per-shard", "2"]) == 0
    return out


def write_png(path: Path, size: int = 16, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, len(mode))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8), mode=mode).save(path)
