"""Pre-training throughput per method, preset and precision, with model FLOP utilisation.

Measures, in one process so the numbers compare: the machine's dense-matmul peak (fp32 and bf16),
then for each preset × precision × method the median wall time of full optimiser steps (collate
excluded, measured separately) at a fixed batch, the step's FLOPs (torch's FlopCounterMode), and
where the time goes (image perturbation, forward, backward, optimiser).

    python benchmarks/pretrain_throughput.py [--presets tiny small] [--batch 32] [--steps 5] [--device cuda]
        [--image-size 224] [--methods mmr robust-mmr]

On a GPU (``--device cuda``) every timed region ends with a device synchronise and the peak is the bf16/fp32
matmul rate measured on that GPU (8192² matrices).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.flop_counter import FlopCounterMode

from robust_mmr.cli.tables import format_table
from robust_mmr.config import load_config
from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.objectives import METHODS
from robust_mmr.perturbations.image.api import corrupt_batch, sample_training_corruptions
from robust_mmr.training.data import ImageTextDataset, PretrainCollator
from robust_mmr.training.module import PretrainModule

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """Sustained dense-matmul FLOP/s for n × n matrices in ``dtype`` (n = 2048 on a CPU, 8192 on a GPU)."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        times.append(timed(lambda: a @ b, device))
    return 2 * n**3 / statistics.median(times)


def timed(fn, device: torch.device = torch.device("cpu")) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def measure(preset: str, method: str, precision: str, batch_size: int, steps: int, data_dir: Path,
            device: torch.device, image_size: int | None) -> dict:
    overrides = [f"objective.method={method}", f"train.batch_size={batch_size}"]
    cfg = load_config(preset, overrides + ([f"model.image_size={image_size}"] if image_size else []))
    module = PretrainModule(cfg).to(device)
    objective = module.objective.train()
    optimizer = module.configure_optimizers()["optimizer"]
    dataset = ImageTextDataset(data_dir, "train", cfg.model.image_size, cfg.model.channels)
    collate = PretrainCollator(module.tokenizer, cfg.model.max_text_length, cfg.objective, seed=0)
    items = [dataset[i] for i in range(batch_size)]
    collate_s = statistics.median(timed(lambda: collate(items)) for _ in range(3))
    batch = move_data_to_device(collate(items), device)
    dtype = PRECISIONS[precision]

    def forward():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return objective(batch, torch.Generator(device).manual_seed(0))["loss"]

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
    step_s = statistics.median(timed(step, device) for _ in range(steps))
    fwd_s = statistics.median(timed(forward, device) for _ in range(max(2, steps // 2)))
    perturb_s = 0.0
    if method != "mmr":
        g = torch.Generator(device).manual_seed(0)

        def perturb():
            names, sev = sample_training_corruptions(batch_size, cfg.objective.modality, g)
            corrupt_batch(batch.pixels, names, sev, g)
        perturb_s = statistics.median(timed(perturb, device) for _ in range(5))
    return {"preset": preset, "method": method, "precision": precision, "step_s": step_s, "fwd_s": fwd_s,
            "collate_s": collate_s, "perturb_s": perturb_s, "flops": flops,
            "params": sum(p.numel() for p in module.model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--image-size", type=int, default=None, help="model input size (default: the preset's)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    peaks = {p: matmul_peak(PRECISIONS[p] or torch.float32, device) for p in args.precisions}
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        from robust_mmr.hardware import cpu_capability, native_cpu_bf16, resolve_precision

        where = (f"{torch.get_num_threads()} CPU threads, capability {cpu_capability()}, "
                 f"{'native' if native_cpu_bf16() else 'no native'} bf16 (precision auto → {resolve_precision('auto')})")
    print(f"torch {torch.__version__}, {where}; matmul peak: "
          + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()))
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, n=3 * args.batch, seed=0, size=args.image_size or 128, progress=False)
        results = [measure(preset, method, precision, args.batch, args.steps, Path(tmp), device, args.image_size)
                   for preset in args.presets for precision in args.precisions for method in args.methods]
    rows = []
    for r in results:
        base = next(x for x in results if x["preset"] == r["preset"] and x["precision"] == r["precision"])
        achieved = r["flops"] / r["step_s"]
        rows.append([r["preset"], r["precision"], r["method"], f"{r['params'] / 1e6:.1f}",
                     round(args.batch / r["step_s"], 1), round(r["step_s"], 2), round(r["step_s"] / base["step_s"], 2),
                     round(r["fwd_s"] / r["step_s"] * 100), round(r["perturb_s"] / r["step_s"] * 100, 1),
                     round(r["collate_s"] / r["step_s"] * 100, 1), round(r["flops"] / 1e9),
                     round(achieved / 1e9), round(100 * achieved / peaks[r["precision"]], 1)])
    print(format_table(["preset", "prec", "method", "M params", "samples/s", "step s", "vs first", "fwd %",
                        "perturb %", "collate %", "GFLOP/step", "GFLOP/s", "MFU %"], rows))


if __name__ == "__main__":
    main()
