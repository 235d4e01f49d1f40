"""Text perturbations with 5 severities (DESIGN §3), deterministic per (seed, sample id, name, severity).

Use::

    from robust_mmr.perturbations.text import perturb_text
    out = perturb_text("No pleural effusion.", "keyboard_typo", 3, seed=0, sample_id="img_001")
    out.text, out.params, out.token_aligned, out.changed_words

Words are whitespace-separated; the original whitespace is kept. Parameters per severity are the
tables in :mod:`.registry` (``TEXT_PERTURBATION_SPECS[name].severity_params``).

=================  =============  ==========================================================
name               token_aligned  what changes
=================  =============  ==========================================================
keyboard_typo      True           QWERTY slips inside words (substitute/insert/delete/transpose)
ocr_confusion      True           look-alike glyphs inside words (rn<->m, cl<->d, l<->1, O<->0)
case_punct_noise   True           word case and trailing punctuation
abbreviate         False*         expansions -> abbreviations (lexicons/abbreviations.tsv)
expand             False*         abbreviations -> expansions (same lexicon)
synonym            False*         curated synonyms (lexicons/synonyms.tsv)
word_drop          False          words removed
word_swap          False          adjacent words within a sentence swapped
sentence_drop      False          whole sentences without negation removed
sentence_shuffle   False          sentences reordered
terse              False          telegraphic style (articles, auxiliaries, fillers dropped, ...)
=================  =============  ==========================================================

``token_aligned`` True: every output has the input's word count and output word i is input word i
(possibly edited), so masked-token targets align word for word. False*: not guaranteed, but a
given output may be aligned (every replacement had as many words as its source, e.g. "edema" ->
"oedema"); ``TextPerturbation.token_aligned`` says so per output. Alignment is per whitespace word;
a subword tokenizer may still split an edited word into a different number of pieces.

Meaning preservation: no perturbation adds or removes a negation (:func:`count_negations`, cue list
in :mod:`.cues`): negation words are never edited, dropped or moved, lexicon entries map negations
to negations only (w/o <-> without), edits that would create a cue are rejected, and sentence drop
only drops sentences without negation. Empty or whitespace-only text is returned unchanged.
"""

from __future__ import annotations

from robust_mmr.perturbations.text.negation import count_negations
from robust_mmr.perturbations.text.registry import (
    TEXT_PERTURBATION_SPECS,
    TextPerturbation,
    TextPerturbationSpec,
    perturb_text,
    text_perturbations,
)

__all__ = [
    "TEXT_PERTURBATION_SPECS",
    "TextPerturbation",
    "TextPerturbationSpec",
    "count_negations",
    "perturb_text",
    "text_perturbations",
]
