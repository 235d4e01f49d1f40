"""Supervised data for fine-tuning: VQA and classification records → tensors, with domain hold-outs.

A record's text is its question (VQA) or its text (classification); its target is the answer or
label, indexed in a :class:`~robust_mmr.tasks.labels.LabelVocab` (-1 outside the vocabulary).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robust_mmr.data.images import (
    ImageReadError,
    check_image,
    image_to_uint8,
    load_image,
    pixels_to_float,
    resolve_image_path,
    stack_pixels,
)
from robust_mmr.data.manifest import read_manifest
from robust_mmr.data.schema import ClassificationRecord, VQARecord
from robust_mmr.errors import InputError
from robust_mmr.hardware import uses_cuda
from robust_mmr.tasks.config import VAL_CARVES, FinetuneConfig
from robust_mmr.tasks.labels import LabelVocab

TASK_MANIFESTS = {"vqa": "vqa.jsonl", "classify": "classification.jsonl"}
TaskRecord = VQARecord | ClassificationRecord


def record_text(record: TaskRecord) -> str:
    return record.question if isinstance(record, VQARecord) else record.text


def record_target(record: TaskRecord) -> str:
    return record.answer if isinstance(record, VQARecord) else record.label


def load_task_records(root: Path, task: str) -> list[TaskRecord]:
    path = Path(root) / TASK_MANIFESTS[task]
    if not path.is_file():
        raise InputError(f"{root}: no {TASK_MANIFESTS[task]} for task {task!r}")
    return read_manifest(path)


@dataclass(frozen=True)
class Holdout:
    """Leave-one-domain-out: records whose ``meta[key] == value`` form the unseen domain."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Holdout:
        if "=" not in text:
            raise InputError(f"--holdout must look like KEY=VALUE (e.g. domain=site-c), got {text!r}")
        key, value = text.split("=", 1)
        return cls(key, value)

    def is_held_out(self, record: TaskRecord) -> bool:
        if self.key not in record.meta:
            raise InputError(f"record {record.id} has no meta key {self.key!r} to hold out by")
        return str(record.meta[self.key]) == self.value


CARVE_SEED = 0  # the validation carve is the same for every fine-tuning seed


def split_records(records: list[TaskRecord], holdout: Holdout | None, val_fraction: float,
                  carve: str = "auto") -> tuple[dict[str, list[TaskRecord]], list[str]]:
    """train / val / test (in-domain) / test_ood (held-out domain) record lists, plus notes on what was done.

    Training and validation only ever see training domains. Without a val split, ``val_fraction`` of the
    training records is carved out as validation, the same for every seed (:data:`CARVE_SEED`):

    - ``question``: single questions. Right where the test images are training images (VQA-RAD's standard
      split: validation then asks new questions about seen images, as the test does, and no image is lost
      to training);
    - ``image``: whole images (all questions of an image together). Right where test images are unseen;
    - ``auto``: ``question`` when any in-domain test image is also a training image, else ``image``.
    """
    if carve not in VAL_CARVES:
        raise InputError(f"validation carve {carve!r}: choose one of {', '.join(VAL_CARVES)}")
    notes = []
    seen = [r for r in records if holdout is None or not holdout.is_held_out(r)]
    parts = {s: [r for r in seen if r.split == s] for s in ("train", "val", "test")}
    parts["test_ood"] = [r for r in records if holdout is not None and holdout.is_held_out(r) and r.split == "test"]
    if holdout is not None:
        if not parts["test_ood"]:
            raise InputError(f"no test records with {holdout.key}={holdout.value}")
        notes.append(f"held out {holdout.key}={holdout.value}: {len(parts['test_ood'])} test records never trained on")
    if not parts["train"]:
        raise InputError("no training records left" + (f" once {holdout.key}={holdout.value} is held out"
                                                          if holdout is not None else ""))
    if not parts["val"]:
        if carve == "auto":
            shared = {r.image for r in parts["test"]} & {r.image for r in parts["train"]}
            carve = "question" if shared else "image"
        parts["train"], parts["val"] = carve_validation(parts["train"], val_fraction, carve)
        unit = "questions" if carve == "question" else "images"
        n_units = len(parts["val"]) if carve == "question" else len({r.image for r in parts["val"]})
        notes.append(f"no val split in the data: carved {n_units} training {unit} ({len(parts['val'])} records) out "
                     f"as validation, by {carve}, the same for every seed (carve seed {CARVE_SEED})")
    if not parts["train"]:
        raise InputError("no training records left")
    return parts, notes


def carve_validation(train: list[TaskRecord], fraction: float,
                     by: str) -> tuple[list[TaskRecord], list[TaskRecord]]:
    """(train, val): a seeded ``fraction`` of the records (``by="question"``) or of the images with all their
    records (``by="image"``), in the records' order, at least one unit."""
    rng = np.random.default_rng(CARVE_SEED)
    if by == "question":
        ids = sorted(r.id for r in train)
        chosen = set(rng.choice(ids, size=max(1, int(len(ids) * fraction)), replace=False).tolist())
        return [r for r in train if r.id not in chosen], [r for r in train if r.id in chosen]
    images = sorted({r.image for r in train})
    chosen = set(rng.choice(images, size=max(1, int(len(images) * fraction)), replace=False).tolist())
    return [r for r in train if r.image not in chosen], [r for r in train if r.image in chosen]


DEFAULT_CACHE_IMAGES = 1024  # VQA-RAD has 315 images, SLAKE 642: every image of either is decoded once per run


ON_BAD_SAMPLE = ("skip", "fail")


def screen_records(root: Path, records: list[TaskRecord], policy: str = "skip") -> tuple[list[TaskRecord], list[dict]]:
    """The records whose image decodes (each distinct image decoded once), and one ``{"id", "image", "reason"}``
    per record left out. ``policy="fail"`` raises an :class:`InputError` naming the first bad record instead (the
    pre-training policy, ``train.on_bad_sample``)."""
    if policy not in ON_BAD_SAMPLE:
        raise InputError(f"on_bad_sample {policy!r}: choose one of {', '.join(ON_BAD_SAMPLE)}")
    problems: dict[str, str] = {}
    for image in dict.fromkeys(r.image for r in records):
        try:
            check_image(resolve_image_path(root, image))
        except (ImageReadError, InputError) as err:
            problems[image] = str(err)
    skipped = [{"id": r.id, "image": r.image, "reason": problems[r.image]} for r in records if r.image in problems]
    if skipped and policy == "fail":
        first = skipped[0]
        raise InputError(f"record {first['id']}: image {first['image']}: {first['reason']} (on_bad_sample=fail; "
                         "skip leaves such records out and lists them)")
    return [r for r in records if r.image not in problems], skipped


def screen_training(root: Path, parts: dict[str, list], policy: str) -> tuple[list[dict], list[str]]:
    """Leave the records whose image cannot be used out of ``parts["train"]`` and ``parts["val"]`` (in place):
    the skipped records (for ``task.json``) and the note that says so (``policy="fail"``: an
    :class:`InputError` naming the first instead)."""
    skipped: list[dict] = []
    for split in ("train", "val"):
        parts[split], left_out = screen_records(root, parts[split], policy)
        skipped += left_out
    notes = [f"{len(skipped)} records left out: their image cannot be used (listed in task.json 'skipped'; "
             "on_bad_sample=fail stops instead)"] if skipped else []
    return skipped, notes


class TaskDataset(Dataset):
    """(record, image) items, the image (C, H, W) at the model size: uint8 for an 8-bit image (4× smaller across a
    worker boundary; the model makes it float on its device), float in [0, 1] for a 16-bit or DICOM one and for an
    augmented one. With ``read_images=False`` (a blind run) no image is opened: each item carries an empty (0,)
    tensor.

    Many questions share an image, so the last ``cache_images`` images used are kept, resized to the model
    size and as uint8 (an 8-bit image; a 16-bit one or DICOM stays float): ``C * image_size**2`` bytes
    each, 150 KB at 224 px RGB, so the default 1,024 hold at most ~150 MB (~440 MB at 384 px) per process
    (each DataLoader worker keeps its own). Least recently used images are dropped first; 0 turns it off.
    """

    def __init__(self, root: Path, records: list[TaskRecord], image_size: int, channels: int,
                 read_images: bool = True, augment: bool = False, cache_images: int = DEFAULT_CACHE_IMAGES):
        self.root, self.records = Path(root), records
        self.image_size, self.channels, self.read_images, self.augment = image_size, channels, read_images, augment
        self.cache_images = cache_images
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.records)

    def image(self, relative: str) -> torch.Tensor:
        """The image at ``relative``: uint8 or float (C, H, W) (see the class); (0,) in a blind run."""
        if not self.read_images:
            return torch.zeros(0)
        return self._cached(relative)

    def _cached(self, relative: str) -> torch.Tensor:
        """The model-size image (uint8 or float (C, H, W)), decoded on a cache miss; least recent evicted."""
        if relative in self._cache:
            self._cache.move_to_end(relative)
            return self._cache[relative]
        array = load_image(resolve_image_path(self.root, relative))
        pixels = image_to_uint8(array, self.image_size, self.channels)
        if self.cache_images > 0:
            self._cache[relative] = pixels
            if len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return pixels

    def __getitem__(self, index: int) -> tuple[TaskRecord, torch.Tensor]:
        record = self.records[index]
        image = self.image(record.image)
        return record, augment_image(pixels_to_float(image)) if self.augment and image.numel() else image


def task_loader(dataset: Dataset, cfg: FinetuneConfig, collate, shuffle: bool, drop_last: bool = False) -> DataLoader:
    """A fine-tuning DataLoader: seeded order, pinned memory when training on a GPU, and workers (if any) kept
    across epochs, so each keeps its image cache (:class:`TaskDataset`) instead of decoding again every epoch."""
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=shuffle, drop_last=drop_last, collate_fn=collate,
                      num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                      pin_memory=uses_cuda(cfg.accelerator), generator=torch.Generator().manual_seed(cfg.seed))


def augment_image(image: torch.Tensor, scale: float = 0.1, degrees: float = 10.0,
                  intensity: float = 0.1) -> torch.Tensor:
    """A fine-tuning augmentation of one image (C, H, W) in [0, 1], from torch's global RNG (seeded per run):
    zoom in by up to ``scale`` with a random shift inside the image, rotate by up to ±``degrees``, then scale
    contrast and shift brightness by up to ±``intensity``. Mild on purpose: a radiograph's laterality and
    anatomy must survive (no flips)."""
    r = torch.rand(6)
    zoom = 1.0 - scale * r[0]
    angle = torch.deg2rad((2 * r[1] - 1) * degrees)
    shift = (2 * r[2:4] - 1) * (1 - zoom)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.tensor([[cos, -sin, shift[0]], [sin, cos, shift[1]]], dtype=image.dtype)[None]
    grid = torch.nn.functional.affine_grid(theta, [1, *image.shape], align_corners=False)
    out = torch.nn.functional.grid_sample(image[None], grid, padding_mode="border", align_corners=False)[0]
    contrast, brightness = 1 + (2 * r[4] - 1) * intensity, (2 * r[5] - 1) * intensity
    mean = out.mean()
    return ((out - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


@dataclass
class TaskCollator:
    """Tokenises texts (padded to the longest in the batch) and indexes targets. Batch: pixels, input_ids,
    attention_mask, labels, closed."""

    tokenizer: object
    max_length: int
    vocab: LabelVocab

    def __call__(self, items: list[tuple[TaskRecord, torch.Tensor]]) -> dict:
        records, images = zip(*items)
        enc = self.tokenizer([record_text(r) for r in records], padding="longest", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {
            "pixels": stack_pixels(images),
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": torch.tensor([self.vocab.index(record_target(r)) for r in records]),
            "closed": torch.tensor([getattr(r, "answer_type", "open") == "closed" for r in records]),
        }
