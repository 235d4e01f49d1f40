"""Word drop and adjacent word swap (not token-aligned: length or order changes).

Negation words are never dropped or moved; a drop or swap that would form a new cue from its
neighbours ("free fluid of" -> "free of") is rejected. Drops keep every sentence non-empty, keep
at least one word of every negation's scope (so "There is no pleural effusion." never becomes
"There is no."), and move sentence-final punctuation onto the previous word so sentence
boundaries survive.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace

from robust_mmr.perturbations.text.negation import negation_spans, protected_indices, window_negations
from robust_mmr.perturbations.text.sampling import choose, sample_count
from robust_mmr.perturbations.text.words import Token, WordSeq, drop_token, ends_sentence, sentence_spans, split_affixes


def _sentence_index(seq: WordSeq) -> list[int]:
    """Sentence number of every token."""
    return [s for s, (start, end) in enumerate(sentence_spans(seq)) for _ in range(start, end)]


def negation_scopes(seq: WordSeq) -> list[set[int]]:
    """For each negation, the non-negation words of its sentence after it ("no [pleural effusion]"),
    or before it when nothing follows ("[Pneumothorax] absent.")."""
    words = seq.words
    protected = protected_indices(words)
    spans = sentence_spans(seq)
    sentence = _sentence_index(seq)
    scopes = []
    for start, end in negation_spans(words):
        first, last = spans[sentence[start]]
        after = {j for j in range(end, last) if j not in protected}
        scopes.append(after or {j for j in range(first, start) if j not in protected})
    return scopes


def drop_words(
    seq: WordSeq, indices: list[int], keep_punctuation: bool
) -> tuple[list[Token], list[list]]:
    """Drop the given tokens (negation-safe, never emptying a sentence); returns tokens and ``[index, word]`` dropped.

    With ``keep_punctuation`` a dropped sentence-final word hands its trailing punctuation to the
    previous word of its sentence ("no effusion is seen." -> "no effusion.").
    """
    tokens = list(seq.tokens)
    sentence = _sentence_index(seq)
    remaining = {s: sentence.count(s) for s in set(sentence)}
    scopes = [scope for scope in negation_scopes(seq) if scope]
    dropped = []
    for i in sorted(indices, reverse=True):
        if remaining[sentence[i]] == 1 or any(i in scope and len(scope) == 1 for scope in scopes):
            continue
        words = [t.word for t in tokens]
        before = window_negations(words, i, i + 1)
        trial = list(tokens)
        word = trial[i].word
        if keep_punctuation and ends_sentence(word) and i > 0 and sentence[i - 1] == sentence[i]:
            prefix, body, _ = split_affixes(trial[i - 1].word)
            trial[i - 1] = replace(trial[i - 1], word=prefix + body + split_affixes(word)[2])
        drop_token(trial, i)
        if window_negations([t.word for t in trial], i, i) != before:
            continue
        tokens = trial
        remaining[sentence[i]] -= 1
        scopes = [scope - {i} for scope in scopes]
        dropped.append([i, seq.tokens[i].word])
    return tokens, sorted(dropped)


def word_drop(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Drop a random ``fraction`` of the non-negation words."""
    protected = protected_indices(seq.words)
    candidates = [i for i in range(len(seq.tokens)) if i not in protected]
    tokens, dropped = drop_words(seq, choose(rng, candidates, params["fraction"]), keep_punctuation=True)
    return tokens, {"candidates": len(candidates), "dropped": dropped}


def word_swap(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Swap a random ``fraction`` of adjacent word pairs within a sentence (cores swap, punctuation stays)."""
    words = seq.words
    protected = protected_indices(words)
    sentence = _sentence_index(seq)
    affixes = [split_affixes(w) for w in words]
    candidates = [
        i for i in range(len(words) - 1)
        if sentence[i] == sentence[i + 1]
        and not {i, i + 1} & protected
        and affixes[i][1] and affixes[i + 1][1]
        and affixes[i][1].lower() != affixes[i + 1][1].lower()
    ]
    wanted = sample_count(rng, params["fraction"], len(candidates))
    tokens = list(seq.tokens)
    swapped: list[list[int]] = []
    taken: set[int] = set()
    for i in rng.sample(candidates, len(candidates)):
        if len(swapped) == wanted:
            break
        if {i, i + 1} & taken:
            continue
        (pa, ca, sa), (pb, cb, sb) = affixes[i], affixes[i + 1]
        trial = list(words)
        trial[i], trial[i + 1] = pa + cb + sa, pb + ca + sb
        if window_negations(trial, i, i + 2) != window_negations(words, i, i + 2):
            continue
        words = trial
        first, second = tokens[i], tokens[i + 1]
        tokens[i] = replace(first, word=words[i], origin=second.origin, moved=True)
        tokens[i + 1] = replace(second, word=words[i + 1], origin=first.origin, moved=True)
        taken |= {i, i + 1}
        swapped.append([i, i + 1])
    return tokens, {"candidates": len(candidates), "swapped": sorted(swapped)}
