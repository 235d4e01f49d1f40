"""Whitespace words of a text, with the whitespace between them and each word's origin.

A text is parsed into :class:`Token` s (one per whitespace-separated word) so that every
perturbation edits words while the original whitespace (newlines, double spaces) survives, and so
that each output word remembers which input word it came from (``origin``), which gives the
alignment and the changed-word indices of a result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

# Punctuation that may lead or trail a word without being part of it: "(CT)," -> "(", "CT", "),".
# "/", "-", "'" inside a word stay in it (w/o, C-spine, isn't).
LEADING_PUNCTUATION = "\"'([{<"
TRAILING_PUNCTUATION = ".,;:!?\"')]}>"
SENTENCE_END = ".!?"

_WHITESPACE = re.compile(r"(\s+)")


@dataclass(frozen=True)
class Token:
    """One output word: its text, the whitespace after it, and the input word it came from.

    ``origin`` is the index of the input word it copies or edits in place (None for inserted
    words); ``moved`` marks words that were reordered, so they count as changed.
    """

    word: str
    sep: str
    origin: int | None
    moved: bool = False


@dataclass(frozen=True)
class WordSeq:
    """A text as leading whitespace plus tokens; ``str(seq)`` rebuilds it exactly."""

    lead: str
    tokens: tuple[Token, ...]

    @classmethod
    def parse(cls, text: str) -> WordSeq:
        parts = _WHITESPACE.split(text)
        lead = ""
        if parts and parts[0] == "":
            parts = parts[1:]
            if parts:
                lead, parts = parts[0], parts[1:]
        tokens = []
        for i in range(0, len(parts), 2):
            sep = parts[i + 1] if i + 1 < len(parts) else ""
            tokens.append(Token(parts[i], sep, len(tokens)))
        return cls(lead, tuple(t for t in tokens if t.word))

    @property
    def words(self) -> list[str]:
        return [t.word for t in self.tokens]

    def with_tokens(self, tokens: list[Token] | tuple[Token, ...]) -> WordSeq:
        return WordSeq(self.lead, tuple(tokens))

    def __str__(self) -> str:
        return self.lead + "".join(t.word + t.sep for t in self.tokens)


@lru_cache(maxsize=1 << 16)  # called for every word by every perturbation; words repeat a lot
def split_affixes(word: str) -> tuple[str, str, str]:
    """``(prefix, core, suffix)`` of a word: "(CT)," -> ("(", "CT", "),"); "w/o" -> ("", "w/o", "")."""
    start = 0
    while start < len(word) and word[start] in LEADING_PUNCTUATION:
        start += 1
    end = len(word)
    while end > start and word[end - 1] in TRAILING_PUNCTUATION:
        end -= 1
    return word[:start], word[start:end], word[end:]


def core(word: str) -> str:
    """The word without leading/trailing punctuation."""
    return split_affixes(word)[1]


def ends_sentence(word: str) -> bool:
    """True when the word's trailing punctuation contains ., ! or ?."""
    return any(ch in SENTENCE_END for ch in split_affixes(word)[2])


def starts_sentence(words: list[str], i: int) -> bool:
    """True for the first word of the text or a word after ., !, ? or a colon ("IMPRESSION: No ...")."""
    return i == 0 or ends_sentence(words[i - 1]) or split_affixes(words[i - 1])[2].endswith(":")


def sentence_spans(seq: WordSeq) -> list[tuple[int, int]]:
    """Sentences as ``[start, end)`` token ranges covering every token.

    A sentence ends after a word ending in ., ! or ? that is followed by a word starting with a
    capital letter (so "approx. 5 cm" is not split), after a line break, or at the end of the text.
    """
    spans, start, tokens = [], 0, seq.tokens
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        next_capital = not last and core(tokens[i + 1].word)[:1].isupper()
        if last or "\n" in token.sep or (ends_sentence(token.word) and next_capital):
            spans.append((start, i + 1))
            start = i + 1
    return spans


def capitalise_first(word: str) -> str:
    """Upper-case the first letter of the word's core: "w/o" -> "W/o", "(lungs" -> "(Lungs"."""
    prefix, body, suffix = split_affixes(word)
    return prefix + body[:1].upper() + body[1:] + suffix


def drop_token(tokens: list[Token], i: int) -> None:
    """Remove token ``i`` in place; the whitespace after it replaces the whitespace before it."""
    if i > 0:
        tokens[i - 1] = replace(tokens[i - 1], sep=tokens[i].sep)
    del tokens[i]
