"""Lexicon replacements: abbreviate, expand, synonym substitution.

Phrases are matched left to right, longest first, on word cores (punctuation around the whole
phrase is kept; a phrase with punctuation inside, "right, upper lobe", does not match). A match may
contain a negation only whole and only when its replacement carries the same number of negations
(w/o <-> without, "no evidence of" <-> "no sign of"), so no replacement adds or removes one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from functools import lru_cache

from robust_mmr.perturbations.text.lexicon import (
    PhraseEntry,
    PhraseTable,
    abbreviation_to_expansion,
    expansion_to_abbreviation,
    synonym_table,
)
from robust_mmr.perturbations.text.negation import count_negations, negation_spans
from robust_mmr.perturbations.text.sampling import choose
from robust_mmr.perturbations.text.words import Token, WordSeq, split_affixes, starts_sentence

Match = tuple[int, int, PhraseEntry]


@lru_cache(maxsize=4096)
def _negations(phrase: str) -> int:
    return count_negations(phrase)


def find_matches(words: list[str], table: PhraseTable) -> list[Match]:
    """Non-overlapping ``(start, end, entry)`` matches of the table's phrases, longest first."""
    spans = negation_spans(words)
    affixes = [split_affixes(w) for w in words]
    matches, i = [], 0
    while i < len(words):
        for length in table.lengths_from(affixes[i][1]):
            end = i + length
            if end > len(words):
                continue
            inner_punctuation = any(affixes[j][2] for j in range(i, end - 1)) or any(affixes[j][0] for j in range(i + 1, end))
            if inner_punctuation:
                continue
            entry = table.lookup([affixes[j][1] for j in range(i, end)])
            if entry is not None and _negation_safe(entry, spans, i, end):
                matches.append((i, end, entry))
                i = end
                break
        else:
            i += 1
    return matches


def _negation_safe(entry: PhraseEntry, spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """No negation cut in half by the match, and every replacement keeps the negation count."""
    if any(s < end and e > start and not (start <= s and e <= end) for s, e in spans):
        return False
    return all(_negations(r) == _negations(entry.source) for r in entry.replacements)


def _adapt_case(source: str, replacement: str, sentence_start: bool, keep_upper: bool) -> str:
    """Capitalise at a sentence start; upper-case the replacement of an all-caps source if asked."""
    if keep_upper and len(source) > 1 and source.isupper():
        return replacement.upper()
    if sentence_start and source[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def replace_phrases(
    seq: WordSeq, rng: random.Random, table: PhraseTable, fraction: float, keep_upper: bool
) -> tuple[list[Token], dict]:
    """Replace a random ``fraction`` of the table's matches; returns the tokens and the record.

    A replacement with as many words as its source keeps word-for-word origins (so "compared with"
    -> "compared to" changes one aligned word); otherwise its words are new (origin None).
    """
    words = seq.words
    matches = find_matches(words, table)
    chosen = {m[0]: m for m in choose(rng, matches, fraction)}
    tokens: list[Token] = []
    substitutions = []
    i = 0
    while i < len(words):
        if i not in chosen:
            tokens.append(seq.tokens[i])
            i += 1
            continue
        start, end, entry = chosen[i]
        source = " ".join(split_affixes(w)[1] for w in words[start:end])
        replacement = _adapt_case(source, rng.choice(entry.replacements), starts_sentence(words, start), keep_upper)
        new_words = replacement.split()
        new_words[0] = split_affixes(words[start])[0] + new_words[0]
        new_words[-1] = new_words[-1] + split_affixes(words[end - 1])[2]
        aligned = len(new_words) == end - start
        for k, word in enumerate(new_words):
            if k == len(new_words) - 1:
                sep = seq.tokens[end - 1].sep
            else:
                sep = seq.tokens[start + k].sep if aligned else " "
            tokens.append(Token(word, sep, seq.tokens[start + k].origin if aligned else None))
        substitutions.append([start, source, replacement])
        i = end
    return tokens, {"matches": len(matches), "substitutions": substitutions}


def abbreviate(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Expansions -> abbreviations ("computed tomography" -> "CT", "without" -> "w/o")."""
    return replace_phrases(seq, rng, expansion_to_abbreviation(), params["fraction"], keep_upper=False)


def expand(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Abbreviations -> expansions ("CT" -> "computed tomography", "w/o" -> "without")."""
    return replace_phrases(seq, rng, abbreviation_to_expansion(), params["fraction"], keep_upper=False)


def synonym(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Words/phrases -> curated synonyms ("demonstrates" -> "shows", "edema" -> "oedema")."""
    return replace_phrases(seq, rng, synonym_table(), params["fraction"], keep_upper=True)
