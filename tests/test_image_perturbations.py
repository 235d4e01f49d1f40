"""Image corruptions: registry, determinism, dtype/shape/range, severity monotonicity, batch vs eval mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from robust_mmr.errors import InputError
from robust_mmr.perturbations.image import (
    CORRUPTIONS,
    MODALITIES,
    apply_corruption,
    corrupt_batch,
    corrupt_image,
    image_corruptions,
    sample_training_corruptions,
)

NAMES = list(CORRUPTIONS)
SIZE = 64


def scan(size: int = SIZE) -> np.ndarray:
    """A float image in [0.15, 0.85] with edges, blobs and a gradient (no saturated regions)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 0.3 + 0.25 * xx + 0.15 * np.sin(9 * yy) * np.cos(7 * xx)
    image += 0.2 * (((yy - 0.5) ** 2 + (xx - 0.4) ** 2) < 0.05)
    return np.clip(image, 0.15, 0.85).astype(np.float32)


def is_stochastic(name: str) -> bool:
    spec = CORRUPTIONS[name]
    return spec.family == "noise" or bool(spec.draws)


# --- registry --------------------------------------------------------------------------------------


def test_modality_specific_corruptions_only_in_their_modality():
    for modality in MODALITIES:
        names = image_corruptions(modality)
        assert ("rician_noise" in names) == (modality == "mri")
        assert ("mri_ghosting" in names) == (modality == "mri")
        for ct_only in ("ct_ring", "ct_streak", "ct_window_jitter"):
            assert (ct_only in names) == (modality == "ct")


def test_roles_partition_every_modality_and_both_are_non_empty():
    for modality in MODALITIES:
        train = set(image_corruptions(modality, role="train"))
        held_out = set(image_corruptions(modality, role="eval"))
        assert train and held_out
        assert not train & held_out
        assert train | held_out == set(image_corruptions(modality))
    assert {"zoom_blur", "pixelate", "mri_ghosting", "burned_in_text"} <= set(image_corruptions(role="eval"))


def test_unknown_modality_role_and_name_list_the_valid_values():
    with pytest.raises(InputError, match="generic"):
        image_corruptions(modality="pet")
    with pytest.raises(InputError, match="train"):
        image_corruptions(role="test")
    with pytest.raises(InputError, match="gaussian_noise"):
        corrupt_image(scan(), "fog", 1, seed=0, sample_id="a")


@pytest.mark.parametrize("severity", [0, 6, "3", True, 2.0])
def test_bad_severity_is_rejected_with_the_valid_values(severity):
    with pytest.raises(InputError, match="1, 2, 3, 4, 5"):
        corrupt_image(scan(), "gaussian_noise", severity, seed=0, sample_id="a")


# --- evaluation mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_replayable_and_depends_on_sample_id(name):
    image = (scan() * 255).astype(np.uint8)
    first, record = corrupt_image(image, name, 3, seed=7, sample_id="study-1")
    again, record_again = corrupt_image(image, name, 3, seed=7, sample_id="study-1")
    np.testing.assert_array_equal(first, again)
    assert record == record_again
    assert json.loads(json.dumps(record)) == record
    assert set(record["params"]) == set(CORRUPTIONS[name].levels[0]) | set(CORRUPTIONS[name].draws)
    if is_stochastic(name):
        others = [corrupt_image(image, name, 3, seed=7, sample_id=f"study-{i}")[0] for i in range(2, 5)]
        assert any(not np.array_equal(first, other) for other in others)


@pytest.mark.parametrize("name", [n for n in NAMES if CORRUPTIONS[n].family != "noise"])
def test_recorded_parameters_reproduce_the_output(name):
    """The record holds the exact parameters: applying them directly gives the same image."""
    image = scan()
    out, record = corrupt_image(image, name, 4, seed=5, sample_id="p")
    # scalars -> (1,), lists -> (1, k): the batch layout the corruption functions take
    params = {key: torch.tensor([value], dtype=torch.float32) for key, value in record["params"].items()}
    replay = CORRUPTIONS[name].apply(torch.from_numpy(image)[None, None], params, torch.Generator()).clamp(0, 1)
    np.testing.assert_allclose(replay[0, 0].numpy(), out, atol=1e-6)


def _mse_by_severity(name: str, image: np.ndarray, n_ids: int = 8) -> list[float]:
    return [
        float(
            np.mean(
                [
                    np.mean((corrupt_image(image, name, s, seed=0, sample_id=f"id{i}")[0] - image) ** 2)
                    for i in range(n_ids)
                ]
            )
        )
        for s in range(1, 6)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_psnr_strictly_falls_from_severity_1_to_5(name):
    image = scan()
    mse = _mse_by_severity(name, image)
    psnr = [10 * np.log10(1.0 / m) for m in mse]
    assert psnr[0] > 15.0, f"{name}: severity 1 should be mild, PSNR by severity {psnr}"
    assert all(a > b for a, b in zip(psnr, psnr[1:])), f"{name}: PSNR by severity {psnr}"


@pytest.mark.parametrize(
    "image",
    [
        (scan() * 255).astype(np.uint8),
        (scan() * 255).astype(np.uint8)[..., None],
        np.repeat((scan() * 255).astype(np.uint8)[..., None], 3, axis=2),
        (scan() * 4095).astype(np.uint16),
        np.repeat((scan() * 60000).astype(np.uint16)[..., None], 3, axis=2),
        scan(),
        scan().astype(np.float64)[..., None],
    ],
    ids=["u8-hw", "u8-hw1", "u8-hw3", "u16-12bit-hw", "u16-hw3", "f32-hw", "f64-hw1"],
)
@pytest.mark.parametrize("name", ["gaussian_noise", "brightness_up", "contrast_up", "jpeg", "burned_in_text"])
def test_dtype_shape_and_range_are_kept(image, name):
    out, record = corrupt_image(image, name, 5, seed=1, sample_id="x")
    assert out.dtype == image.dtype and out.shape == image.shape
    assert out.min() >= 0
    if image.dtype == np.uint16:
        assert out.max() <= image.max()  # uint16 is scaled by its own maximum and stays within it
        assert record["intensity_scale"] == float(image.max())
    elif image.dtype.kind == "f":
        assert out.max() <= 1.0
    assert not np.array_equal(out, image)


def test_uint16_corruption_strength_is_relative_to_the_image_maximum():
    low = (scan() * 4095).astype(np.uint16)
    high = low.astype(np.uint32) * 16
    out_low, _ = corrupt_image(low, "gaussian_blur", 4, seed=0, sample_id="a")
    out_high, _ = corrupt_image(high.astype(np.uint16), "gaussian_blur", 4, seed=0, sample_id="a")
    np.testing.assert_allclose(out_high.astype(np.float64) / 16, out_low, atol=1.0)


def test_grayscale_layouts_give_identical_results():
    image = (scan() * 255).astype(np.uint8)
    flat, _ = corrupt_image(image, "motion_blur", 3, seed=0, sample_id="a")
    channel, _ = corrupt_image(image[..., None], "motion_blur", 3, seed=0, sample_id="a")
    np.testing.assert_array_equal(flat, channel[..., 0])


@pytest.mark.parametrize("name", [n for n in NAMES if CORRUPTIONS[n].family != "noise"])
def test_rgb_channels_get_the_same_corruption(name):
    gray = (scan() * 255).astype(np.uint8)
    out, _ = corrupt_image(np.repeat(gray[..., None], 3, axis=2), name, 4, seed=0, sample_id="a")
    tolerance = 2 if name == "jpeg" else 0  # JPEG chroma rounding
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() <= tolerance
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= tolerance


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((32, 32), dtype=np.int32), "dtype"),
        (np.full((32, 32), 1.5, dtype=np.float32), r"\[0, 1\]"),
        (np.full((32, 32), np.nan, dtype=np.float32), r"\[0, 1\]"),
        (np.zeros((32, 32, 4), dtype=np.uint8), "shape"),
        (np.zeros((2, 32, 32, 3), dtype=np.uint8), "shape"),
        (np.zeros((4, 4), dtype=np.uint8), "small"),
        ([[0, 1], [1, 0]], "numpy"),
    ],
)
def test_bad_images_are_rejected(image, message):
    with pytest.raises(InputError, match=message):
        corrupt_image(image, "gaussian_blur", 1, seed=0, sample_id="a")


# --- training (batched) mode -----------------------------------------------------------------------


def test_corrupt_batch_groups_mixed_corruptions_and_leaves_none_clean():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 32, 32, generator=generator)
    before = images.clone()
    names = ["gaussian_noise", None, "jpeg", "gaussian_noise", "occlusion", None]
    out = corrupt_batch(images, names, [1, 3, 5, 2, 4, 1], generator)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(images, before)
    assert torch.equal(out[1], images[1]) and torch.equal(out[5], images[5])
    for i in (0, 2, 3, 4):
        assert not torch.equal(out[i], images[i])
    assert out.min() >= 0 and out.max() <= 1


def test_corrupt_batch_rejects_bad_arguments():
    generator = torch.Generator()
    images = torch.rand(2, 1, 16, 16)
    with pytest.raises(InputError, match="names"):
        corrupt_batch(images, ["jpeg"], [1, 1], generator)
    with pytest.raises(InputError, match="1, 2, 3, 4, 5"):
        corrupt_batch(images, ["jpeg", "jpeg"], [1, 7], generator)
    with pytest.raises(InputError, match="valid names"):
        corrupt_batch(images, ["jpeg", "fog"], [1, 1], generator)
    with pytest.raises(InputError, match="float"):
        corrupt_batch(images.to(torch.uint8), ["jpeg", "jpeg"], [1, 1], generator)


def test_training_sampler_draws_only_training_corruptions_of_the_modality():
    generator = torch.Generator().manual_seed(0)
    names, severities = sample_training_corruptions(500, "mri", generator)
    allowed = set(image_corruptions("mri", role="train"))
    assert set(names) == allowed  # 500 draws cover every training corruption, nothing else
    assert severities.dtype == torch.int64 and set(severities.tolist()) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    "name, severity",
    [("gaussian_noise", 3), ("ct_window_jitter", 4), ("occlusion", 2), ("bias_field", 5), ("motion_blur", 4)],
)
def test_batch_mode_matches_eval_mode_distribution(name, severity):
    """Per-sample statistics (mean change, residual std) follow the same distribution in both modes."""
    n = 150
    clean = scan(32)
    eval_out = np.stack(
        [corrupt_image(clean, name, severity, seed=3, sample_id=f"s{i}")[0] for i in range(n)]
    )
    generator = torch.Generator().manual_seed(11)
    batch = torch.from_numpy(clean)[None, None].repeat(n, 1, 1, 1)
    batch_out = corrupt_batch(batch, [name] * n, [severity] * n, generator)[:, 0].numpy()
    for statistic in (lambda d: d.mean(axis=(1, 2)), lambda d: d.std(axis=(1, 2))):
        a, b = statistic(eval_out - clean), statistic(batch_out - clean)
        assert ks_2samp(a, b).pvalue > 1e-3, f"{name}: batch and eval statistics differ"


def test_batch_mode_statistic_distinguishes_severities():
    """Guard for the test above: the same comparison does detect a wrong severity."""
    n = 150
    clean = torch.from_numpy(scan(32))[None, None].repeat(n, 1, 1, 1)
    generator = torch.Generator().manual_seed(0)
    three, _ = apply_corruption(clean, "gaussian_noise", torch.full((n,), 3), generator)
    four, _ = apply_corruption(clean, "gaussian_noise", torch.full((n,), 4), generator)
    std = lambda out: (out - clean).std(dim=(1, 2, 3)).numpy()  # noqa: E731
    assert ks_2samp(std(three), std(four)).pvalue < 1e-6
