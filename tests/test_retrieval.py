"""Image–caption retrieval: ranking metrics, ITM re-ranking, InfoNCE training, ΔMR and the CLI path."""

from __future__ import annotations

import json
import math

import pytest
import torch

from robust_mmr.cli.main import main
from robust_mmr.config import load_config
from robust_mmr.data.manifest import read_manifest
from robust_mmr.evaluation import ranking as ev
from robust_mmr.evaluation import retrieval as retrieval_eval
from robust_mmr.evaluation import predict as predict_module
from robust_mmr.model import build_model
from robust_mmr.perturbations.text import TextPerturbation
from robust_mmr.tasks.config import FinetuneConfig
from robust_mmr.tasks.retrieval import PairCollator, is_retrieval_run, load_pairs, load_retrieval
from robust_mmr.tasks.retrieval_model import RetrievalModel
from robust_mmr.tasks.retrieval_module import RetrievalModule
from robust_mmr.data.images import image_to_tensor
from robust_mmr.data.images import load_image

SMALL = ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
         "model.decoder.layers=1"]


def cyclic(n: int, shift: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings whose similarity is S[i, j] = -((j - i) mod n), captions j belonging to image (j + shift) mod n.

    Every true pair then has n - shift non-matches scoring above it: rank n - shift + 1 both ways.
    """
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    sim = -((j - i) % n).float()
    return torch.eye(n), sim.T.contiguous(), (torch.arange(n) + shift) % n


def test_identity_similarity_ranks_everything_first():
    emb = torch.nn.functional.normalize(torch.randn(20, 8), dim=1)
    ranks = ev.retrieval_ranks(emb, emb, torch.arange(20))
    metrics = ev.both_directions(ranks)
    for d in ev.DIRECTIONS:
        assert ranks[d].tolist() == [1] * 20
        assert metrics[d]["r1"] == 1.0 and metrics[d]["mean_rank"] == 1.0 and metrics[d]["median_rank"] == 1.0


@pytest.mark.parametrize("shift", [1, 3, 7])
def test_known_permutation_gives_known_ranks_both_directions(shift):
    image_emb, text_emb, text_image = cyclic(10, shift)
    ranks = ev.retrieval_ranks(image_emb, text_emb, text_image)
    assert ranks["i2t"].tolist() == [10 - shift + 1] * 10
    assert ranks["t2i"].tolist() == [10 - shift + 1] * 10


def test_ranks_match_brute_force_with_shared_images_and_chunks():
    g = torch.Generator().manual_seed(0)
    image_emb, text_emb = torch.randn(7, 5, generator=g), torch.randn(12, 5, generator=g)
    text_image = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 6, 1])
    sim = image_emb @ text_emb.T
    want_i2t = [1 + min(sim[i].argsort(descending=True).tolist().index(j) for j in range(12) if text_image[j] == i)
                for i in range(7)]
    want_t2i = [1 + sim[:, j].argsort(descending=True).tolist().index(int(text_image[j])) for j in range(12)]
    images = torch.arange(7)
    assert ev.direction_ranks(image_emb, text_emb, images, text_image, chunk=3).tolist() == want_i2t
    assert ev.direction_ranks(text_emb, image_emb, text_image, images, chunk=5).tolist() == want_t2i


def test_ties_count_against_the_query():
    ranks = ev.retrieval_ranks(torch.ones(6, 4), torch.ones(6, 4), torch.arange(6))  # a collapsed model
    assert ranks["i2t"].tolist() == [6] * 6 and ranks["t2i"].tolist() == [6] * 6


def test_rank_metrics():
    m = ev.rank_metrics(torch.tensor([1, 2, 6, 11]))
    assert (m["r1"], m["r5"], m["r10"], m["mean_rank"]) == (0.25, 0.5, 0.75, 5.0)
    assert m["median_rank"] == 4.0  # the mean of the two middle ranks


def test_itm_rerank_reorders_only_the_top_k():
    image_emb, text_emb, text_image = cyclic(10, 3)  # ITC ranks 8 everywhere
    calls = []

    def oracle(query, candidate, truth_of_query, truth_of_candidate):
        calls.append(len(query))
        return (truth_of_query[query] == truth_of_candidate[candidate]).float()

    images = torch.arange(10)

    def i2t(q, c):
        return oracle(q, c, images, text_image)

    for k, want in ((8, 1), (5, 8)):
        calls.clear()
        ranks = ev.direction_ranks(image_emb, text_emb, images, text_image, rerank=(k, i2t))
        assert ranks.tolist() == [want] * 10
        assert sum(calls) == 10 * k  # k fused passes per query, no more


def tiny_model(itm: bool) -> tuple[RetrievalModel, object]:
    cfg = load_config("tiny", SMALL + [f"model.itm_head={str(itm).lower()}"])
    backbone, tokenizer = build_model(cfg.model)
    return RetrievalModel(backbone, cfg.model.projection_dim), tokenizer


def batch_of(synth_dir, tokenizer, n: int) -> dict:
    records = [r for r in load_pairs(synth_dir) if r.split == "train"][:n]
    items = [(r, image_to_tensor(load_image(synth_dir / r.image), 64, 1)) for r in records]
    return PairCollator(tokenizer, 48)(items)


def train_steps(synth_dir, itm: bool, steps: int) -> tuple[RetrievalModel, list[dict[str, float]]]:
    """Optimiser steps (default fine-tuning settings) on one batch of 8 pairs; the loss terms before each step."""
    torch.manual_seed(0)
    model, tokenizer = tiny_model(itm)
    module = RetrievalModule(model, FinetuneConfig(task="retrieve", warmup_epochs=0), steps_per_epoch=100)
    batch = batch_of(synth_dir, tokenizer, 8)
    optimizer = module.configure_optimizers()["optimizer"]
    history = []
    for _ in range(steps):
        terms = module.losses(batch)
        history.append({k: v.item() for k, v in terms.items()})
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    return model, history


def test_infonce_loss_falls(synth_dir):
    model, history = train_steps(synth_dir, itm=False, steps=10)
    assert set(history[0]) == {"itc", "loss"}
    assert history[0]["itc"] == pytest.approx(math.log(8), abs=0.15)  # near chance at init
    assert min(h["itc"] for h in history[-3:]) < 0.75 * history[0]["itc"]
    assert abs(1 / model.logit_scale().item() - 0.07) < 0.01  # CLIP's initial temperature, still near it


def test_itm_head_adds_a_hard_negative_term(synth_dir):
    _, history = train_steps(synth_dir, itm=True, steps=4)
    assert set(history[0]) == {"itc", "itm", "loss"}
    assert history[0]["loss"] == pytest.approx(history[0]["itc"] + history[0]["itm"])
    assert history[-1]["itc"] < history[0]["itc"]


def test_delta_mr_zero_for_identity_and_positive_for_shuffled_captions():
    emb = torch.nn.functional.normalize(torch.randn(16, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    clean = ev.both_directions(ev.retrieval_ranks(emb, emb, torch.arange(16)))
    same = ev.both_directions(ev.retrieval_ranks(emb, emb.clone(), torch.arange(16)))
    shuffled = ev.both_directions(ev.retrieval_ranks(emb, emb.roll(1, 0), torch.arange(16)))
    assert retrieval_eval.delta_mean_rank(same, clean) == {"i2t": 0.0, "t2i": 0.0, "mean": 0.0}
    delta = retrieval_eval.delta_mean_rank(shuffled, clean)
    assert delta["i2t"] > 0 and delta["t2i"] > 0 and delta["mean"] == (delta["i2t"] + delta["t2i"]) / 2


@pytest.fixture(scope="module")
def retrieval_run(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("retrieval") / "run"
    code = main(["finetune", "--task", "retrieve", "--data", str(synth_dir), "--out", str(out), "max_epochs=1",
                 "batch_size=16", *SMALL, "model.itm_head=true"])
    assert code == 0
    return out


def test_cli_finetune_and_evaluate_end_to_end(retrieval_run, synth_dir, capsys):
    task = json.loads((retrieval_run / "task.json").read_text())
    assert task["task"] == "retrieve" and is_retrieval_run(retrieval_run) and 0 <= task["best_val_r1"] <= 1
    model, _, run_cfg, _ = load_retrieval(retrieval_run)
    assert run_cfg.model.image_size == 64 and model.has_itm
    code = main(["evaluate", str(retrieval_run), "--data", str(synth_dir), "--corruptions", "gaussian_noise",
                 "--text-perturbations", "word_drop", "--severities", "4"])
    assert code == 0
    assert "ΔMR" in capsys.readouterr().out
    results = json.loads((retrieval_run / "results.json").read_text())
    n_test = sum(r.split == "test" for r in read_manifest(synth_dir / "image_text.jsonl"))
    assert results["task"] == "retrieve" and results["n_test"] == n_test
    for d in ev.DIRECTIONS:
        assert 1 <= results["clean"][d]["mean_rank"] <= n_test
    assert results["clean"]["itm_rerank"]["k"] == retrieval_eval.RERANK_K
    cells = results["perturbed"]["cells"]
    assert [c["target"] for c in cells] == ["image", "text", "both"]
    for c in cells:
        assert c["delta_mr"]["i2t"] == pytest.approx(c["i2t"]["mean_rank"] - results["clean"]["i2t"]["mean_rank"])
    assert set(results["perturbed"]["image"]["delta_mr"]) == {"i2t", "t2i", "mean"}
    assert any("cross-domain: the run was fine-tuned with no domain held out" in n for n in results["notes"])
    assert "missing" not in results and "cross_domain" not in results


def test_missing_modality_is_refused_for_retrieval(retrieval_run, synth_dir, capsys):
    code = main(["evaluate", str(retrieval_run), "--data", str(synth_dir), "--protocol", "clean,missing"])
    assert code == 2
    assert "'missing' does not apply to retrieval" in capsys.readouterr().err


def test_retrieval_with_a_held_out_site_ranks_it_beside_an_equal_in_domain_gallery(synth_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["finetune", "--task", "retrieve", "--data", str(synth_dir), "--out", str(out), "--holdout",
                 "domain=site-c", "max_epochs=1", "batch_size=16", *SMALL]) == 0
    task = json.loads((out / "task.json").read_text())
    assert task["holdout"] == {"key": "domain", "value": "site-c"}
    assert main(["evaluate", str(out), "--data", str(synth_dir), "--protocol", "clean,cross-domain"]) == 0
    assert "held out domain=site-c" in capsys.readouterr().out
    cross = json.loads((out / "results.json").read_text())["cross_domain"]
    pairs = read_manifest(synth_dir / "image_text.jsonl")
    n_ood = sum(p.split == "test" and p.meta["domain"] == "site-c" for p in pairs)
    n_iid = sum(p.split == "test" and p.meta["domain"] != "site-c" for p in pairs)
    assert cross["n_test"] == min(n_ood, n_iid) and cross["held_out"] == "domain=site-c"
    for part in ("iid", "ood"):
        assert 1 <= cross[part]["mean_rank"] <= cross["n_test"]
    assert cross["delta_mr"]["mean"] == pytest.approx(cross["ood"]["mean_rank"] - cross["iid"]["mean_rank"])


def test_identity_text_perturbation_reuses_clean_ranks(retrieval_run, synth_dir, monkeypatch):
    """Re-encoding unchanged captions must reproduce the clean ranks exactly: ΔMR = 0."""
    monkeypatch.setattr(predict_module, "perturb_text", lambda text, name, severity, seed, sample_id: TextPerturbation(text, {}, True, []))
    results = retrieval_eval.evaluate_retrieval_run(retrieval_run, synth_dir, ("clean", "perturbed"), corruptions=[],
                                        text_perts=["word_drop"], severities=(3,), progress=False, rerank_k=0)
    (cell,) = results["perturbed"]["cells"]
    assert cell["delta_mr"] == {"i2t": 0.0, "t2i": 0.0, "mean": 0.0}
    assert "itm_rerank" not in results["clean"]
