"""Global negatives (robust_mmr.objectives.distributed): InfoNCE on 2 gloo processes holding B/2 rows each gives
the loss and, after DDP's gradient averaging, the gradients of one process with all B rows.

Checked for the plain helper (``global_info_nce``, with a learnable temperature as in retrieval fine-tuning) and
for robust-mmr's domain-consistency term on a tiny model under real DDP. The full objective cannot be compared
this way: its masks, corruptions and dropout are drawn per rank from (seed, step, rank) and with the batch's
shape, so 2 x 2 and 1 x 4 see different views. The DC term therefore runs on fixed two-view inputs (fixed
pixels, patch masks and token ids; eval mode, so no dropout) through the real encoders, the real projection
heads g and ``PretrainObjective.invariance_terms``. Each test also shows that the per-process loss without the
gather differs from the global one, so it fails if the gather is removed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from robust_mmr.config import load_config
from robust_mmr.model import build_model
from robust_mmr.objectives import PretrainObjective
from robust_mmr.objectives.distributed import gather_with_grad, world
from robust_mmr.objectives.losses import global_info_nce, info_nce
from robust_mmr.objectives.masking import mask_patches
from robust_mmr.objectives.pretrain import Pass

WORLD = 2
TOL = dict(rtol=1e-5, atol=1e-5)
TEMPERATURE = 0.5
TINY = ["model.image_size=32", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
        "model.decoder.layers=1", "objective.method=robust-mmr"]
COMPARED = ("projection.image.", "projection.text.", "image_proj.", "text_proj.", "vision.")  # DC's gradient path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, port: int, out: str, worker, args: tuple) -> None:
    """One process of the group: join it over gloo, run ``worker(rank, *args)``, save what it returns."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.save(worker(rank, *args), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_group(tmp_path, worker, *args) -> list:
    """``worker(rank, *args)`` on WORLD gloo CPU processes; what each rank returned, in rank order."""
    mp.spawn(_entry, args=(free_port(), str(tmp_path), worker, args), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def ddp_mean(t: torch.Tensor) -> torch.Tensor:
    """What DDP does to a replicated parameter's gradient: the mean over processes."""
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / WORLD


def test_outside_a_process_group_it_is_plain_info_nce():
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    assert world() == (0, 1) and gather_with_grad(a)[0] is a
    for local_loss in (True, False):  # bit for bit: one process keeps today's results
        assert torch.equal(global_info_nce(a, b, 0.1, local_loss), info_nce(a, b, 0.1))


# (rows per rank, local_loss). Uneven slices (a last batch) only for the full matrix: with local_loss the mean of
# per-rank means weighs rows unequally, as every per-rank mean loss under DDP does.
CASES = [((4, 4), True), ((4, 4), False), ((5, 3), False)]


def _info_nce_worker(rank: int, a: torch.Tensor, b: torch.Tensor) -> list[dict]:
    results = []
    for counts, local_loss in CASES:
        full_a, full_b = a.clone().requires_grad_(), b.clone().requires_grad_()
        temperature = torch.tensor(TEMPERATURE, requires_grad=True)  # a parameter after the gather (retrieval's)
        start = sum(counts[:rank])
        rows = slice(start, start + counts[rank])
        loss = global_info_nce(full_a[rows], full_b[rows], temperature, local_loss)
        loss.backward()
        results.append({"loss": loss.detach(), "mean_loss": ddp_mean(loss), "grad_a": ddp_mean(full_a.grad),
                        "grad_b": ddp_mean(full_b.grad), "grad_t": ddp_mean(temperature.grad),
                        "no_gather": ddp_mean(info_nce(a[rows], b[rows], TEMPERATURE))})
    return results


def test_info_nce_on_two_processes_equals_one_process(tmp_path):
    torch.manual_seed(0)
    a = torch.randn(8, 16)
    b = a + torch.randn(8, 16)  # paired rows alike: the loss is neither at chance nor near 0
    ranks = run_group(tmp_path, _info_nce_worker, a, b)

    full_a, full_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    temperature = torch.tensor(TEMPERATURE, requires_grad=True)
    reference = info_nce(full_a, full_b, temperature)
    reference.backward()
    for i, (counts, local_loss) in enumerate(CASES):
        got = [r[i] for r in ranks]
        assert abs(got[0]["no_gather"] - reference) > 1e-2, "the local-only loss must differ for the test to bite"
        torch.testing.assert_close(got[0]["mean_loss"], reference.detach(), **TOL)
        if not local_loss:  # every process computes the global loss itself
            for r in got:
                torch.testing.assert_close(r["loss"], reference.detach(), **TOL)
        for name, expected in (("grad_a", full_a.grad), ("grad_b", full_b.grad), ("grad_t", temperature.grad)):
            for r in got:
                torch.testing.assert_close(r[name], expected, **TOL, msg=lambda m: f"{name} {counts} {local_loss}: {m}")


def dc_inputs(batch: int = 4) -> dict[str, torch.Tensor]:
    """Fixed two views of ``batch`` studies at 32 px (4 patches) with 12-token texts: pixels, visible patches
    (the same count per row, so a slice of the rows is exactly a smaller batch), token ids, attention."""
    g = torch.Generator().manual_seed(1)
    pixels0 = torch.rand(batch, 1, 32, 32, generator=g)
    pixels1 = (pixels0 + 0.3 * torch.randn(pixels0.shape, generator=g)).clamp(0, 1)
    lengths = torch.tensor([12, 9, 7, 12])[:batch]
    attention = (torch.arange(12)[None, :] < lengths[:, None]).long()
    return {"pixels0": pixels0, "pixels1": pixels1,
            "keep0": mask_patches(torch.rand(batch, 4, generator=g), torch.full((batch,), 2)).keep,
            "keep1": mask_patches(torch.rand(batch, 4, generator=g), torch.full((batch,), 3)).keep,
            "ids0": torch.randint(1000, 30000, (batch, 12), generator=g),
            "ids1": torch.randint(1000, 30000, (batch, 12), generator=g), "attention": attention}


class DomainConsistency(torch.nn.Module):
    """robust-mmr's domain-consistency term of fixed two-view inputs (see :func:`dc_inputs`), as a module DDP
    can wrap: encoders → mean tokens → projection heads g → ``invariance_terms``."""

    def __init__(self, objective: PretrainObjective):
        super().__init__()
        self.objective = objective

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        model, views = self.objective.model, []
        for v in ("0", "1"):
            image, image_valid = model.encode_image(inputs["pixels" + v], inputs["keep" + v])
            text, text_valid = model.encode_text(inputs["ids" + v], inputs["attention"])
            views.append(Pass(image, image_valid, text, text_valid, fused=None))
        return self.objective.invariance_terms(None, *views, dropped=None)["domain_consistency"]


def tiny_dc() -> DomainConsistency:
    cfg = load_config("tiny", TINY)
    torch.manual_seed(0)
    model, tokenizer = build_model(cfg.model)
    return DomainConsistency(PretrainObjective(model, cfg.objective, tokenizer.mask_token_id, len(tokenizer))).eval()


def _dc_worker(rank: int) -> list[dict]:
    term = tiny_dc()
    ddp = DistributedDataParallel(term, find_unused_parameters=True)  # fusion, decoders, heads unused here
    rows = slice(2 * rank, 2 * rank + 2)
    inputs = {k: v[rows] for k, v in dc_inputs().items()}
    results = []
    for local_loss in (True, False):
        term.objective.cfg = replace(term.objective.cfg, dc_local_loss=local_loss)
        ddp.zero_grad(set_to_none=True)
        loss = ddp(inputs)
        loss.backward()  # DDP averages the parameter gradients over the processes
        grads = {n: p.grad.clone() for n, p in term.objective.model.named_parameters() if n.startswith(COMPARED)}
        results.append({"loss": loss.detach(), "mean_loss": ddp_mean(loss), "grads": grads if rank == 0 else None})
    return results


def test_domain_consistency_on_two_processes_equals_one_process(tmp_path):
    term, inputs = tiny_dc(), dc_inputs()
    with torch.no_grad():  # per-process batches without the gather: what each rank computed before
        no_gather = sum(term({k: v[r:r + 2] for k, v in inputs.items()}) for r in (0, 2)) / 2
    reference = term(inputs)
    reference.backward()
    expected = {n: p.grad for n, p in term.objective.model.named_parameters() if n.startswith(COMPARED)}
    assert abs(no_gather - reference) > 1e-2, "the local-only loss must differ for the test to bite"
    assert expected["projection.image.net.0.weight"].abs().sum() > 0

    ranks = run_group(tmp_path, _dc_worker)
    for i, local_loss in enumerate((True, False)):
        torch.testing.assert_close(ranks[0][i]["mean_loss"], reference.detach(), **TOL)
        if not local_loss:
            for r in ranks:
                torch.testing.assert_close(r[i]["loss"], reference.detach(), **TOL)
        grads = ranks[0][i]["grads"]
        assert grads.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(grads[name], value, **TOL, msg=lambda m: f"{name} local={local_loss}: {m}")


@pytest.mark.parametrize("bad", ["dc_local_loss=1", "dc_local_loss=maybe"])
def test_dc_local_loss_must_be_a_boolean(bad):
    from robust_mmr.errors import InputError

    with pytest.raises(InputError, match="dc_local_loss"):
        load_config("tiny", [f"objective.{bad}"])
