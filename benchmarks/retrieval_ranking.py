"""Retrieval ranking time: N image–caption pairs ranked in both directions with the tiny preset.

Times, on an untrained tiny model (the speed does not depend on the weights): decoding the test images,
encoding images and captions, the full ITC ranking in both directions (one similarity matrix in row
chunks), and separately ITM re-ranking of each query's top-k (k fused passes per query).

    python benchmarks/retrieval_ranking.py [--pairs 2000] [--preset tiny] [--rerank-k 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from robust_mmr.cli.tables import format_table
from robust_mmr.config import load_config
from robust_mmr.data.manifest import read_manifest
from robust_mmr.data.synthetic import generate_dataset
from robust_mmr.evaluation.ranking import both_directions
from robust_mmr.evaluation.retrieval import RetrievalEncoder
from robust_mmr.model import build_model
from robust_mmr.tasks.retrieval_model import RetrievalModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rerank-k", type=int, default=16, help="0: skip the ITM re-ranking measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = load_config(args.preset, ["model.itm_head=true"])
    backbone, tokenizer = build_model(cfg.model)
    model = RetrievalModel(backbone, cfg.model.projection_dim).eval()
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, n=args.pairs, seed=0, size=cfg.model.image_size, progress=False)
        records = read_manifest(Path(tmp) / "image_text.jsonl")
        times = {}
        start = time.perf_counter()
        encoder = RetrievalEncoder(model, tokenizer, Path(tmp), records)
        times["decode images"] = time.perf_counter() - start
        mark = time.perf_counter()
        images = encoder.encode_images()
        times["encode images"] = time.perf_counter() - mark
        mark = time.perf_counter()
        texts = encoder.encode_texts()
        times["encode captions"] = time.perf_counter() - mark
        mark = time.perf_counter()
        ranks = encoder.ranks(images, texts)
        times["rank both directions (ITC)"] = time.perf_counter() - mark
        times["total (decode + encode + rank)"] = time.perf_counter() - start
        if args.rerank_k > 0:
            mark = time.perf_counter()
            encoder.ranks(images, texts, args.rerank_k)
            times[f"ITM re-rank top-{args.rerank_k}, both directions"] = time.perf_counter() - mark
    metrics = both_directions(ranks)
    print(format_table(["stage", "seconds"], [[k, round(v, 2)] for k, v in times.items()],
                       title=f"{len(records)} pairs ({args.preset}, {cfg.model.image_size} px, "
                             f"{torch.get_num_threads()} threads); untrained MR i2t {metrics['i2t']['mean_rank']:.0f}"))


if __name__ == "__main__":
    main()
