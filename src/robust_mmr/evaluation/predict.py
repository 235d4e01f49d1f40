"""Batched prediction under a condition, reusing clean encodings across conditions.

Each unique image is encoded once per image condition (clean, or one corruption × severity) and
each question once per text condition; fusion then runs per item. An image-perturbed cell thus
re-encodes only the images, and a text-perturbed cell only the texts (DESIGN §4, issue 6 speed).

The model runs on one device (:func:`resolve_device`: a CUDA GPU when one is present, else the CPU): it is moved
there once, every input batch is moved there, and predictions come back to the CPU for the metrics. Images are
decoded and corrupted on the CPU (the corruptions' own fp32 code), then encoded ``batch_size`` at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robust_mmr.data.images import load_image, resolve_image_path
from robust_mmr.errors import InputError
from robust_mmr.hardware import FP32, autocast
from robust_mmr.model.mmr_model import MMRModel
from robust_mmr.perturbations.image.api import corrupt_image
from robust_mmr.perturbations.text import perturb_text
from robust_mmr.tasks.data import TaskRecord, record_target, record_text
from robust_mmr.tasks.labels import LabelVocab
from robust_mmr.tasks.model import PairClassifier
from robust_mmr.data.images import image_to_tensor


@dataclass(frozen=True)
class Cell:
    """One evaluation condition: a perturbation of each modality (or None) and dropped modalities."""

    image: tuple[str, int] | None = None  # (corruption, severity)
    text: tuple[str, int] | None = None  # (perturbation, severity)
    drop_image: bool = False
    drop_text: bool = False
    shuffle_images: bool = False  # each item gets another test image of its group (see Predictor.shuffle_groups)


SHUFFLE_KEYS = ("image_organ", "region", "modality")  # meta keys that group images for the shuffled test
AUTO_DEVICE = "auto"
DEVICE_HELP = "auto (a CUDA GPU when one is present, else the CPU), cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device = AUTO_DEVICE) -> torch.device:
    """The device inference runs on: ``auto`` is CUDA when ``torch.cuda.is_available()``, else the CPU; ``cpu``,
    ``cuda`` and ``cuda:N`` name one. Anything else, or CUDA where there is none, is an :class:`InputError`."""
    if isinstance(device, torch.device):
        return device
    if device == AUTO_DEVICE:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r}: choose {DEVICE_HELP}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: no CUDA GPU is available here (use cpu or auto)")
    return resolved


def accelerator_of(device: torch.device) -> str:
    """The Lightning accelerator name of ``device`` for the precision rule (:mod:`robust_mmr.hardware`)."""
    return "gpu" if device.type == "cuda" else "cpu"


class Predictor:
    """Predicts the records' classes under :class:`Cell` conditions; caches clean encodings.

    A blind classifier (``model.blind``) never has an image encoded: every cell runs with the image removed.
    ``model`` is moved to ``device`` (see :func:`resolve_device`); encodings stay there between cells.
    """

    def __init__(self, model: PairClassifier, tokenizer, vocab: LabelVocab, root: Path, records: list[TaskRecord],
                 seed: int = 0, batch_size: int = 64, precision: str = FP32, device: str | torch.device = AUTO_DEVICE):
        self.device = resolve_device(device)
        self.model, self.tokenizer, self.vocab = model.eval().to(self.device), tokenizer, vocab
        self.precision = precision  # a resolved precision (robust_mmr.hardware): bf16 autocast or fp32
        self.root, self.records, self.seed, self.batch_size = Path(root), records, seed, batch_size
        cfg = model.backbone.cfg
        self.size, self.channels, self.max_length = cfg.image_size, cfg.channels, cfg.max_text_length
        self.images = sorted({r.image for r in records})
        position = {image: i for i, image in enumerate(self.images)}
        self.image_index = torch.tensor([position[r.image] for r in records], dtype=torch.long)
        self.blind = bool(getattr(model, "blind", False))
        self.raw = {} if self.blind else {rel: load_image(resolve_image_path(self.root, rel)) for rel in self.images}
        self.labels = np.array([vocab.index(record_target(r)) for r in records])
        self._clean_images: tuple[Tensor, Tensor] | None = None
        self._clean_texts: tuple[Tensor, Tensor] | None = None

    @torch.no_grad()
    def hits(self, cell: Cell) -> tuple[np.ndarray, dict]:
        """Per-record correctness (N,) bool under ``cell``, and the sampled parameters of one example."""
        pred, example = self.predict(cell)
        return pred == self.labels, example

    @torch.no_grad()
    def predict(self, cell: Cell) -> tuple[np.ndarray, dict]:
        """Predicted class per record (N,) under ``cell``, and the sampled parameters of one example."""
        example: dict = {}
        if self.blind:
            cell = Cell(text=cell.text, drop_image=True, drop_text=cell.drop_text)
            images = self.model.no_image(len(self.images), self.model.backbone.missing_image)
        elif cell.image is None:
            self._clean_images = self._clean_images or self._encode_images(None, example)
            images = self._clean_images
        else:
            images = self._encode_images(cell.image, example)
        if cell.text is None:
            self._clean_texts = self._clean_texts or self._encode_texts(None, example)
            texts = self._clean_texts
        else:
            texts = self._encode_texts(cell.text, example)
        predictions = []
        image_index = self.shuffled_index() if cell.shuffle_images else self.image_index  # once per cell
        for start in range(0, len(self.records), self.batch_size):
            sl = slice(start, start + self.batch_size)
            idx = image_index[sl]
            n = idx.numel()
            idx, drop_image, drop_text = (t.to(self.device) for t in (
                idx, torch.full((n,), cell.drop_image), torch.full((n,), cell.drop_text)))
            with autocast(self.precision, self.device):
                fused = self.model.backbone.fuse(images[0][idx], images[1][idx], texts[0][sl], texts[1][sl],
                                                 drop_image, drop_text)
                predictions.append(self.model.classify(fused).argmax(-1).cpu())
        return (torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=int)), example

    def shuffle_groups(self) -> dict[str, tuple]:
        """image → its group for the shuffled test: the values of :data:`SHUFFLE_KEYS` its records carry."""
        groups = {}
        for r in self.records:
            groups.setdefault(r.image, tuple((k, str(r.meta[k])) for k in SHUFFLE_KEYS if k in r.meta))
        return groups

    def image_permutation(self) -> list[int]:
        """For each test image, the index of another test image of its group (a seeded derangement within each
        group; an image alone in its group keeps itself)."""
        group_of, groups = self.shuffle_groups(), {}
        for i, image in enumerate(self.images):
            groups.setdefault(group_of[image], []).append(i)
        rng = np.random.default_rng(self.seed)
        target = list(range(len(self.images)))
        for members in groups.values():
            order = [members[j] for j in rng.permutation(len(members))]
            for a, b in zip(order, order[1:] + order[:1]):  # a cycle through the group: nobody keeps its image
                target[a] = b
        return target

    def shuffled_index(self) -> Tensor:
        """Per record, the index of the image it is shown in the shuffled test (answers stay the record's)."""
        return torch.tensor(self.image_permutation(), dtype=torch.long)[self.image_index]

    def _encode_images(self, corruption: tuple[str, int] | None, example: dict) -> tuple[Tensor, Tensor]:
        return encode_images(self.model.backbone, self.raw, self.images, corruption, self.seed, self.size,
                             self.channels, self.batch_size, example, self.precision, self.device)

    def _encode_texts(self, perturbation: tuple[str, int] | None, example: dict) -> tuple[Tensor, Tensor]:
        items = [(r.id, record_text(r)) for r in self.records]
        return encode_texts(self.model.backbone, self.tokenizer, items, perturbation, self.seed, self.max_length,
                            self.batch_size, example, self.precision, self.device)


def encode_images(backbone: MMRModel, raw: dict[str, np.ndarray], images: list[str],
                  corruption: tuple[str, int] | None, seed: int, size: int, channels: int, batch_size: int,
                  example: dict | None = None, precision: str = FP32,
                  device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """Unimodal tokens (U, 1 + N, D) and validity of the decoded ``images`` (by path), each corrupted once with
    ``corruption`` (replayable per (seed, image path)); the first image's sampled parameters go into ``example``.
    The encoder (on ``device``, where the results stay) runs at ``precision`` (a resolved one); corruptions always
    run on the CPU in their own fp32 code, and each batch of pixels (B, C, H, W) is then moved to ``device``."""
    tokens, valid = [], []
    for start in range(0, len(images), batch_size):
        batch = []
        for rel in images[start:start + batch_size]:
            array = raw[rel]
            if corruption is not None:
                array, params = corrupt_image(array, corruption[0], corruption[1], seed=seed, sample_id=rel)
                if example is not None:
                    example.setdefault("image", params)
            batch.append(image_to_tensor(array, size, channels))
        with autocast(precision, device):
            t, v = backbone.encode_image(torch.stack(batch).to(device))
        tokens.append(t)
        valid.append(v)
    return torch.cat(tokens), torch.cat(valid)


def encode_texts(backbone: MMRModel, tokenizer, items: list[tuple[str, str]], perturbation: tuple[str, int] | None,
                 seed: int, max_length: int, batch_size: int, example: dict | None = None,
                 precision: str = FP32, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """Unimodal tokens (T, L, D) and validity of ``items`` ((record id, text) pairs), each text perturbed once with
    ``perturbation`` (replayable per (seed, record id)); the first perturbation goes into ``example``. Each batch
    of token ids (B, L) is moved to ``device``, where the encoder runs and the results stay."""
    texts = []
    for rid, text in items:
        if perturbation is not None:
            result = perturb_text(text, perturbation[0], perturbation[1], seed=seed, sample_id=rid)
            if example is not None:
                example.setdefault("text", {"original": text, "perturbed": result.text, "params": result.params})
            text = result.text
        texts.append(text)
    tokens, valid = [], []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding="max_length", truncation=True,
                        max_length=max_length, return_tensors="pt")
        with autocast(precision, device):
            t, v = backbone.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        tokens.append(t)
        valid.append(v)
    return torch.cat(tokens), torch.cat(valid)
