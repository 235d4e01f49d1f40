"""The data path: headers only at screening, one decode per image access, JPEG draft decoding, uint8 pixels
across worker boundaries, and the bounded fine-tuning image cache."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import robust_mmr.data.images as images_module
import robust_mmr.tasks.data as task_data
from robust_mmr.config import load_config
from robust_mmr.data.images import (
    check_image,
    image_to_tensor,
    image_to_uint8,
    pixels_to_float,
    read_image,
    stack_pixels,
)
from robust_mmr.model.text import build_tokenizer
from robust_mmr.tasks.data import DEFAULT_CACHE_IMAGES, TaskDataset, load_task_records
from robust_mmr.training.data import ImageTextDataset, PretrainCollator
from robust_mmr.training.sampler import EpochSampler, ResumableLoader


@pytest.fixture()
def decodes(monkeypatch) -> Counter:
    """Counts full pixel decodes per file: calls of PIL's ``ImageFile.load`` that still have data to decode
    (a second ``load()`` of a decoded image, which PIL answers at once, is not one)."""
    counts: Counter = Counter()
    original = ImageFile.ImageFile.load

    def spy(self):
        if self.tile:
            counts[Path(self.filename).name if self.filename else "<stream>"] += 1
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return counts


def test_screening_reads_headers_only_and_an_epoch_decodes_each_image_once(synth_dir, decodes):
    data = ImageTextDataset(synth_dir, "train", 64, 1, uint8=True)
    assert sum(decodes.values()) == 0  # screening every record read headers, no pixels
    cfg = load_config("tiny", ["model.max_text_length=16"])
    collate = PretrainCollator(build_tokenizer(cfg.model.text), 16, cfg.objective, seed=0)
    sampler = EpochSampler(len(data), batch_size=4, seed=0)
    loader = ResumableLoader(data, sampler, lambda: (0, 0), collate_fn=collate, num_workers=0)
    batches = list(loader)
    seen = len(batches) * 4
    assert seen == len(sampler) and all(b.pixels.dtype == torch.uint8 for b in batches)
    used = {Path(data.records[i].image).name for i, _ in sampler}
    assert sum(decodes.values()) == seen and set(decodes) == used and set(decodes.values()) == {1}


def test_the_screened_index_is_reused_until_the_manifest_changes(synth_dir, tmp_path, monkeypatch):
    """The other ranks and every resume read the run's index instead of every image header again."""
    import shutil

    import robust_mmr.training.screening as screening

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    headers = Counter()
    original = screening.check_image
    monkeypatch.setattr(screening, "check_image", lambda path, **kw: headers.update([1]) or original(path, **kw))
    run = tmp_path / "run"
    first = ImageTextDataset(data, "train", 64, 1, index_dir=run)
    screened = headers[1]
    assert screened == len(first.records) and (run / "screened-train.json").is_file()
    again = ImageTextDataset(data, "train", 64, 1, index_dir=run)  # another rank, or a resume
    assert headers[1] == screened and again.records == first.records and again.skipped == first.skipped
    manifest = data / "image_text.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[1:]) + "\n")  # the manifest changed: screen it again
    changed = ImageTextDataset(data, "train", 64, 1, index_dir=run)
    assert headers[1] > screened and [r.id for r in changed.records] == [
        json.loads(line)["id"] for line in lines[1:] if json.loads(line)["split"] == "train"]


def test_read_image_and_check_image_decode_once(tmp_path, decodes):
    path = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)).save(path)
    read_image(path)
    assert decodes["scan.png"] == 1  # used to be 2: a full check_image, then the decode
    check_image(path, decode=False)
    assert decodes["scan.png"] == 1
    check_image(path)
    assert decodes["scan.png"] == 2


def test_dicom_header_check_reads_no_pixels(monkeypatch):
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("CT_small.dcm"))
    assert check_image(path, decode=False) == (128, 128)

    def refuse(*args):
        raise AssertionError("the header check decoded the DICOM pixels")

    monkeypatch.setattr(images_module, "read_dicom", refuse)
    assert check_image(path, decode=False) == (128, 128)


def _photo(size: tuple[int, int]) -> np.ndarray:
    """A smooth RGB picture with fine noise, (height, width, 3) uint8."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = 128 + 90 * np.sin(6 * x) * np.cos(4 * y)
    noise = np.random.default_rng(0).normal(0, 6, (h, w, 3))
    return np.clip(base[..., None] + noise + np.array([0, 10, -10]), 0, 255).astype(np.uint8)


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path, decodes):
    path = tmp_path / "big.jpg"
    Image.fromarray(_photo((768, 1024))).save(path, quality=92)
    full, info_full = read_image(path)
    small, info = read_image(path, min_size=128)
    assert full.shape == (768, 1024, 3) and "draft_scale" not in info_full
    assert info["draft_scale"] == 4 and small.shape == (192, 256, 3)  # 768 // 128 = 6: the largest scale <= 6
    assert decodes["big.jpg"] == 2  # one decode each
    difference = (image_to_tensor(small, 128, 3) - image_to_tensor(full, 128, 3)).abs()
    assert difference.mean() < 0.01  # the same picture at model size
    png = tmp_path / "big.png"
    Image.fromarray(_photo((512, 512))).save(png)
    assert "draft_scale" not in read_image(png, min_size=64)[1] and read_image(png, min_size=64)[0].shape[0] == 512
    assert read_image(path, min_size=500)[1].get("draft_scale") is None  # 768 // 500 = 1: full size


def test_uint8_pixels_match_the_float_path_and_deep_images_stay_float():
    rgb = _photo((100, 80))
    for channels in (1, 3):
        small = image_to_uint8(rgb, 32, channels)
        assert small.dtype == torch.uint8 and small.shape == (channels, 32, 32)
        assert (pixels_to_float(small) - image_to_tensor(rgb, 32, channels)).abs().max() <= 1.01 / 255
    same = image_to_uint8(rgb[:32, :32, 0], 32, 1)
    assert torch.equal(pixels_to_float(same), image_to_tensor(rgb[:32, :32, 0], 32, 1))  # no resize: exact
    deep = np.full((20, 20), 40000, np.uint16)
    assert image_to_uint8(deep, 16, 1).dtype == torch.float32
    mixed = stack_pixels([same, image_to_uint8(deep, 32, 1)])
    assert mixed.dtype == torch.float32 and torch.allclose(mixed[1], torch.full((1, 32, 32), 40000 / 65535))
    assert torch.equal(mixed[0], pixels_to_float(same))
    assert stack_pixels([same, same]).dtype == torch.uint8


def test_task_cache_is_bounded_least_recently_used_and_uint8(synth_dir, monkeypatch):
    records = load_task_records(synth_dir, "vqa")
    images = list(dict.fromkeys(r.image for r in records))[:4]
    by_image = [next(r for r in records if r.image == im) for im in images]
    decoded: list[str] = []
    original = task_data.load_image
    monkeypatch.setattr(task_data, "load_image", lambda path: decoded.append(Path(path).name) or original(path))
    data = TaskDataset(synth_dir, by_image, 64, 1, cache_images=3)
    for i in (0, 1, 2, 0, 3):  # image 1 is the least recently used when image 3 arrives
        record, pixels = data[i]
        assert pixels.dtype == torch.uint8 and pixels.shape == (1, 64, 64)
    assert len(decoded) == 4 and len(data._cache) == 3
    assert list(data._cache) == [images[2], images[0], images[3]]
    assert all(t.dtype == torch.uint8 for t in data._cache.values())
    data[1]  # evicted: decoded again
    assert len(decoded) == 5 and len(data._cache) == 3
    expected = image_to_tensor(original(synth_dir / images[3]), 64, 1)
    assert torch.equal(pixels_to_float(data[3][1]), expected)  # 64 px stored at 64 px: the cache is exact
    assert DEFAULT_CACHE_IMAGES >= 315  # VQA-RAD's images all fit
    off = TaskDataset(synth_dir, by_image, 64, 1, cache_images=0)
    off[0], off[0]
    assert not off._cache


def test_training_run_feeds_float_pixels_to_the_model(synth_dir, tmp_path, monkeypatch):
    """Through the data module the batch crosses as uint8 and reaches the objective as float in [0, 1]."""
    from robust_mmr.objectives import pretrain as pretrain_module
    from robust_mmr.training.pretrain import run_pretraining

    seen = []
    original = pretrain_module.PretrainObjective.forward

    def spy(self, batch, *args, **kwargs):
        seen.append((batch.pixels.dtype, float(batch.pixels.min()), float(batch.pixels.max())))
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(pretrain_module.PretrainObjective, "forward", spy)
    cfg = load_config("tiny", ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1",
                               "model.fusion.layers=1", "model.decoder.layers=1", "model.max_text_length=16",
                               "train.batch_size=4", "train.max_steps=2", "train.num_workers=0",
                               "train.checkpoint_every=0"])
    run_pretraining(cfg, synth_dir, tmp_path, progress=False)
    assert seen and all(dtype == torch.float32 and 0 <= lo <= hi <= 1 for dtype, lo, hi in seen)
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2


def test_a_pretraining_batch_pins_every_tensor_it_holds(monkeypatch):
    """DataLoader(pin_memory=True) pins a dataclass batch only through its own ``pin_memory``; each tensor of the
    batch and of its perturbed view must be pinned (counted with a stand-in: pinning needs a GPU)."""
    import torch

    from robust_mmr.objectives.batch import PerturbedText, PretrainBatch

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pinned.append(self) or self.clone())
    t = [torch.zeros(2, 3) for _ in range(11)]
    batch = PretrainBatch(*t[:5], view=PerturbedText(*t[5:]), skipped=[{"id": "x"}])
    out = batch.pin_memory()
    assert len(pinned) == 11 and all(any(p is x for p in pinned) for x in t)
    assert isinstance(out.view, PerturbedText) and out.skipped == [{"id": "x"}] and out.pixels is not t[0]


def test_finetuning_workers_persist_so_their_image_cache_outlives_an_epoch(synth_dir, tmp_path, monkeypatch):
    """task_loader keeps its worker between epochs: over two epochs each image is decoded once, not once an epoch;
    memory is pinned only for a GPU run."""
    from robust_mmr.tasks.config import FinetuneConfig
    from robust_mmr.tasks.data import task_loader

    log = tmp_path / "decoded.txt"  # the worker is another process: it reports its decodes through a file
    original = task_data.load_image

    def counted(path):
        with log.open("a") as fh:
            fh.write(Path(path).name + "\n")
        return original(path)

    monkeypatch.setattr(task_data, "load_image", counted)
    records = load_task_records(synth_dir, "vqa")[:16]
    data = TaskDataset(synth_dir, records, 64, 1)
    loader = task_loader(data, FinetuneConfig(batch_size=4, num_workers=1), lambda items: items, shuffle=True)
    assert loader.persistent_workers and not loader.pin_memory
    for _ in range(2):
        assert sum(len(batch) for batch in loader) == len(records)
    decoded = log.read_text().split()
    assert sorted(decoded) == sorted({Path(r.image).name for r in records})  # once each, over both epochs
    assert task_loader(data, FinetuneConfig(accelerator="gpu"), lambda items: items, shuffle=False).pin_memory


def test_finetuning_batches_carry_uint8_that_the_model_reads_as_float(synth_dir):
    """A VQA batch crosses the worker boundary as uint8 (4x smaller); the model's image encoder turns it into the
    same float pixels the dataset used to send, so the image tokens are bit-identical."""
    from robust_mmr.model import build_model
    from robust_mmr.tasks.data import TaskCollator, record_target
    from robust_mmr.tasks.labels import LabelVocab

    records = load_task_records(synth_dir, "vqa")[:4]
    cfg = load_config("tiny", ["model.image_size=64", "model.vision.layers=1", "model.text.layers=1",
                               "model.fusion.layers=1"])
    backbone, tokenizer = build_model(cfg.model)
    collate = TaskCollator(tokenizer, 16, LabelVocab.build(record_target(r) for r in records))
    data = TaskDataset(synth_dir, records, 64, 1)
    batch = collate([data[i] for i in range(len(records))])
    assert batch["pixels"].dtype == torch.uint8 and batch["pixels"].shape == (4, 1, 64, 64)
    with torch.no_grad():
        from_uint8, _ = backbone.eval().encode_image(batch["pixels"])
        from_float, _ = backbone.encode_image(pixels_to_float(batch["pixels"]))
    assert torch.equal(from_uint8, from_float)
    augmented = TaskDataset(synth_dir, records, 64, 1, augment=True)[0][1]
    assert augmented.dtype == torch.float32 and 0 <= augmented.min() <= augmented.max() <= 1
