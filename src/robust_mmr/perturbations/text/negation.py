"""Counting negations, abbreviations included, and the guards every perturbation uses.

A negation is a direct cue (:mod:`.cues`) or a *negating abbreviation*: a lexicon abbreviation that
is not itself a cue but expands to a phrase holding cues (NAD -> "no abnormality detected" counts
once, like its expansion). Perturbations never edit, drop or move a word inside a negation span and
check every local edit with :func:`window_negations`, so the count is invariant.
"""

from __future__ import annotations

from functools import cache

from robust_mmr.perturbations.text.cues import MAX_CUE_WORDS, count_direct_cues, direct_cue_spans, is_direct_cue, normalise
from robust_mmr.perturbations.text.lexicon import Abbreviation, default_abbreviations
from robust_mmr.perturbations.text.words import core


@cache
def _negating_abbreviations() -> dict[str, tuple[Abbreviation, int]]:
    """Lexicon abbreviations that negate, by lower-cased form, with how many cues each stands for."""
    return {
        a.short.lower(): (a, count_direct_cues(a.expansion))
        for a in default_abbreviations()
        if count_direct_cues(a.expansion) and not is_direct_cue(a.short)
    }


def negation_spans(words: list[str]) -> list[tuple[int, int]]:
    """``[start, end)`` word ranges of every negation, in order (a span repeats if it stands for several)."""
    negating = _negating_abbreviations()
    spans = direct_cue_spans(words)
    covered = {i for start, end in spans for i in range(start, end)}
    for i, word in enumerate(words):
        found = negating.get(normalise(word)) if i not in covered else None
        if found is not None and (not found[0].exact_case or core(word) == found[0].short):
            spans.extend([(i, i + 1)] * found[1])
    return sorted(spans)


def count_negations(text: str) -> int:
    """Number of negations in a text: cues ("no", "not", "without", "w/o", "n't", "free of", ...)
    plus negating abbreviations ("NAD"). Case-insensitive; punctuation around words is ignored."""
    return len(negation_spans(text.split()))


def protected_indices(words: list[str]) -> set[int]:
    """Indices of words inside a negation span: no perturbation may edit, drop or move them."""
    return {i for start, end in negation_spans(words) for i in range(start, end)}


def window_negations(words: list[str], start: int, end: int) -> int:
    """Negations in ``words[start:end]`` widened by the longest cue, to check a local edit there.

    Compare the value before and after an edit of ``words[start:end]`` (use the edited range's own
    ``end`` after the edit): any cue created or destroyed by the edit lies inside this window.
    """
    reach = MAX_CUE_WORDS - 1
    return len(negation_spans(words[max(0, start - reach) : end + reach]))
