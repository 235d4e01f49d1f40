"""Pre-training core: masking, the perturbed view (aware masking, clean targets, whole-word text targets),
the loss terms, missing modalities and the ablation switches."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from robust_mmr.config import load_config
from robust_mmr.model import build_model
from robust_mmr.objectives import PretrainObjective
from robust_mmr.objectives import pretrain as pretrain_module
from robust_mmr.objectives.losses import coral_loss, info_nce, resilience_loss
from robust_mmr.objectives.masking import damage_rank, keep_count, mask_patches, mask_tokens, normalized_patches
from robust_mmr.objectives import views
from robust_mmr.objectives.views import MASK, perturbed_image_mask, perturbed_text_view
from robust_mmr.perturbations.text import TextPerturbation
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


def with_image_mode(batch, perturb_image: torch.Tensor):
    return replace(batch, view=replace(batch.view, perturb_image=perturb_image))


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


def test_damage_rank_orders_by_change_and_ties_share_a_rank():
    clean = torch.zeros(2, 4, 3)
    pert = clean.clone()
    pert[0] += torch.tensor([3.0, 1.0, 0.0, 2.0])[:, None]  # distinct damage: ranks follow it
    pert[1] += 0.5  # every patch changed alike: no patch (and no position) is preferred
    ranks = damage_rank(clean, pert)
    assert ranks[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 2 / 3])
    assert ranks[1].tolist() == pytest.approx([0.5] * 4)


def test_perturbation_aware_masking_prefers_damaged_patches(synth_dir):
    cfg, _, tokenizer, _ = make("robust-mmr")
    pixels = batch_for(cfg, tokenizer, synth_dir).pixels
    damaged = pixels.clone()
    damaged[..., :, :32] = (damaged[..., :, :32] + 0.3 * torch.randn_like(damaged[..., :, :32])).clamp(0, 1)
    hit = torch.ones(8, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)

    def left_minus_right(objective_cfg) -> float:
        rate = torch.stack([perturbed_image_mask(pixels, damaged, hit, objective_cfg, 16, generator).masked.float()
                            .view(8, 4, 4).mean(0) for _ in range(20)]).mean(0)  # 4 x 4 patch grid
        return float(rate[:, :2].mean() - rate[:, 2:].mean())

    assert left_minus_right(cfg.objective) > 0.2
    # without awareness (mmr-aug, or the switch off) both halves are masked alike
    assert abs(left_minus_right(replace(cfg.objective, aware_masking=False))) < 0.1
    assert abs(left_minus_right(replace(cfg.objective, method="mmr-aug"))) < 0.1


def test_clean_modality_of_the_perturbed_view_is_masked_less(synth_dir):
    cfg, _, tokenizer, _ = make("robust-mmr")
    pixels = batch_for(cfg, tokenizer, synth_dir).pixels
    hit = torch.tensor([True, False] * 4)
    mask = perturbed_image_mask(pixels, pixels, hit, cfg.objective, 16, torch.Generator().manual_seed(1))
    ratios = mask.masked.float().mean(dim=1)
    assert torch.allclose(ratios[0::2], torch.tensor(0.75))
    expected = 1 - keep_count(16, 0.75 * cfg.objective.clean_mask_scale) / 16
    assert torch.allclose(ratios[1::2], torch.tensor(expected))


def test_altered_words_are_predicted_as_the_clean_words_whole(synth_dir):
    """An altered word of a word-aligned perturbation becomes [MASK] x (the clean word's piece count) with
    the clean pieces as targets, even when the typo changed the piece count; other altered words are never
    targets; unaltered words stay maskable with their own ids."""
    cfg, _, tokenizer, _ = make("robust-mmr", "objective.mode_probs=[0,1,0]", "objective.altered_token_boost=6.6")
    objective = cfg.objective  # text-only mode, every altered word predicted (0.15 x 6.6 >= 1)

    def pieces(words):
        return tokenizer(words, add_special_tokens=False)["input_ids"] if words else []

    text = "There is a large hypodense lesion in the right kidney measuring thirty millimetres"
    found = 0
    for sample in range(40):
        view = perturbed_text_view(text, f"s{sample}", 0, objective, 0, pieces)
        assert view.perturb_text and not view.perturb_image
        if MASK not in view.ids:
            continue  # drawn perturbation was not word-aligned (or changed nothing)
        found += 1
        assert all((t >= 0) == (i == MASK) for t, i in zip(view.targets, view.ids))  # targets exactly at [MASK]
        assert not any(m for m, i in zip(view.maskable, view.ids) if i == MASK)
        clean_ids = [p for w in pieces(text.split()) for p in w]
        assert set(t for t in view.targets if t >= 0) <= set(clean_ids)  # only clean pieces are targets
    assert found >= 5
    # without awareness (mmr-aug) nothing is pre-masked: the view reconstructs its own tokens
    plain = replace(objective, method="mmr-aug")
    for sample in range(20):
        view = perturbed_text_view(text, f"s{sample}", 0, plain, 0, pieces)
        assert MASK not in view.ids and all(t == -100 for t in view.targets) and all(view.maskable)


def test_typo_that_changes_the_piece_count_still_gets_clean_targets(monkeypatch):
    cfg = load_config("tiny", ["objective.mode_probs=[0,1,0]", "objective.altered_token_boost=6.6"]).objective
    clean_pieces = {"kidney": [1, 2], "kidnye": [3, 4, 5]}

    def pieces(words):
        return [clean_pieces.get(w, [9]) for w in words]

    monkeypatch.setattr(views, "perturb_text", lambda text, *a, **k: TextPerturbation("left kidnye", {}, True, [1]))
    view = perturbed_text_view("left kidney", "x", 0, cfg, 0, pieces)
    assert view.ids == [9, MASK, MASK] and view.targets == [-100, 1, 2] and view.maskable == [True, False, False]


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
    batch = with_image_mode(batch_for(cfg, tokenizer, synth_dir), torch.ones(8, dtype=torch.bool))
    seen = []
    real = pretrain_module.mim_loss
    monkeypatch.setattr(pretrain_module, "mim_loss", lambda p, t, m, w=None: seen.append(t) or real(p, t, m, w))
    objective(batch, torch.Generator().manual_seed(0))
    clean = normalized_patches(batch.pixels, 16)
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


def test_resilience_loss_is_cosine_distance_to_a_fixed_target():
    full = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    unimodal = torch.tensor([[2.0, 0.0], [1.0, 0.0]], requires_grad=True)
    loss = resilience_loss(unimodal, full)
    assert loss.item() == pytest.approx((0.0 + 1.0) / 2)  # same direction, then orthogonal
    loss.backward()
    assert full.grad is None and unimodal.grad.abs().sum() > 0  # the full view is a stop-gradient target


def test_coral_loss_is_zero_for_matching_covariances_and_positive_otherwise():
    torch.manual_seed(0)
    a = torch.randn(200, 4)
    same = coral_loss(torch.cat([a, a + 3.0]), torch.tensor([0] * 200 + [1] * 200))  # shifted, same covariance
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    scaled = coral_loss(torch.cat([a, 3.0 * a]), torch.tensor([0] * 200 + [1] * 200))
    assert scaled.item() > 0.01
    unknown = coral_loss(torch.cat([a, 3.0 * a]), torch.tensor([0] * 200 + [-1] * 200))  # one known domain
    assert unknown.item() == 0.0


def test_forward_with_a_missing_modality(synth_dir):
    cfg, model, tokenizer, objective = make("robust-mmr")
    batch = batch_for(cfg, tokenizer, synth_dir, n=4)
    model.eval()  # no dropout: rows that keep both modalities must match exactly
    full = model(batch.pixels, batch.input_ids, batch.attention_mask).pooled
    for drop in ("drop_image", "drop_text"):
        flags = torch.tensor([True, False, True, False])
        out = model(batch.pixels, batch.input_ids, batch.attention_mask, **{drop: flags})
        assert torch.isfinite(out.pooled).all()
        assert not torch.allclose(out.pooled[0], full[0]) and torch.allclose(out.pooled[1], full[1], atol=1e-5)
    # dropping a modality removes its information: changing the dropped image changes nothing
    flags = torch.ones(4, dtype=torch.bool)
    a = model(batch.pixels, batch.input_ids, batch.attention_mask, drop_image=flags).pooled
    b = model(torch.rand_like(batch.pixels), batch.input_ids, batch.attention_mask, drop_image=flags).pooled
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("extra", [["objective.drop_prob=1.0"], ["objective.drop_prob=0.0"], []])
def test_every_term_is_finite_for_any_drop_rate_and_tiny_batches(synth_dir, extra):
    """Domain consistency used to be NaN when no row of a batch kept both modalities (drop_prob 1.0)."""
    cfg, model, tokenizer, objective = make("robust-mmr", *extra)
    for n in (1, 2, 8):
        out = objective(batch_for(cfg, tokenizer, synth_dir, n=n), torch.Generator().manual_seed(n))
        assert all(torch.isfinite(v) for v in out.values()), (n, out)


def test_invariance_projections_train_at_the_base_rate_and_never_touch_the_pooler(synth_dir):
    cfg, model, tokenizer, objective = make("robust-mmr")
    base, rest = model.parameter_groups()
    base_ids = {id(p) for p in base}
    assert all(id(p) in base_ids for p in model.projection.parameters())
    assert not any(id(p) in base_ids for p in [*model.pooler.parameters(), *model.fusion.parameters()])
    out = objective(batch_for(cfg, tokenizer, synth_dir), torch.Generator().manual_seed(0))
    (out["domain_consistency"] + out["modality_resilience"]).backward()
    assert all(p.grad is None for p in model.pooler.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projection.image.parameters())


BASE_TERMS = {"mim", "mlm", "mim_v1", "mlm_v1", "loss"}
DC, MR = "domain_consistency", "modality_resilience"


@pytest.mark.parametrize("method, switches, terms", [
    ("mmr", [], BASE_TERMS),
    ("mmr-aug", [], BASE_TERMS),
    ("robust-mmr", [], BASE_TERMS | {DC, MR}),
    ("robust-mmr", ["objective.domain_consistency=false"], BASE_TERMS | {MR}),
    ("robust-mmr", ["objective.modality_resilience=false"], BASE_TERMS | {DC}),
    ("robust-mmr", ["objective.coral_key=domain", "objective.coral_weight=0.1"], BASE_TERMS | {DC, MR, "coral"}),
])
def test_each_switch_controls_exactly_its_term(synth_dir, method, switches, terms):
    cfg, model, tokenizer, objective = make(method, *switches)
    out = objective(batch_for(cfg, tokenizer, synth_dir), torch.Generator().manual_seed(0))
    assert set(out) == terms
    weights = {DC: cfg.objective.dc_weight, MR: cfg.objective.mr_weight, "coral": cfg.objective.coral_weight}
    total = sum(weights.get(k, 1.0) * v for k, v in out.items() if k != "loss")
    assert torch.allclose(out["loss"], total)
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 10 and all(torch.isfinite(g).all() for g in grads)  # gradients flow, and are finite
    assert any(g.abs().sum() > 0 for g in grads)
