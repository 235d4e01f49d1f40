"""Sanity baselines printed beside every table: majority answer and a question-only prior."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from robust_mmr.tasks.data import TaskRecord, record_target, record_text
from robust_mmr.tasks.labels import normalize_answer


def majority_hits(train: list[TaskRecord], test: list[TaskRecord]) -> np.ndarray:
    """Per-item hits of always answering the most frequent training answer."""
    answer = Counter(normalize_answer(record_target(r)) for r in train).most_common(1)[0][0]
    return np.array([normalize_answer(record_target(r)) == answer for r in test])


def question_only_hits(train: list[TaskRecord], test: list[TaskRecord]) -> np.ndarray:
    """Per-item hits of a question-only model: the most frequent training answer to the same
    (normalised) question, else the majority answer. It never looks at the image."""
    by_question: dict[str, Counter] = defaultdict(Counter)
    for r in train:
        by_question[normalize_answer(record_text(r))][normalize_answer(record_target(r))] += 1
    fallback = Counter(normalize_answer(record_target(r)) for r in train).most_common(1)[0][0]
    predictions = [
        by_question[q].most_common(1)[0][0] if (q := normalize_answer(record_text(r))) in by_question else fallback
        for r in test
    ]
    return np.array([p == normalize_answer(record_target(r)) for p, r in zip(predictions, test)])
