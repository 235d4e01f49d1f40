"""Images per second one DataLoader worker turns into model-size pixels, and how many workers one GPU needs.

Test JPEGs: the largest real VQA-RAD radiographs (RGB JPEGs, up to 2,321 px), resized with PIL so their long
side is 512 or 2,500 px and saved at quality 90 into a temporary folder. Per size, three ways to get a
(3, target, target) image from a file (target 128 and 224 px), each on one thread (a worker is one process):

- ``before``: the old path — a full ``check_image`` decode, a second decode in ``read_image``, float resize;
- ``one decode``: ``read_image`` then the uint8 resize (:func:`robust_mmr.data.images.image_to_uint8`);
- ``one decode + draft``: the same with ``min_size=target``: libjpeg decodes at 1/2, 1/4 or 1/8 scale.

Rates are images per CPU-second of the process (``time.process_time``), so a loaded machine does not
understate them; the wall-clock rate is shown beside. Then the GPU side, as an estimate: the FLOPs of one
pre-training sample of a preset (torch's ``FlopCounterMode``, forward + backward, at batch 2 on the CPU)
and the samples/s a GPU sustains at an assumed bf16 peak and MFU; workers needed = that rate / worker rate.

    python benchmarks/data_throughput.py [--sizes 512 2500] [--targets 128 224] [--images 8] [--seconds 3]
        [--preset base] [--model-size 224] [--peak-tflops 989] [--mfu 0.4] [--no-flops]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from robust_mmr.config import load_config
from robust_mmr.data.images import check_image, image_to_tensor, image_to_uint8, read_image
from robust_mmr.objectives.batch import PerturbedText, PretrainBatch
from robust_mmr.training.module import PretrainModule

SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vqa_rad" / "images"


def make_jpegs(source: Path, out: Path, count: int, side: int) -> list[Path]:
    """The ``count`` largest JPEGs of ``source`` resized to a long side of ``side`` px, saved in ``out``."""
    def long_side(path: Path) -> int:
        with Image.open(path) as img:
            return max(img.size)

    largest = sorted(source.glob("*.jpg"), key=lambda p: (-long_side(p), p.name))[:count]
    paths = []
    for path in largest:
        with Image.open(path) as img:
            scale = side / max(img.size)
            resized = img.convert("RGB").resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        paths.append(out / f"{side}-{path.name}")
        resized.save(paths[-1], quality=90)
    return paths


def pipelines(target: int) -> dict:
    """name → function(path) producing (3, target, target) pixels."""
    def before(path: Path):
        check_image(path)
        return image_to_tensor(read_image(path)[0], target, 3)

    return {
        "before (2 decodes, float resize)": before,
        "one decode, uint8 resize": lambda path: image_to_uint8(read_image(path)[0], target, 3),
        "one decode + draft, uint8 resize": lambda path: image_to_uint8(read_image(path, target)[0], target, 3),
    }


def rate(fn, paths: list[Path], seconds: float) -> tuple[float, float]:
    """(images per CPU-second, images per wall-second) of ``fn`` cycling over ``paths`` for ``seconds`` CPU time."""
    for path in paths:  # warm the page cache and the code paths
        fn(path)
    done, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    while time.process_time() - cpu0 < seconds:
        for path in paths:
            fn(path)
        done += len(paths)
    return done / (time.process_time() - cpu0), done / (time.perf_counter() - wall0)


def flops_per_sample(preset: str, size: int) -> tuple[float, str]:
    """Forward + backward FLOPs of one pre-training sample of ``preset`` at ``size`` px, and its method."""
    cfg = load_config(preset, [f"model.image_size={size}", "train.accelerator=cpu", "train.precision=32-true"])
    module = PretrainModule(cfg)
    batch = 2
    length = cfg.model.max_text_length
    tokens = module.tokenizer(["ct chest shows a small nodule in the right upper lobe"] * batch, padding="max_length",
                              max_length=length, return_tensors="pt")
    maskable = tokens.attention_mask.bool()
    view = PerturbedText(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, maskable=maskable,
                         targets=torch.full_like(tokens.input_ids, -100), perturb_text=torch.tensor([True, False]),
                         perturb_image=torch.tensor([False, True]))
    data = PretrainBatch(pixels=torch.rand(batch, cfg.model.channels, size, size), input_ids=tokens.input_ids,
                         attention_mask=tokens.attention_mask, maskable=maskable, domain=torch.full((batch,), -1),
                         view=None if cfg.objective.method == "mmr" else view)
    with FlopCounterMode(display=False) as counter:
        module.objective(data, torch.Generator().manual_seed(0))["loss"].backward()
    return counter.get_total_flops() / batch, cfg.objective.method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of real JPEGs (default VQA-RAD's)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2500], help="long sides of the test JPEGs")
    parser.add_argument("--targets", type=int, nargs="+", default=[128, 224], help="model input sides to resize to")
    parser.add_argument("--images", type=int, default=8, help="test JPEGs per size")
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per measurement")
    parser.add_argument("--preset", default="base", help="preset whose FLOPs set the GPU's appetite")
    parser.add_argument("--model-size", type=int, default=224, help="image side for the FLOP count")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOP utilisation on the GPU")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count and the GPU estimate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            paths = make_jpegs(args.source, Path(tmp), args.images, side)
            mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
            for target in args.targets:
                for name, fn in pipelines(target).items():
                    rows.append((side, mb, target, name, *rate(fn, paths, args.seconds)))
    print(f"torch {torch.__version__}, 1 thread per worker, {args.images} JPEGs per size (the largest of "
          f"{args.source}, resized, quality 90)\n")
    print("| JPEG long side | mean file | resize to | pipeline | images/s per worker (CPU) | images/s (wall) "
          "| vs before |")
    print("|---:|---:|---:|---|---:|---:|---:|")
    for side, mb, target, name, cpu, wall in rows:
        before = next(r[4] for r in rows if r[0] == side and r[2] == target)
        print(f"| {side} px | {mb:.2f} MB | {target} px | {name} | {cpu:.1f} | {wall:.1f} | {cpu / before:.1f}x |")
    if args.no_flops:
        return
    flops, method = flops_per_sample(args.preset, args.model_size)
    gpu_rate = args.peak_tflops * 1e12 * args.mfu / flops
    print(f"\nGPU side (estimate): `{args.preset}` ({method}) at {args.model_size} px costs {flops / 1e9:.0f} GFLOP "
          f"per sample (forward + backward, matmuls and convolutions, FlopCounterMode). At {args.peak_tflops:.0f} "
          f"TFLOP/s bf16 x {args.mfu:.0%} MFU one GPU trains {args.peak_tflops:.0f}e12 x {args.mfu} / "
          f"{flops / 1e9:.0f}e9 = ~{gpu_rate:.0f} samples/s, so it needs (resize to {args.model_size} px):\n")
    print("| JPEG long side | pipeline | workers (CPU cores) per GPU |")
    print("|---:|---|---:|")
    for side, _, target, name, cpu, _ in rows:
        if target == args.model_size:
            print(f"| {side} px | {name} | {gpu_rate / cpu:.0f} |")


if __name__ == "__main__":
    main()
