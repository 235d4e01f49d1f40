"""Sentence drop and sentence shuffle (not token-aligned).

Sentence drop removes only sentences without any negation, so every negation (and the finding it
negates) survives; it always keeps at least one sentence. Sentence shuffle reorders whole sentences,
which keeps every negation with its own sentence. The whitespace between sentences stays in place.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace

from robust_mmr.perturbations.text.negation import negation_spans
from robust_mmr.perturbations.text.sampling import choose, sample_count
from robust_mmr.perturbations.text.words import Token, WordSeq, drop_token, sentence_spans


def sentence_drop(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Drop a random ``fraction`` of the sentences that hold no negation."""
    spans = sentence_spans(seq)
    cue_starts = [start for start, _ in negation_spans(seq.words)]
    droppable = [s for s, (start, end) in enumerate(spans) if not any(start <= c < end for c in cue_starts)]
    dropped = choose(rng, droppable, params["fraction"])[: len(spans) - 1]
    tokens = list(seq.tokens)
    for s in sorted(dropped, reverse=True):
        start, end = spans[s]
        for i in range(end - 1, start - 1, -1):
            drop_token(tokens, i)
    return tokens, {"sentences": len(spans), "droppable": len(droppable), "dropped": dropped}


def sentence_shuffle(seq: WordSeq, rng: random.Random, params: Mapping) -> tuple[list[Token], dict]:
    """Move a random ``fraction`` of the sentences: the chosen ones trade places, each to a new slot.

    One sentence cannot move alone, so a draw of one becomes two (a swap).
    """
    spans = sentence_spans(seq)
    k = sample_count(rng, params["fraction"], len(spans))
    k = 2 if k == 1 and len(spans) > 1 else k
    slots = rng.sample(range(len(spans)), k) if k >= 2 else []
    order = list(range(len(spans)))
    for a, b in zip(slots, slots[1:] + slots[:1]):  # a random cycle: each slot gets the next one's sentence
        order[a] = b
    tokens: list[Token] = []
    for slot, source in enumerate(order):
        start, end = spans[source]
        body = [replace(t, moved=source != slot) for t in seq.tokens[start:end]]
        body[-1] = replace(body[-1], sep=seq.tokens[spans[slot][1] - 1].sep)
        tokens.extend(body)
    return tokens, {"sentences": len(spans), "order": order}
