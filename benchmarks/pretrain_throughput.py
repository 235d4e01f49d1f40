"""Pre-training throughput per method, preset and precision, with model FLOP utilisation.

Measures, in one process so the numbers compare: the machine's dense-matmul peak (fp32 and bf16),
then for each preset × precision × method the median wall time of full optimiser steps (collate
excluded, measured separately) at a fixed batch, the step's FLOPs (torch's FlopCounterMode), and
where the time goes (image perturbation, forward, backward, optimiser).

    python benchmarks/pretrain_throughput.py [--presets tiny small] [--batch 32] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from robust_mmr.cli.tables import format_table
from robust_mmr.config import load_config
from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.objectives import METHODS
from robust_mmr.perturbations.image.api import corrupt_batch, sample_training_corruptions
from robust_mmr.training.data import ImageTextDataset, PretrainCollator
from robust_mmr.training.module import PretrainModule

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Sustained dense-matmul FLOP/s for n × n matrices in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(preset: str, method: str, precision: str, batch_size: int, steps: int, data_dir: Path) -> dict:
    cfg = load_config(preset, [f"objective.method={method}", f"train.batch_size={batch_size}"])
    module = PretrainModule(cfg)
    objective = module.objective.train()
    optimizer = module.configure_optimizers()["optimizer"]
    dataset = ImageTextDataset(data_dir, "train", cfg.model.image_size, cfg.model.channels)
    collate = PretrainCollator(module.tokenizer, cfg.model.max_text_length, cfg.objective, seed=0)
    items = [dataset[i] for i in range(batch_size)]
    collate_s = statistics.median(timed(lambda: collate(items)) for _ in range(3))
    batch = collate(items)
    dtype = PRECISIONS[precision]

    def forward():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            return objective(batch, torch.Generator().manual_seed(0))["loss"]

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = forward()
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        forward().backward()
    flops = counter.get_total_flops()
    for _ in range(2):
        step()
    step_s = statistics.median(timed(step) for _ in range(steps))
    fwd_s = statistics.median(timed(forward) for _ in range(max(2, steps // 2)))
    perturb_s = 0.0
    if method != "mmr":
        g = torch.Generator().manual_seed(0)

        def perturb():
            names, sev = sample_training_corruptions(batch_size, cfg.objective.modality, g)
            corrupt_batch(batch["pixels"], names, sev, g)
        perturb_s = statistics.median(timed(perturb) for _ in range(5))
    return {"preset": preset, "method": method, "precision": precision, "step_s": step_s, "fwd_s": fwd_s,
            "collate_s": collate_s, "perturb_s": perturb_s, "flops": flops,
            "params": sum(p.numel() for p in module.model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    peaks = {p: matmul_peak(PRECISIONS[p] or torch.float32) for p in args.precisions}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak: "
          + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()))
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, n=3 * args.batch, seed=0, size=128, progress=False)
        results = [measure(preset, method, precision, args.batch, args.steps, Path(tmp))
                   for preset in args.presets for precision in args.precisions for method in METHODS]
    rows = []
    for r in results:
        base = next(x for x in results if x["preset"] == r["preset"] and x["precision"] == r["precision"]
                    and x["method"] == "mmr")
        achieved = r["flops"] / r["step_s"]
        rows.append([r["preset"], r["precision"], r["method"], f"{r['params'] / 1e6:.1f}",
                     round(args.batch / r["step_s"], 1), round(r["step_s"], 2), round(r["step_s"] / base["step_s"], 2),
                     round(r["fwd_s"] / r["step_s"] * 100), round(r["perturb_s"] / r["step_s"] * 100, 1),
                     round(r["collate_s"] / r["step_s"] * 100, 1), round(r["flops"] / 1e9),
                     round(achieved / 1e9), round(100 * achieved / peaks[r["precision"]], 1)])
    print(format_table(["preset", "prec", "method", "M params", "samples/s", "step s", "vs mmr", "fwd %",
                        "perturb %", "collate %", "GFLOP/step", "GFLOP/s", "MFU %"], rows))


if __name__ == "__main__":
    main()
