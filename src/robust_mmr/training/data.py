"""Pre-training data: image–text manifests → tensors, with the perturbed text view built per sample.

Image corruptions run batched on the training device inside the objective; text perturbations are
string operations, so the collator applies them (in DataLoader workers). Each sample's draws are a
function of (seed, sample id, epoch), and the training order one of (seed, epoch)
(:mod:`robust_mmr.training.sampler`), so a resumed run sees the same batches and views. Bad samples are
screened out or left out of their batch and listed (:mod:`robust_mmr.training.screening`).

The data path, per image: the screening reads its header only; the worker decodes it once (a large JPEG
at reduced scale, :func:`robust_mmr.data.images.read_image`), resizes it to the model size in 8 bits and
hands over uint8 pixels; the batch becomes float in [0, 1] after its copy to the training device
(:meth:`PretrainDataModule.on_after_batch_transfer`). 16-bit and DICOM images travel as float instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from robust_mmr.config import ModelConfig, ObjectiveConfig, TrainConfig
from robust_mmr.data.images import (
    ImageReadError,
    image_to_tensor,
    image_to_uint8,
    pixels_to_float,
    read_image,
    resolve_image_path,
    stack_pixels,
)
from robust_mmr.errors import InputError
from robust_mmr.objectives.batch import PerturbedText, PretrainBatch
from robust_mmr.objectives.views import MASK, TextView, perturbed_text_view
from robust_mmr.perturbations.seeding import derive_seed
from robust_mmr.training.sampler import EpochSampler, ResumableLoader
from robust_mmr.training.screening import Sample, Skipped, screened_index
from robust_mmr.training.stream import ShardStream, StreamLoader, is_shard_dir


class ImageTextDataset(Dataset):
    """The usable records of one split of an ``image_text.jsonl`` manifest (``skipped``: the others).

    Indexed by ``i`` or by the sampler's ``(i, epoch)``. Each access decodes its image once (a JPEG of at
    least twice ``image_size`` at 1/2, 1/4 or 1/8 scale). A file that fails to decode gives a
    :class:`Sample` with ``pixels=None`` and its ``problem`` (``on_bad_sample="fail"``: InputError).
    ``uint8=True``: pixels of 8-bit images stay uint8 (see :func:`robust_mmr.data.images.image_to_uint8`).
    """

    def __init__(self, root: Path, split: str, image_size: int, channels: int, on_bad_sample: str = "skip",
                 uint8: bool = False, index_dir: Path | None = None):
        self.root = Path(root)
        self.records, self.skipped = screened_index(self.root, split, on_bad_sample, index_dir)
        if not self.records:
            raise InputError(f"{self.root / 'image_text.jsonl'}: no usable records in split {split!r}"
                             f" ({len(self.skipped)} skipped)")
        self.image_size, self.channels, self.on_bad_sample = image_size, channels, on_bad_sample
        self.to_pixels = image_to_uint8 if uint8 else image_to_tensor

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        index, epoch = index if isinstance(index, tuple) else (index, 0)
        record = self.records[index]
        try:
            image, info = read_image(resolve_image_path(self.root, record.image), min_size=self.image_size)
            _check_finite(image, info, record.image)
        except ImageReadError as err:
            if self.on_bad_sample == "fail":
                raise InputError(f"bad sample {record.id}: {err.reason} ({err.detail})") from None
            return Sample(record, None, epoch, Skipped(record.id, err.reason, err.detail))
        return Sample(record, self.to_pixels(image, self.image_size, self.channels), epoch, None)


def _check_finite(image: np.ndarray, info: dict, name: str) -> None:
    """Refuse NaN/inf pixels: in a float array, or in the intensity mapping ``read_image`` reports
    (a DICOM whose pixels hold NaN yields a NaN min-max window and would decode as an all-black image)."""
    bad_info = [k for k, v in info.items() if isinstance(v, float) and not np.isfinite(v)]
    if bad_info or (image.dtype.kind == "f" and not np.isfinite(image).all()):
        where = f" (intensity mapping: {', '.join(f'{k}={info[k]}' for k in bad_info)})" if bad_info else ""
        raise ImageReadError("non-finite pixels", f"{name}: NaN or infinite pixel values{where}")


@dataclass
class PretrainCollator:
    """Decoded samples → a :class:`~robust_mmr.objectives.batch.PretrainBatch`: the clean text tokenised
    (padded to the longest in the batch) and, for methods with a perturbed view, its text half built per
    sample by :func:`robust_mmr.objectives.views.perturbed_text_view` (mode, perturbation, whole-word
    clean targets). Samples that failed to decode are left out and listed in ``batch.skipped``."""

    tokenizer: object
    max_length: int
    objective: ObjectiveConfig
    seed: int

    def __call__(self, items: list[Sample]) -> PretrainBatch:
        good = [s for s in items if s.problem is None]
        if not good:
            raise InputError(f"every sample of a batch failed to decode: {[s.problem for s in items]}")
        records = [s.record for s in good]
        clean = self.tokenizer([r.text.split() for r in records], is_split_into_words=True, padding="longest",
                               truncation=True, max_length=self.max_length, return_tensors="pt")
        domain = torch.full((len(records),), -1, dtype=torch.long)
        if self.objective.coral_key:
            domain = torch.tensor([_domain_id(r.meta.get(self.objective.coral_key)) for r in records])
        view = None
        if self.objective.method != "mmr":
            view = self._perturbed_text([perturbed_text_view(r.text, r.id, s.epoch, self.objective, self.seed,
                                                             self._pieces, self.max_length)
                                         for r, s in zip(records, good)])
        return PretrainBatch(pixels=stack_pixels([s.pixels for s in good]), input_ids=clean["input_ids"],
                             attention_mask=clean["attention_mask"],
                             maskable=self._maskable(clean["input_ids"], clean["attention_mask"]), domain=domain,
                             view=view, skipped=[s.problem.as_dict() for s in items if s.problem is not None])

    def _pieces(self, words: list[str]) -> list[list[int]]:
        """The word-piece ids of each word."""
        return self.tokenizer(words, add_special_tokens=False)["input_ids"] if words else []

    def _maskable(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        special = torch.tensor(self.tokenizer.all_special_ids)
        return attention.bool() & ~torch.isin(ids, special)

    def _perturbed_text(self, views: list[TextView]) -> PerturbedText:
        """Per-sample text views → padded tensors: [CLS] pieces [SEP], truncated to ``max_length``."""
        tok = self.tokenizer
        body = self.max_length - 2
        length = 2 + max(min(len(v.ids), body) for v in views)
        ids = torch.full((len(views), length), tok.pad_token_id, dtype=torch.long)
        targets = torch.full_like(ids, -100)
        maskable = torch.zeros_like(ids, dtype=torch.bool)
        attention = torch.zeros_like(ids)
        for i, v in enumerate(views):
            n = min(len(v.ids), body)
            pieces = [tok.mask_token_id if t == MASK else t for t in v.ids[:n]]
            ids[i, :n + 2] = torch.tensor([tok.cls_token_id, *pieces, tok.sep_token_id])
            targets[i, 1:n + 1] = torch.tensor(v.targets[:n], dtype=torch.long)
            maskable[i, 1:n + 1] = torch.tensor(v.maskable[:n], dtype=torch.bool)
            attention[i, :n + 2] = 1
        return PerturbedText(input_ids=ids, attention_mask=attention, maskable=maskable, targets=targets,
                             perturb_text=torch.tensor([v.perturb_text for v in views]),
                             perturb_image=torch.tensor([v.perturb_image for v in views]))


def _domain_id(value) -> int:
    """A stable small integer per domain value (-1 when absent), for CORAL grouping within a batch."""
    if value is None:
        return -1
    return derive_seed(0, str(value), "domain", 1) % (2**31)


class PretrainDataModule(L.LightningDataModule):
    """The resumable, rank-sharded train loader over an image–text dataset directory, or over a folder of tar
    shards (``shards.json`` there; streamed, :mod:`robust_mmr.training.stream`).

    Manifest workers persist across epochs (no re-fork, no re-copy of the record list each epoch); stream workers
    are made per epoch (they take the epoch's shard order). Both hand over uint8 batches; the pixels become float
    on the training device (:meth:`on_after_batch_transfer`).
    """

    def __init__(self, root: Path, model_cfg: ModelConfig, objective: ObjectiveConfig, train: TrainConfig, tokenizer,
                 index_dir: Path | None = None):
        super().__init__()
        self.root, self.model_cfg, self.train_cfg, self.index_dir = Path(root), model_cfg, train, index_dir
        self.collator = PretrainCollator(tokenizer, model_cfg.max_text_length, objective, train.seed)

    @property
    def streamed(self) -> bool:
        return is_shard_dir(self.root)

    @property
    def train_pairs(self) -> int:
        """Usable training pairs (every rank's)."""
        return self.train_set.samples if self.streamed else len(self.train_set)

    def prepare_data(self) -> None:
        """Once per node, before any rank's :meth:`setup`: screen the manifest into the index every rank reads
        (shards were screened when they were written)."""
        if not self.streamed:
            screened_index(self.root, "train", self.train_cfg.on_bad_sample, self.index_dir)

    def setup(self, stage: str | None = None) -> None:
        size, channels, policy = self.model_cfg.image_size, self.model_cfg.channels, self.train_cfg.on_bad_sample
        if self.streamed:
            rank, world = self._rank_world()
            self.train_set = ShardStream(self.root, size, channels, self.train_cfg.seed, rank, world,
                                         self.train_cfg.num_workers, policy)
        else:
            self.train_set = ImageTextDataset(self.root, "train", size, channels, policy, uint8=True,
                                              index_dir=self.index_dir)

    def train_dataloader(self) -> ResumableLoader | StreamLoader:
        trainer = self.trainer
        workers = self.train_cfg.num_workers
        on_cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"
        if self.streamed:
            return StreamLoader(self.train_set, self.train_cfg.batch_size, self._progress, collate_fn=self.collator,
                                num_workers=workers, pin_memory=on_cuda)
        rank, world = self._rank_world()
        sampler = EpochSampler(len(self.train_set), self.train_cfg.batch_size, self.train_cfg.seed, rank, world)
        return ResumableLoader(self.train_set, sampler, self._progress, collate_fn=self.collator,
                               num_workers=workers, persistent_workers=workers > 0, pin_memory=on_cuda)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def on_after_batch_transfer(self, batch: PretrainBatch, dataloader_idx: int) -> PretrainBatch:
        """The batch on the training device: uint8 pixels (B, C, H, W) → float in [0, 1]."""
        return replace(batch, pixels=pixels_to_float(batch.pixels))

    def _progress(self) -> tuple[int, int]:
        """(epoch, batches of it trained): read when Lightning saves a checkpoint."""
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.processed
