"""In-place word edits that keep the word count: keyboard typos, OCR confusions, case/punctuation noise.

All three are token-aligned: output word i is input word i, possibly edited. Negation words are
never edited, and an edit that would create a negation ("on" -> "no", "fee of" -> "free of") is
rejected, so the negation count never changes.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import lru_cache

from robust_mmr.perturbations.text.negation import protected_indices, window_negations
from robust_mmr.perturbations.text.sampling import choose
from robust_mmr.perturbations.text.words import Token, WordSeq, split_affixes

# QWERTY letter rows and their horizontal stagger (in key widths) on a standard keyboard.
KEYBOARD_ROWS = (("qwertyuiop", 0.0), ("asdfghjkl", 0.25), ("zxcvbnm", 0.75))
TYPO_KINDS = ("substitute", "insert", "delete", "transpose")
MIN_TYPO_LETTERS = 3

# Common OCR character confusions (glyphs that look alike in scanned print): (seen, read as).
OCR_CONFUSIONS = (
    ("rn", "m"), ("m", "rn"), ("cl", "d"), ("d", "cl"), ("vv", "w"), ("w", "vv"), ("li", "h"),
    ("h", "li"), ("ri", "n"), ("l", "1"), ("1", "l"), ("I", "l"), ("l", "I"), ("O", "0"),
    ("0", "O"), ("o", "0"), ("S", "5"), ("5", "S"), ("B", "8"), ("8", "B"), ("Z", "2"),
    ("2", "Z"), ("e", "c"), ("c", "e"), ("g", "9"), ("9", "g"),
)

CASE_PUNCT_KINDS = ("upper", "lower", "capitalise", "drop_punct", "add_punct", "swap_punct")
NOISE_PUNCTUATION = ",.;:"


def _keyboard_neighbours() -> dict[str, str]:
    """Letters adjacent to each letter: same row one key apart, or the row above/below within a key."""
    position = {ch: (row, col + shift) for row, (keys, shift) in enumerate(KEYBOARD_ROWS) for col, ch in enumerate(keys)}
    return {
        a: "".join(
            b for b, (rb, xb) in position.items()
            if b != a and ((ra == rb and abs(xa - xb) == 1) or (abs(ra - rb) == 1 and abs(xa - xb) < 1))
        )
        for a, (ra, xa) in position.items()
    }


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()

WordEdit = Callable[[str, random.Random], str]


def edit_in_place(
    seq: WordSeq, rng: random.Random, fraction: float, eligible: Callable[[str], bool], edit: WordEdit
) -> tuple[list[Token], dict]:
    """Edit a random ``fraction`` of the eligible, non-negation words with ``edit``."""
    words = seq.words
    protected = protected_indices(words)
    candidates = [i for i, w in enumerate(words) if i not in protected and eligible(w)]
    tokens = list(seq.tokens)
    edits = []
    for i in choose(rng, candidates, fraction):
        old = words[i]
        before = window_negations(words, i, i + 1)
        words[i] = edit(old, rng)
        if words[i] == old or window_negations(words, i, i + 1) != before:
            words[i] = old
            continue
        tokens[i] = replace(tokens[i], word=words[i])
        edits.append([i, old, words[i]])
    return tokens, {"candidates": len(candidates), "edits": edits}


def _with_case(ch: str, like: str) -> str:
    return ch.upper() if like.isupper() else ch


def _typo_once(body: str, rng: random.Random) -> str:
    """One keyboard slip in ``body``; positions are restricted to ASCII letters."""
    letters = [j for j, c in enumerate(body) if c in string.ascii_letters]
    j = rng.choice(letters)
    kind = rng.choice(TYPO_KINDS)
    pairs = [k for k in letters if k + 1 < len(body) and body[k + 1] in string.ascii_letters and body[k] != body[k + 1]]
    if kind == "transpose" and pairs:
        k = rng.choice(pairs)
        return body[:k] + body[k + 1] + body[k] + body[k + 2 :]
    if kind == "delete" and len(letters) > MIN_TYPO_LETTERS - 1:
        return body[:j] + body[j + 1 :]
    neighbour = _with_case(rng.choice(KEYBOARD_NEIGHBOURS[body[j].lower()]), body[j])
    if kind == "insert":
        return body[: j + 1] + neighbour + body[j + 1 :]
    return body[:j] + neighbour + body[j + 1 :]


def _ocr_once(body: str, rng: random.Random) -> str:
    """One OCR confusion at a random place where one applies (``body`` unchanged if none does)."""
    sites = [(j, seen, read) for seen, read in OCR_CONFUSIONS for j in _find_all(body, seen)]
    if not sites:
        return body
    j, seen, read = rng.choice(sites)
    return body[:j] + read + body[j + len(seen) :]


def _find_all(text: str, part: str) -> list[int]:
    return [j for j in range(len(text) - len(part) + 1) if text.startswith(part, j)]


@lru_cache(maxsize=1 << 16)
def _has_typo_letters(word: str) -> bool:
    return sum(c in string.ascii_letters for c in split_affixes(word)[1]) >= MIN_TYPO_LETTERS


@lru_cache(maxsize=1 << 16)
def _has_ocr_site(word: str) -> bool:
    return any(seen in split_affixes(word)[1] for seen, _ in OCR_CONFUSIONS)


def _repeat_on_core(edit_core: Callable[[str, random.Random], str], times: int) -> WordEdit:
    def edit(word: str, rng: random.Random) -> str:
        prefix, body, suffix = split_affixes(word)
        for _ in range(times):
            body = edit_core(body, rng)
        return prefix + body + suffix

    return edit


def keyboard_typo(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """QWERTY slips (neighbour substitution, insertion, deletion, transposition) in words of 3+ letters."""
    edit = _repeat_on_core(_typo_once, params["edits_per_word"])
    return edit_in_place(seq, rng, params["word_fraction"], _has_typo_letters, edit)


def ocr_confusion(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Look-alike glyph swaps (rn<->m, cl<->d, l<->1, O<->0, ...) in words where one applies."""
    edit = _repeat_on_core(_ocr_once, params["edits_per_word"])
    return edit_in_place(seq, rng, params["word_fraction"], _has_ocr_site, edit)


def _case_punct_once(word: str, rng: random.Random) -> str:
    """One case change of the core or one change of the trailing punctuation (never an empty word)."""
    prefix, body, suffix = split_affixes(word)
    options = {
        "upper": prefix + body.upper() + suffix,
        "lower": prefix + body.lower() + suffix,
        "capitalise": prefix + body[:1].upper() + body[1:].lower() + suffix,
        "add_punct": word + rng.choice(NOISE_PUNCTUATION),
    }
    if suffix and prefix + body:
        options["drop_punct"] = prefix + body
        options["swap_punct"] = prefix + body + suffix[:-1] + rng.choice([p for p in NOISE_PUNCTUATION if p != suffix[-1]])
    changed = [kind for kind in CASE_PUNCT_KINDS if options.get(kind, word) != word]
    return options[rng.choice(changed)]


def _any_word(word: str) -> bool:
    return True


def case_punct_noise(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Random upper/lower/capitalised words and dropped, added or swapped trailing punctuation."""
    return edit_in_place(seq, rng, params["word_fraction"], _any_word, _case_punct_once)
