"""Negation cues as data, and where they occur in a list of words (lexicon-free part).

Meaning preservation rule of the text perturbations: a perturbation never adds or removes a
negation. A negation is one occurrence of a cue below (matched on the lower-cased word core, so
"No", "NO" and "no," all count). Abbreviations whose expansion holds a cue (NAD = "no abnormality
detected", neg = "negative") also count; that part lives in :mod:`.negation`, which knows the lexicon.

Decisions:
- "unremarkable" and "normal" are NOT cues: they state normality, they do not negate a finding,
  and the synonym lexicon maps them to each other.
- "free of" is a two-word cue ("free air" is not a negation); every other cue is one word.
- Any word ending in "n't" (isn't, doesn't, can't) is a cue; "cannot" is a cue.
- Uncertainty ("possible", "r/o" = rule out) is not negation.
"""

from __future__ import annotations

from functools import lru_cache

from robust_mmr.perturbations.text.words import core

SINGLE_WORD_CUES = frozenset(
    {
        "no", "not", "without", "w/o", "negative", "absent", "absence", "denies", "denied", "deny",
        "none", "neither", "nor", "never", "nothing", "cannot", "lack", "lacks", "lacking",
    }
)
TWO_WORD_CUES = frozenset({("free", "of")})
CONTRACTED_CUE_SUFFIX = "n't"
MAX_CUE_WORDS = 2


@lru_cache(maxsize=1 << 16)
def normalise(word: str) -> str:
    """Lower-cased core of a word with typographic apostrophes made plain: "Isn’t," -> "isn't"."""
    return core(word).replace("\u2019", "'").lower()


def is_direct_cue(word: str) -> bool:
    """True when the word alone is a negation cue (not counting abbreviations like NAD)."""
    norm = normalise(word)
    return norm in SINGLE_WORD_CUES or norm.endswith(CONTRACTED_CUE_SUFFIX)


def direct_cue_spans(words: list[str]) -> list[tuple[int, int]]:
    """``[start, end)`` word ranges of every direct cue, left to right, non-overlapping."""
    spans, i = [], 0
    while i < len(words):
        if i + 1 < len(words) and (normalise(words[i]), normalise(words[i + 1])) in TWO_WORD_CUES:
            spans.append((i, i + 2))
            i += 2
            continue
        if is_direct_cue(words[i]):
            spans.append((i, i + 1))
        i += 1
    return spans


def count_direct_cues(text: str) -> int:
    """Number of direct cues in a text (abbreviations like NAD not expanded)."""
    return len(direct_cue_spans(text.split()))
