"""Pre-training core: masking, perturbation-aware masking, clean targets, InfoNCE, missing modalities,
ablation switches, and checkpoint round-trip."""

from __future__ import annotations

import math

import pytest
import torch

from robust_mmr.config import load_config
from robust_mmr.model import build_model
from robust_mmr.objectives import PretrainObjective
from robust_mmr.objectives import pretrain as pretrain_module
from robust_mmr.objectives.losses import info_nce
from robust_mmr.objectives.masking import keep_count, mask_patches, mask_tokens, normalized_patches
from robust_mmr.training.data import ImageTextDataset, PretrainCollator

SMALL_OVERRIDES = [
    "model.image_size=64", "model.max_text_length=32", "model.vision.layers=1", "model.text.layers=1",
    "model.fusion.layers=1", "model.decoder.layers=1", "model.decoder.read_layer=1",
]


def make(method: str, *extra: str):
    cfg = load_config("tiny", SMALL_OVERRIDES + [f"objective.method={method}", *extra])
    torch.manual_seed(0)
    model, tokenizer = build_model(cfg.model)
    return cfg, model, tokenizer, PretrainObjective(model, cfg.objective, tokenizer.mask_token_id, len(tokenizer))


def batch_for(cfg, tokenizer, synth_dir, n: int = 8):
    data = ImageTextDataset(synth_dir, "train", cfg.model.image_size, cfg.model.channels)
    collate = PretrainCollator(tokenizer, cfg.model.max_text_length, cfg.objective, seed=0)
    return collate([data[i] for i in range(n)])


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.3])
def test_image_mask_ratio_is_the_configured_ratio(ratio):
    n = 64
    counts = torch.full((16,), keep_count(n, ratio))
    mask = mask_patches(torch.rand(16, n), counts)
    assert mask.masked.float().mean(dim=1).allclose(torch.full((16,), ratio), atol=0.5 / n)  # up to rounding
    # visible and masked patches partition the image
    visible = torch.zeros(16, n, dtype=torch.bool).scatter(1, mask.keep, True)
    assert torch.equal(visible, ~mask.masked)


def test_rows_can_keep_different_counts():
    counts = torch.tensor([16, 40, 16, 40])
    mask = mask_patches(torch.rand(4, 64), counts)
    assert mask.keep.shape == (4, 40)
    assert mask.keep_valid.sum(dim=1).tolist() == counts.tolist()
    # padded slots point at masked patches
    padded = torch.gather(mask.masked, 1, mask.keep)[~mask.keep_valid]
    assert padded.all()


def test_perturbation_aware_masking_prefers_damaged_patches(synth_dir):
    cfg, model, tokenizer, objective = make("robust-mmr")
    batch = batch_for(cfg, tokenizer, synth_dir)
    batch["perturb_image"] = torch.ones(8, dtype=torch.bool)
    pixels = batch["pixels"]
    damaged = pixels.clone()
    damaged[..., :, :32] = (damaged[..., :, :32] + 0.3 * torch.randn_like(damaged[..., :, :32])).clamp(0, 1)
    generator = torch.Generator().manual_seed(0)
    hits = torch.zeros(16)
    for _ in range(20):
        mask = objective._perturbed_view_mask(pixels, damaged, batch, True, generator)
        hits += mask.masked.float().view(8, 4, 4).mean(dim=0).flatten()  # 4 x 4 patch grid
    rate = (hits / 20).view(4, 4)
    left, right = rate[:, :2].mean(), rate[:, 2:].mean()
    assert left > right + 0.2, (left, right)
    # without awareness both halves are masked alike
    hits = torch.zeros(16)
    for _ in range(20):
        hits += objective._perturbed_view_mask(pixels, damaged, batch, False, generator).masked.float().view(8, 16).mean(0)
    rate = (hits / 20).view(4, 4)
    assert abs(rate[:, :2].mean() - rate[:, 2:].mean()) < 0.1


def test_clean_modality_of_the_perturbed_view_is_masked_less(synth_dir):
    cfg, model, tokenizer, objective = make("robust-mmr")
    batch = batch_for(cfg, tokenizer, synth_dir)
    batch["perturb_image"] = torch.tensor([True, False] * 4)
    mask = objective._perturbed_view_mask(batch["pixels"], batch["pixels"], batch, True, torch.Generator().manual_seed(1))
    ratios = mask.masked.float().mean(dim=1)
    assert torch.allclose(ratios[0::2], torch.tensor(0.75))
    expected = 1 - keep_count(16, 0.75 * cfg.objective.clean_mask_scale) / 16
    assert torch.allclose(ratios[1::2], torch.tensor(expected))


def test_altered_tokens_are_masked_more_often():
    ids = torch.randint(1000, 2000, (64, 40))
    altered = torch.zeros(64, 40, dtype=torch.bool)
    altered[:, :10] = True
    prob = torch.where(altered, 0.45, 0.15)
    _, labels = mask_tokens(ids, torch.ones_like(altered), prob, 103, 30522, torch.Generator().manual_seed(0))
    chosen = labels >= 0
    assert chosen[:, :10].float().mean() > chosen[:, 10:].float().mean() + 0.2


def test_mim_targets_of_the_perturbed_view_are_the_clean_image(synth_dir, monkeypatch):
    cfg, model, tokenizer, objective = make("robust-mmr", "objective.modality_resilience=false")
    batch = batch_for(cfg, tokenizer, synth_dir)
    batch["perturb_image"] = torch.ones(8, dtype=torch.bool)
    seen = []
    real = pretrain_module.mim_loss
    monkeypatch.setattr(pretrain_module, "mim_loss", lambda p, t, m, w=None: seen.append(t) or real(p, t, m, w))
    objective(batch, torch.Generator().manual_seed(0))
    clean = normalized_patches(batch["pixels"], 16)
    assert len(seen) == 2 and torch.equal(seen[1], clean)
    # mmr-aug reconstructs its own perturbed input instead
    cfg, model, tokenizer, objective = make("mmr-aug")
    seen.clear()
    objective(batch, torch.Generator().manual_seed(0))
    assert not torch.allclose(seen[1], clean)


def test_info_nce_limits():
    torch.manual_seed(0)
    b = 64
    random_loss = info_nce(torch.randn(b, 128), torch.randn(b, 128), temperature=0.1)
    assert abs(random_loss.item() - math.log(b)) < 0.15 * math.log(b)
    views = torch.eye(b, 128)
    assert info_nce(views, views.clone(), temperature=0.1).item() < 0.01


def test_forward_with_a_missing_modality(synth_dir):
    cfg, model, tokenizer, objective = make("robust-mmr")
    batch = batch_for(cfg, tokenizer, synth_dir, n=4)
    model.eval()  # no dropout: rows that keep both modalities must match exactly
    full = model(batch["pixels"], batch["input_ids"], batch["attention_mask"]).pooled
    for drop in ("drop_image", "drop_text"):
        flags = torch.tensor([True, False, True, False])
        out = model(batch["pixels"], batch["input_ids"], batch["attention_mask"], **{drop: flags})
        assert torch.isfinite(out.pooled).all()
        assert not torch.allclose(out.pooled[0], full[0]) and torch.allclose(out.pooled[1], full[1], atol=1e-5)
    # dropping a modality removes its information: changing the dropped image changes nothing
    flags = torch.ones(4, dtype=torch.bool)
    a = model(batch["pixels"], batch["input_ids"], batch["attention_mask"], drop_image=flags).pooled
    b = model(torch.rand_like(batch["pixels"]), batch["input_ids"], batch["attention_mask"], drop_image=flags).pooled
    assert torch.allclose(a, b, atol=1e-6)


BASE_TERMS = {"mim", "mlm", "mim_v1", "mlm_v1", "loss"}


@pytest.mark.parametrize("method, switches, terms", [
    ("mmr", [], BASE_TERMS),
    ("mmr-aug", [], BASE_TERMS),
    ("robust-mmr", [], BASE_TERMS | {"dc", "mr"}),
    ("robust-mmr", ["objective.domain_consistency=false"], BASE_TERMS | {"mr"}),
    ("robust-mmr", ["objective.modality_resilience=false"], BASE_TERMS | {"dc"}),
    ("robust-mmr", ["objective.coral_key=domain", "objective.coral_weight=0.1"], BASE_TERMS | {"dc", "mr", "coral"}),
])
def test_each_switch_controls_exactly_its_term(synth_dir, method, switches, terms):
    cfg, model, tokenizer, objective = make(method, *switches)
    out = objective(batch_for(cfg, tokenizer, synth_dir), torch.Generator().manual_seed(0))
    assert set(out) == terms
    weights = {"dc": cfg.objective.dc_weight, "mr": cfg.objective.mr_weight, "coral": cfg.objective.coral_weight}
    total = sum(weights.get(k, 1.0) * v for k, v in out.items() if k != "loss")
    assert torch.allclose(out["loss"], total)
    out["loss"].backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
