"""Pre-training data: image–text manifests → tensors, with the perturbed text view built per sample.

Image corruptions run batched on the training device inside the objective; text perturbations are
string operations, so the collator applies them (in DataLoader workers). Each sample's draws are a
function of (seed, sample id, epoch), and the training order one of (seed, epoch)
(:mod:`robust_mmr.training.sampler`), so a resumed run sees the same batches and views. Bad samples are
screened out or left out of their batch and listed (:mod:`robust_mmr.training.screening`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from robust_mmr.config import ModelConfig, ObjectiveConfig, TrainConfig
from robust_mmr.data.images import ImageReadError, read_image, resolve_image_path
from robust_mmr.data.schema import ImageTextRecord
from robust_mmr.errors import InputError
from robust_mmr.perturbations.seeding import derive_seed
from robust_mmr.perturbations.text import perturb_text, text_perturbations
from robust_mmr.training.sampler import EpochSampler, ResumableLoader
from robust_mmr.training.screening import Skipped, screen_records


def image_to_tensor(image: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """A decoded image ((H, W) or (H, W, C), uint8/uint16) → float (channels, size, size) in [0, 1].

    Intensities are divided by the dtype's maximum; colour is averaged to grey for 1 channel and grey
    repeated for 3. Resizing is bilinear.
    """
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    x = image.astype(np.float32) / scale
    if x.ndim == 3:
        x = x[..., :3].mean(axis=-1) if channels == 1 else x[..., :3]
    if x.shape[0] != size or x.shape[1] != size:
        planes = [x] if x.ndim == 2 else [x[..., c] for c in range(x.shape[-1])]
        planes = [np.asarray(Image.fromarray(p, mode="F").resize((size, size), Image.BILINEAR)) for p in planes]
        x = planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)
    t = torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    if t.shape[0] != channels:
        t = t.expand(channels, -1, -1).contiguous()
    return t.clamp(0.0, 1.0)


class Sample(NamedTuple):
    """One dataset item: ``pixels`` (C, H, W) float in [0, 1], or None with ``problem`` saying why."""

    record: ImageTextRecord
    pixels: torch.Tensor | None
    epoch: int
    problem: Skipped | None


class ImageTextDataset(Dataset):
    """The usable records of one split of an ``image_text.jsonl`` manifest (``skipped``: the others).

    Indexed by ``i`` or by the sampler's ``(i, epoch)``. A file that fails to decode gives a
    :class:`Sample` with ``pixels=None`` and its ``problem`` (``on_bad_sample="fail"``: InputError).
    """

    def __init__(self, root: Path, split: str, image_size: int, channels: int, on_bad_sample: str = "skip"):
        self.root = Path(root)
        self.records, self.skipped = screen_records(self.root, split, on_bad_sample)
        if not self.records:
            raise InputError(f"{self.root / 'image_text.jsonl'}: no usable records in split {split!r}"
                             f" ({len(self.skipped)} skipped)")
        self.image_size, self.channels, self.on_bad_sample = image_size, channels, on_bad_sample

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        index, epoch = index if isinstance(index, tuple) else (index, 0)
        record = self.records[index]
        try:
            image, info = read_image(resolve_image_path(self.root, record.image))
            _check_finite(image, info, record.image)
        except ImageReadError as err:
            if self.on_bad_sample == "fail":
                raise InputError(f"bad sample {record.id}: {err.reason} ({err.detail})") from None
            return Sample(record, None, epoch, Skipped(record.id, err.reason, err.detail))
        return Sample(record, image_to_tensor(image, self.image_size, self.channels), epoch, None)


def _check_finite(image: np.ndarray, info: dict, name: str) -> None:
    """Refuse NaN/inf pixels: in a float array, or in the intensity mapping ``read_image`` reports
    (a DICOM whose pixels hold NaN yields a NaN min-max window and would decode as an all-black image)."""
    bad_info = [k for k, v in info.items() if isinstance(v, float) and not np.isfinite(v)]
    if bad_info or (image.dtype.kind == "f" and not np.isfinite(image).all()):
        where = f" (intensity mapping: {', '.join(f'{k}={info[k]}' for k in bad_info)})" if bad_info else ""
        raise ImageReadError("non-finite pixels", f"{name}: NaN or infinite pixel values{where}")


@dataclass
class PretrainCollator:
    """Tokenises clean and perturbed text and draws each sample's perturbation mode.

    Modes (DESIGN §1.2): image-only, text-only or both, with ``mode_probs``. Text perturbations and
    severities are uniform over the registry and 1–5. See :mod:`robust_mmr.objectives.pretrain` for
    the batch keys.
    """

    tokenizer: object
    max_length: int
    objective: ObjectiveConfig
    seed: int

    def __call__(self, items: list[Sample]) -> dict[str, torch.Tensor]:
        """Samples that failed to decode are left out and listed in ``batch["skipped"]`` (dicts)."""
        good = [s for s in items if s.problem is None]
        if not good:
            raise InputError(f"every sample of a batch failed to decode: {[s.problem for s in items]}")
        records = [s.record for s in good]
        clean = self._encode([r.text.split() for r in records])
        batch = {
            "pixels": torch.stack([s.pixels for s in good]),
            "input_ids": clean["input_ids"],
            "attention_mask": clean["attention_mask"],
            "maskable": self._maskable(clean["input_ids"], clean["attention_mask"]),
            "domain": torch.full((len(records),), -1, dtype=torch.long),
        }
        if self.objective.coral_key:
            batch["domain"] = torch.tensor([_domain_id(r.meta.get(self.objective.coral_key)) for r in records])
        if self.objective.method != "mmr":
            batch.update(self._perturbed_text(records, [s.epoch for s in good], clean))
        batch["skipped"] = [s.problem.as_dict() for s in items if s.problem is not None]
        return batch

    def _encode(self, words: list[list[str]]):
        return self.tokenizer(words, is_split_into_words=True, padding="max_length", truncation=True,
                              max_length=self.max_length, return_tensors="pt")

    def _maskable(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        special = torch.tensor(self.tokenizer.all_special_ids)
        return attention.bool() & ~torch.isin(ids, special)

    def _perturbed_text(self, records, epochs: list[int], clean) -> dict[str, torch.Tensor]:
        names = text_perturbations()
        modes, pert_words, altered_words, aligned = [], [], [], []
        for r, epoch in zip(records, epochs):
            rng = np.random.default_rng(derive_seed(self.seed, r.id, "pretrain-view", epoch + 1))
            mode = int(rng.choice(3, p=np.asarray(self.objective.mode_probs) / sum(self.objective.mode_probs)))
            modes.append(mode)
            words = r.text.split()
            if mode in (1, 2):  # text-only or both
                name, severity = names[int(rng.integers(len(names)))], int(rng.integers(1, 6))
                result = perturb_text(r.text, name, severity, seed=self.seed, sample_id=f"{r.id}/{epoch}")
                words, changed, is_aligned = result.text.split() or words, set(result.changed_words), result.token_aligned
            else:
                changed, is_aligned = set(), True
            pert_words.append(words)
            altered_words.append(changed)
            aligned.append(is_aligned and len(words) == len(r.text.split()))
        pert = self._encode(pert_words)
        targets = pert["input_ids"].clone()
        altered = torch.zeros_like(targets, dtype=torch.bool)
        for i in range(len(records)):
            word_ids = pert.word_ids(i)
            for pos, w in enumerate(word_ids):
                if w is not None and w in altered_words[i]:
                    altered[i, pos] = True
            if aligned[i]:
                targets[i] = _aligned_targets(clean.word_ids(i), clean["input_ids"][i], word_ids, pert["input_ids"][i])
        mode_t = torch.tensor(modes)
        return {
            "pert_input_ids": pert["input_ids"],
            "pert_attention_mask": pert["attention_mask"],
            "pert_maskable": self._maskable(pert["input_ids"], pert["attention_mask"]),
            "pert_targets": targets,
            "text_altered": altered,
            "perturb_image": (mode_t == 0) | (mode_t == 2),
            "perturb_text": (mode_t == 1) | (mode_t == 2),
        }


def _aligned_targets(clean_words, clean_ids, pert_words, pert_ids) -> torch.Tensor:
    """Clean token ids at the perturbed positions of each word whose piece count is unchanged; own ids elsewhere."""
    def pieces(word_ids, ids):
        out: dict[int, list[int]] = {}
        for pos, w in enumerate(word_ids):
            if w is not None:
                out.setdefault(w, []).append(pos)
        return out

    clean_pos, pert_pos = pieces(clean_words, clean_ids), pieces(pert_words, pert_ids)
    targets = pert_ids.clone()
    for w, positions in pert_pos.items():
        source = clean_pos.get(w)
        if source is not None and len(source) == len(positions):
            targets[positions] = clean_ids[source]
    return targets


def _domain_id(value) -> int:
    """A stable small integer per domain value (-1 when absent), for CORAL grouping within a batch."""
    if value is None:
        return -1
    return derive_seed(0, str(value), "domain", 1) % (2**31)


class PretrainDataModule(L.LightningDataModule):
    """The resumable, rank-sharded train loader over an image–text dataset directory."""

    def __init__(self, root: Path, model_cfg: ModelConfig, objective: ObjectiveConfig, train: TrainConfig, tokenizer):
        super().__init__()
        self.root, self.model_cfg, self.train_cfg = Path(root), model_cfg, train
        self.collator = PretrainCollator(tokenizer, model_cfg.max_text_length, objective, train.seed)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = ImageTextDataset(self.root, "train", self.model_cfg.image_size, self.model_cfg.channels,
                                          self.train_cfg.on_bad_sample)

    def train_dataloader(self) -> ResumableLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochSampler(len(self.train_set), self.train_cfg.batch_size, self.train_cfg.seed, rank, world)
        return ResumableLoader(self.train_set, sampler, self._progress, collate_fn=self.collator,
                               num_workers=self.train_cfg.num_workers, persistent_workers=False, pin_memory=False)

    def _progress(self) -> tuple[int, int]:
        """(epoch, batches of it trained): read when Lightning saves a checkpoint."""
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.processed
