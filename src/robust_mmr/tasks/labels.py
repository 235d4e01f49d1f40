"""Answer and class vocabularies, with the normalisation used to match answers.

Normalisation (printed by ``robust-mmr finetune``): lower-case, strip surrounding whitespace, collapse
inner whitespace, drop trailing ``.``. "Yes" and "yes " are one answer; "x-ray" and "xray" are not.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

NORMALISATION = "lower-case, strip, collapse whitespace, drop trailing '.'"


def normalize_answer(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".").strip()


@dataclass(frozen=True)
class LabelVocab:
    """Class names in a fixed order (most frequent first, then alphabetical)."""

    labels: tuple[str, ...]

    @classmethod
    def build(cls, answers: Iterable[str]) -> LabelVocab:
        counts = Counter(normalize_answer(a) for a in answers)
        return cls(tuple(sorted(counts, key=lambda a: (-counts[a], a))))

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, answer: str) -> int:
        """Class index of an answer, or -1 when it is outside the vocabulary (always counted wrong)."""
        return self._lookup.get(normalize_answer(answer), -1)

    @property
    def _lookup(self) -> dict[str, int]:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {label: i for i, label in enumerate(self.labels)}
            object.__setattr__(self, "_cache", cache)
        return cache
