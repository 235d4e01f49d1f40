"""Terse report-style rewrite: telegraphic radiology shorthand, further at each severity.

Severity s applies the first s rules of :data:`TERSE_RULES`, cumulatively:
1 articles, 2 + auxiliaries ("There is", "are"), 3 + filler words ("again", "seen", "evidence of"),
4 + abbreviations (every lexicon expansion, "right upper lobe" -> "RUL"), 5 + symbols ("and" -> "&",
"increased" -> "↑") and no commas. It is a style, not noise: the output depends on the sample only
through the choice between equivalent abbreviations (bilat / b/l). Negation words are never dropped
and a filler right after a negation stays ("not seen" is not shortened to "not").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import replace

from robust_mmr.perturbations.text.lexical_ops import abbreviate
from robust_mmr.perturbations.text.negation import protected_indices
from robust_mmr.perturbations.text.word_ops import drop_words
from robust_mmr.perturbations.text.words import Token, WordSeq, capitalise_first, sentence_spans, split_affixes

ARTICLES = frozenset({"a", "an", "the"})
AUXILIARIES = frozenset({"is", "are", "was", "were", "been"})
EXPLETIVE = "there"  # dropped only before an auxiliary: "There is no effusion" -> "No effusion"
FILLERS = frozenset({"again", "otherwise", "also", "currently", "seen", "noted", "identified", "visualized", "demonstrated", "present"})
FILLER_PAIRS = frozenset({("evidence", "of")})
SYMBOLS = {"and": "&", "increased": "↑", "decreased": "↓", "approximately": "~", "approx": "~"}
DROPPED_PUNCTUATION = ","


def _lower_cores(seq: WordSeq) -> list[str]:
    return [split_affixes(w)[1].lower() for w in seq.words]


def _drop(seq: WordSeq, indices: list[int]) -> WordSeq:
    """Drop words (never negation words) and re-capitalise a sentence whose capitalised first word went."""
    protected = protected_indices(seq.words)
    tokens, dropped = drop_words(seq, [i for i in indices if i not in protected], keep_punctuation=True)
    gone = {i for i, _ in dropped}
    recapitalise = set()
    for start, end in sentence_spans(seq):
        survivors = [i for i in range(start, end) if i not in gone]
        if start in gone and survivors and split_affixes(seq.words[start])[1][:1].isupper():
            recapitalise.add(survivors[0])
    kept = [i for i in range(len(seq.tokens)) if i not in gone]
    return seq.with_tokens([replace(t, word=capitalise_first(t.word)) if i in recapitalise else t for i, t in zip(kept, tokens)])


def drop_articles(seq: WordSeq, rng: random.Random) -> WordSeq:
    return _drop(seq, [i for i, c in enumerate(_lower_cores(seq)) if c in ARTICLES])


def drop_auxiliaries(seq: WordSeq, rng: random.Random) -> WordSeq:
    cores = _lower_cores(seq)
    return _drop(seq, [
        i for i, c in enumerate(cores)
        if c in AUXILIARIES or (c == EXPLETIVE and i + 1 < len(cores) and cores[i + 1] in AUXILIARIES)
    ])


def drop_fillers(seq: WordSeq, rng: random.Random) -> WordSeq:
    cores = _lower_cores(seq)
    protected = protected_indices(seq.words)
    indices = []
    for i, c in enumerate(cores):
        if c in FILLERS and i - 1 not in protected:
            indices.append(i)
        elif i + 1 < len(cores) and (c, cores[i + 1]) in FILLER_PAIRS:
            indices += [i, i + 1]
    return _drop(seq, indices)


def abbreviate_all(seq: WordSeq, rng: random.Random) -> WordSeq:
    return seq.with_tokens(abbreviate(seq, rng, {"fraction": 1.0})[0])


def use_symbols(seq: WordSeq, rng: random.Random) -> WordSeq:
    tokens = []
    for token in seq.tokens:
        prefix, body, suffix = split_affixes(token.word)
        word = prefix + SYMBOLS.get(body.lower(), body) + suffix.replace(DROPPED_PUNCTUATION, "")
        tokens.append(replace(token, word=word) if word else token)
    return seq.with_tokens(tokens)


TERSE_RULES: dict[str, Callable[[WordSeq, random.Random], WordSeq]] = {
    "articles": drop_articles,
    "auxiliaries": drop_auxiliaries,
    "fillers": drop_fillers,
    "abbreviations": abbreviate_all,
    "symbols": use_symbols,
}


def terse(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Apply the named rules of ``params["rules"]`` in order."""
    words_before = len(seq.tokens)
    words_after_rule = {}
    for rule in params["rules"]:
        seq = TERSE_RULES[rule](seq, rng)
        words_after_rule[rule] = len(seq.tokens)
    return list(seq.tokens), {"words_before": words_before, "words_after_rule": words_after_rule}
