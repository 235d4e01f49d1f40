"""Time ``corrupt_batch`` on a batch of 64 one-channel 128-px images (training mode, CPU).

Usage: python benchmarks/perturb_throughput.py [--batch 64] [--size 128] [--repeats 20] [--modality generic]

Prints the median time (warm-up excluded) for a random mix of the modality's training corruptions
(severities 1-5, a fresh draw each repeat) and for every corruption alone on the whole batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robust_mmr.cli.tables import format_table
from robust_mmr.perturbations.image import CORRUPTIONS, corrupt_batch, sample_training_corruptions


def median_ms(run, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--modality", default="generic")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 1, args.size, args.size, generator=generator)

    def mix() -> None:
        names, severities = sample_training_corruptions(args.batch, args.modality, generator)
        corrupt_batch(images, names, severities, generator)

    rows = [[f"training mix ({args.modality})", "train", round(median_ms(mix, args.repeats), 2)]]
    for name, spec in CORRUPTIONS.items():
        severities = torch.randint(1, 6, (args.batch,), generator=generator)
        names = [name] * args.batch
        elapsed = median_ms(lambda: corrupt_batch(images, names, severities, generator), args.repeats)
        rows.append([name, spec.role, round(elapsed, 2)])
    title = (
        f"corrupt_batch, batch {args.batch} x 1 x {args.size} x {args.size}, "
        f"torch threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print(format_table(["corruptions", "role", "ms"], rows, title=title))


if __name__ == "__main__":
    main()
