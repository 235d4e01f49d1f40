"""`robust-mmr data synth` and `data stats` as a user runs them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from robust_mmr.cli.main import main


def test_synth_then_stats(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--n", "24", "--domains", "4", "--size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 24 images" in printed and "site-d" in printed
    assert main(["data", "stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "image_text: 24 records" in printed
    for domain in ("site-a", "site-b", "site-c", "site-d"):
        assert domain in printed
    with Image.open(out / "stats.png") as png:
        assert png.width > 600 and png.height > 4 * 200  # a row per domain


def test_stats_on_vqa_only_dataset(tmp_path, synth_dir, capsys):
    (tmp_path / "vqa.jsonl").write_bytes((synth_dir / "vqa.jsonl").read_bytes())
    (tmp_path / "images").symlink_to(synth_dir / "images")
    assert main(["data", "stats", str(tmp_path), "--png", str(tmp_path / "grid.png")]) == 0
    printed = capsys.readouterr().out
    assert "open" in printed and "closed" in printed
    with Image.open(tmp_path / "grid.png") as png:
        grid = np.asarray(png.convert("L"))
    assert grid.shape[0] > 200 and grid.shape[1] > 600 and grid.std() > 10  # a picture, not a blank canvas
