"""``robust-mmr perturb``: list, gallery and text subcommands."""

from __future__ import annotations

import numpy as np
from PIL import Image

from robust_mmr.cli.main import main
from robust_mmr.perturbations.image import image_corruptions
from robust_mmr.perturbations.image.gallery import CELL_PX
from robust_mmr.perturbations.text import text_perturbations


def test_list_shows_every_corruption_with_five_severities(capsys):
    assert main(["perturb", "list"]) == 0
    out = capsys.readouterr().out
    for name in image_corruptions():
        assert name in out
    assert "sigma=0.04" in out  # gaussian_noise severity 1 from its table
    assert all(f"s{s}" in out for s in range(1, 6))


def test_list_shows_the_text_perturbation_table(capsys):
    assert main(["perturb", "list"]) == 0
    out = capsys.readouterr().out
    assert "Text perturbations" in out
    assert all(name in out for name in text_perturbations())


def test_list_filters_by_modality_and_role(capsys):
    assert main(["perturb", "list", "--modality", "mri", "--role", "eval"]) == 0
    out = capsys.readouterr().out
    assert "mri_ghosting" in out and "zoom_blur" in out
    assert "ct_ring" not in out and "rician_noise" not in out and "gaussian_blur" not in out


def test_gallery_from_a_16_bit_image_has_one_row_per_corruption(tmp_path, capsys):
    source = tmp_path / "scan.png"
    pixels = (np.linspace(0, 4000, 48 * 48).reshape(48, 48)).astype(np.uint16)
    Image.fromarray(pixels).save(source)
    out = tmp_path / "gallery.png"
    assert main(["perturb", "gallery", "--image", str(source), "--out", str(out), "--modality", "mri"]) == 0
    rows = len(image_corruptions("mri"))
    with Image.open(out) as png:
        assert png.size == (6 * CELL_PX, rows * CELL_PX)
    assert f"{rows} corruptions x 6 columns" in capsys.readouterr().out


def test_gallery_synthetic_writes_a_png(tmp_path):
    out = tmp_path / "g.png"
    assert main(["perturb", "gallery", "--synthetic", "--out", str(out), "--modality", "ct"]) == 0
    with Image.open(out) as png:
        assert png.size == (6 * CELL_PX, len(image_corruptions("ct")) * CELL_PX)


def test_gallery_with_a_missing_image_exits_2(tmp_path, capsys):
    code = main(["perturb", "gallery", "--image", str(tmp_path / "nope.png"), "--out", str(tmp_path / "g.png")])
    assert code == 2
    assert "nope.png" in capsys.readouterr().err


def test_text_shows_every_text_perturbation_at_every_severity(capsys):
    assert main(["perturb", "text", "Small left pleural effusion.", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for name in text_perturbations():
        assert out.count(name) >= 5
