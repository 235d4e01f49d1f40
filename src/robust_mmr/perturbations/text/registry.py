"""The text perturbation registry: severity tables, specs, and :func:`perturb_text`."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from robust_mmr.errors import InputError
from robust_mmr.perturbations.seeding import SEVERITIES, check_name, check_severity, derive_seed
from robust_mmr.perturbations.text import char_ops, lexical_ops, sentence_ops, style, word_ops
from robust_mmr.perturbations.text.words import Token, WordSeq

Apply = Callable[[WordSeq, random.Random, Mapping[str, Any]], tuple[list[Token], dict]]


@dataclass(frozen=True)
class TextPerturbation:
    """A perturbed text.

    ``params``: the severity's table row plus what was sampled (positions, substitutions), JSON-ready.
    ``token_aligned``: this output has the input's word count and output word i is input word i
    (edited or not); ``changed_words``: indices of output words that differ from the input (for
    non-aligned outputs: inserted, edited or moved words; dropped words leave no index).
    """

    text: str
    params: dict
    token_aligned: bool
    changed_words: list[int]


@dataclass(frozen=True)
class TextPerturbationSpec:
    """One registered perturbation. ``token_aligned`` is True when every output is word-aligned."""

    name: str
    token_aligned: bool
    description: str
    severity_params: Mapping[int, Mapping[str, Any]]
    apply: Apply


def _spec(name: str, token_aligned: bool, apply: Apply, description: str, **columns: tuple) -> TextPerturbationSpec:
    """A spec from a parameter table: each keyword is a column with one value per severity 1..5."""
    for column, values in columns.items():
        if len(values) != len(SEVERITIES):
            raise ValueError(f"{name}: column {column} needs {len(SEVERITIES)} values")
    rows = {s: {column: values[s - 1] for column, values in columns.items()} for s in SEVERITIES}
    return TextPerturbationSpec(name, token_aligned, description, rows, apply)


# Fractions are of the eligible units (matches, non-negation words, adjacent pairs, sentences),
# with stochastic rounding (see sampling.sample_count). Typo rates follow the usual range of NLP
# robustness suites (a few to ~40% of words); the tables are ours.
_TERSE_RULE_ORDER = list(style.TERSE_RULES)
_SPECS = [
    _spec("abbreviate", False, lexical_ops.abbreviate,
          "clinical expansions -> abbreviations from the lexicon (computed tomography -> CT, without -> w/o)",
          fraction=(0.2, 0.4, 0.6, 0.8, 1.0)),
    _spec("expand", False, lexical_ops.expand,
          "clinical abbreviations -> expansions from the lexicon (CXR -> chest radiograph, s/p -> status post)",
          fraction=(0.2, 0.4, 0.6, 0.8, 1.0)),
    _spec("synonym", False, lexical_ops.synonym,
          "curated meaning-preserving synonyms (demonstrates -> shows, edema -> oedema)",
          fraction=(0.2, 0.4, 0.6, 0.8, 1.0)),
    _spec("keyboard_typo", True, char_ops.keyboard_typo,
          "QWERTY-neighbour substitutions, insertions, deletions and transpositions inside words",
          word_fraction=(0.05, 0.10, 0.20, 0.30, 0.40), edits_per_word=(1, 1, 1, 2, 2)),
    _spec("ocr_confusion", True, char_ops.ocr_confusion,
          "look-alike glyph confusions of scanned text (rn<->m, cl<->d, l<->1, O<->0)",
          word_fraction=(0.05, 0.10, 0.20, 0.30, 0.40), edits_per_word=(1, 1, 1, 2, 2)),
    _spec("case_punct_noise", True, char_ops.case_punct_noise,
          "random word case changes and dropped/added/swapped trailing punctuation",
          word_fraction=(0.05, 0.10, 0.20, 0.30, 0.40)),
    _spec("word_drop", False, word_ops.word_drop,
          "drop random non-negation words",
          fraction=(0.05, 0.10, 0.15, 0.20, 0.30)),
    _spec("word_swap", False, word_ops.word_swap,
          "swap random adjacent word pairs within a sentence",
          fraction=(0.05, 0.10, 0.20, 0.30, 0.40)),
    _spec("sentence_drop", False, sentence_ops.sentence_drop,
          "drop random sentences that hold no negation (at least one sentence is kept)",
          fraction=(0.10, 0.20, 0.30, 0.45, 0.60)),
    _spec("sentence_shuffle", False, sentence_ops.sentence_shuffle,
          "move random sentences to other positions",
          fraction=(0.15, 0.3, 0.5, 0.75, 1.0)),
    _spec("terse", False, style.terse,
          "telegraphic report style: drop articles, auxiliaries, fillers; abbreviate; symbols",
          rules=tuple(tuple(_TERSE_RULE_ORDER[:s]) for s in SEVERITIES)),
]
TEXT_PERTURBATION_SPECS: dict[str, TextPerturbationSpec] = {spec.name: spec for spec in _SPECS}


def text_perturbations() -> list[str]:
    """Names of the registered text perturbations."""
    return list(TEXT_PERTURBATION_SPECS)


def perturb_text(text: str, name: str, severity: int, *, seed: int, sample_id: str) -> TextPerturbation:
    """Perturb ``text`` with perturbation ``name`` at ``severity`` (1-5), deterministically.

    The random stream is seeded by ``derive_seed(seed, sample_id, name, severity)``, so the result
    is a pure function of its arguments. Empty or whitespace-only text is returned unchanged.
    Raises :class:`InputError` for an unknown name, a bad severity or a non-string text.
    """
    check_name(name, text_perturbations(), "text perturbation")
    check_severity(severity)
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    spec = TEXT_PERTURBATION_SPECS[name]
    row = dict(spec.severity_params[severity])
    seq = WordSeq.parse(text)
    if not seq.tokens:
        return TextPerturbation(text, {**row, "skipped": "empty text"}, True, [])
    rng = random.Random(derive_seed(seed, sample_id, name, severity))
    tokens, record = spec.apply(seq, rng, row)
    aligned = len(tokens) == len(seq.tokens) and all(t.origin == i and not t.moved for i, t in enumerate(tokens))
    assert aligned or not spec.token_aligned, f"{name} must keep word alignment"
    changed = [i for i, t in enumerate(tokens) if t.origin is None or t.moved or t.word != seq.tokens[t.origin].word]
    return TextPerturbation(str(seq.with_tokens(tokens)), {**row, **record}, aligned, changed)
