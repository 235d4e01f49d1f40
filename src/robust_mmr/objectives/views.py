"""The perturbed view v1 of a pre-training pair (DESIGN §1.2), in one place.

Two halves with two call sites and one owner: the text half is string work, built per sample in the
DataLoader workers by the collator (:func:`perturbed_text_view`); the image half is batched tensor
work on the training device, built by the objective (:func:`perturbed_images`,
:func:`perturbed_image_mask`). Every random draw is replayable: the text half from
(seed, sample id, epoch), the image half from the step's generator.

Per sample a *mode* picks which modality v1 perturbs: image-only, text-only or both
(``objective.mode_probs``). With perturbation-aware masking (``robust-mmr`` with ``aware_masking``):

- image: the patches the corruption changed most are masked first (their damage rank, ties sharing
  one rank, raises MAE's argsort noise by ``aware_beta``); a clean image is masked at
  ``clean_mask_scale`` × the base ratio; the targets are the clean pixels;
- text, whole-word aligned: for a word-aligned perturbation (typos, OCR confusions, case noise, and
  lexicon swaps that kept the word count) each altered word is, with ``altered_token_boost`` × the
  mask probability, replaced by as many ``[MASK]`` tokens as the *clean* word has word pieces and
  predicted as the clean word's pieces; an altered word not chosen stays visible and is never a target
  (its pieces are noise). A perturbation that changes the word count (drops, swaps, shuffles, terse
  rewrite) keeps its own tokens as targets. A clean text in v1 is masked at ``clean_mask_scale`` × the
  base probability.

Without it (``mmr-aug``, or ``aware_masking=false``) v1 is plain augmentation: random masks, and the
perturbed view reconstructs itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from robust_mmr.config import ObjectiveConfig
from robust_mmr.objectives.masking import PatchMask, damage_rank, keep_count, mask_patches, patchify
from robust_mmr.perturbations.image.api import corrupt_batch, sample_training_corruptions
from robust_mmr.perturbations.seeding import derive_seed
from robust_mmr.perturbations.text import perturb_text, text_perturbations

IMAGE_ONLY, TEXT_ONLY, BOTH = 0, 1, 2
MASK = -1  # placeholder for the tokenizer's mask id in TextView.ids; the collator substitutes it


def uses_aware_masking(cfg: ObjectiveConfig) -> bool:
    """Whether v1 gets perturbation-aware masking and clean targets (Robust-MMR's component 1)."""
    return cfg.method == "robust-mmr" and cfg.aware_masking


def draw_mode(rng: np.random.Generator, cfg: ObjectiveConfig) -> int:
    """IMAGE_ONLY, TEXT_ONLY or BOTH with ``cfg.mode_probs``."""
    probs = np.asarray(cfg.mode_probs, dtype=float)
    return int(rng.choice(3, p=probs / probs.sum()))


@dataclass(frozen=True)
class TextView:
    """The text half of v1 for one sample, at word-piece level (no special tokens, not truncated).

    ``ids`` the input pieces; ``targets`` the clean piece to predict at a pre-masked position, -100
    elsewhere; ``maskable`` whether random masking may pick the position (its own id then the target).
    """

    ids: list[int]
    targets: list[int]
    maskable: list[bool]
    perturb_text: bool
    perturb_image: bool


def perturbed_text_view(text: str, sample_id: str, epoch: int, cfg: ObjectiveConfig, seed: int,
                        pieces, max_words: int | None = None) -> TextView:
    """The text half of v1 of one sample. ``pieces(words) -> list[list[int]]`` tokenises each word;
    only the first ``max_words`` words are used (the rest could not fit the model's text length)."""
    rng = np.random.default_rng(derive_seed(seed, sample_id, "pretrain-view", epoch + 1))
    mode = draw_mode(rng, cfg)
    clean_words = text.split()[:max_words]
    text = " ".join(clean_words)
    words, changed, aligned = clean_words, set(), True
    if mode in (TEXT_ONLY, BOTH):
        names = text_perturbations()
        name, severity = names[int(rng.integers(len(names)))], int(rng.integers(1, 6))
        result = perturb_text(text, name, severity, seed=seed, sample_id=f"{sample_id}/{epoch}")
        words = result.text.split() or clean_words
        changed, aligned = set(result.changed_words), result.token_aligned and len(words) == len(clean_words)
    aware = uses_aware_masking(cfg)
    boost = min(1.0, cfg.text_mask_prob * cfg.altered_token_boost)
    ids, targets, maskable = [], [], []
    for w, word_pieces in enumerate(pieces(words)):
        if not (aware and aligned and w in changed):
            ids += word_pieces
            targets += [-100] * len(word_pieces)
            maskable += [True] * len(word_pieces)
        elif rng.random() < boost:  # predict the clean word in its place
            clean_pieces = pieces([clean_words[w]])[0]
            ids += [MASK] * len(clean_pieces)
            targets += clean_pieces
            maskable += [False] * len(clean_pieces)
        else:  # visible noise, never a target
            ids += word_pieces
            targets += [-100] * len(word_pieces)
            maskable += [False] * len(word_pieces)
    return TextView(ids, targets, maskable, perturb_text=mode in (TEXT_ONLY, BOTH),
                    perturb_image=mode in (IMAGE_ONLY, BOTH))



def text_mask_prob(cfg: ObjectiveConfig, perturb_text: Tensor) -> Tensor | float:
    """Per-row random-masking probability of v1's text (B, 1): a clean text masked less when aware."""
    if not uses_aware_masking(cfg):
        return cfg.text_mask_prob
    return torch.where(perturb_text[:, None], cfg.text_mask_prob, cfg.text_mask_prob * cfg.clean_mask_scale)


def perturbed_images(pixels: Tensor, perturb_image: Tensor, cfg: ObjectiveConfig,
                     generator: torch.Generator) -> Tensor:
    """The image half of v1: rows with ``perturb_image`` (B,) get a training corruption of ``cfg.modality``
    at a severity 1–5, the others stay clean. pixels (B, C, H, W) in [0, 1] → same shape and dtype."""
    names, severities = sample_training_corruptions(pixels.shape[0], cfg.modality, generator)
    names = [name if flag else None for name, flag in zip(names, perturb_image.tolist())]
    with torch.autocast(pixels.device.type, enabled=False):  # corruptions run in the pixels' own dtype
        return corrupt_batch(pixels, names, severities, generator)


def perturbed_image_mask(pixels: Tensor, pert_pixels: Tensor, perturb_image: Tensor, cfg: ObjectiveConfig,
                         patch: int, generator: torch.Generator) -> PatchMask:
    """v1's patch mask: random (MAE); when aware, damaged patches first and a clean image masked less."""
    b = pixels.shape[0]
    clean_patches, pert_patches = patchify(pixels, patch), patchify(pert_pixels, patch)
    n = clean_patches.shape[1]
    noise = torch.rand(b, n, generator=generator, device=pixels.device)
    keep = torch.full((b,), keep_count(n, cfg.image_mask_ratio), device=pixels.device)
    if uses_aware_masking(cfg):
        noise = noise + cfg.aware_beta * damage_rank(clean_patches, pert_patches) * perturb_image[:, None]
        clean_keep = keep_count(n, cfg.image_mask_ratio * cfg.clean_mask_scale)
        keep = torch.where(perturb_image, keep, torch.full_like(keep, clean_keep))
    return mask_patches(noise, keep)
