"""Sanity baselines printed beside every table (DESIGN §4): what a test set gives away without reading the image.

Non-learned lookups: the majority answer; the *exact question* lookup (the most frequent training answer to the
same normalised question); the *same-image* lookup (the answer of the most similar training question asked
about the same image — on VQA-RAD's standard split, where every test image is a training image, this is what
memorising image identity gives). A cheap learned text model: a ridge classifier on the question's word uni- and
bigrams, its regularisation chosen on the validation split. The trained blind model (the project's own recipe
with the image removed in training and at test) is a fine-tuning run of its own (``finetune blind=true``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from difflib import SequenceMatcher

import numpy as np

from robust_mmr.tasks.data import TaskRecord, record_target, record_text
from robust_mmr.tasks.labels import LabelVocab, normalize_answer

RIDGE_PENALTIES = (0.1, 1.0, 10.0, 100.0)  # chosen on validation accuracy


def majority_hits(train: list[TaskRecord], test: list[TaskRecord]) -> np.ndarray:
    """Per-item hits of always answering the most frequent training answer."""
    answer = Counter(normalize_answer(record_target(r)) for r in train).most_common(1)[0][0]
    return np.array([normalize_answer(record_target(r)) == answer for r in test])


def question_only_hits(train: list[TaskRecord], test: list[TaskRecord]) -> np.ndarray:
    """Per-item hits of the exact-question lookup: the most frequent training answer to the same (normalised)
    question, else the majority answer. It never looks at the image."""
    by_question: dict[str, Counter] = defaultdict(Counter)
    for r in train:
        by_question[normalize_answer(record_text(r))][normalize_answer(record_target(r))] += 1
    fallback = Counter(normalize_answer(record_target(r)) for r in train).most_common(1)[0][0]
    predictions = [
        by_question[q].most_common(1)[0][0] if (q := normalize_answer(record_text(r))) in by_question else fallback
        for r in test
    ]
    return np.array([p == normalize_answer(record_target(r)) for p, r in zip(predictions, test)])


def same_image_lookup_hits(train: list[TaskRecord], test: list[TaskRecord]) -> np.ndarray:
    """Per-item hits of answering with the answer of the most similar training question (``difflib``
    ``SequenceMatcher`` ratio on lower-cased text) asked about the same image; for an image no training question
    is about, the most similar training question of all. Ties go to the earlier training record."""
    by_image: dict[str, list[TaskRecord]] = defaultdict(list)
    for r in train:
        by_image[r.image].append(r)
    hits = []
    for r in test:
        candidates = by_image.get(r.image) or train
        answer = record_target(_most_similar(record_text(r).lower(), candidates))
        hits.append(normalize_answer(answer) == normalize_answer(record_target(r)))
    return np.array(hits)


def _most_similar(question: str, candidates: list[TaskRecord]) -> TaskRecord:
    matcher = SequenceMatcher(b=question, autojunk=False)
    best, best_score = candidates[0], -1.0
    for c in candidates:
        matcher.set_seq1(record_text(c).lower())
        if matcher.real_quick_ratio() > best_score and matcher.quick_ratio() > best_score:
            score = matcher.ratio()
            if score > best_score:
                best, best_score = c, score
    return best


def words(text: str) -> list[str]:
    """Lower-cased word uni- and bigrams of a question."""
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return tokens + [f"{a}_{b}" for a, b in zip(tokens, tokens[1:])]


def text_classifier_hits(train: list[TaskRecord], val: list[TaskRecord],
                         test: list[TaskRecord]) -> tuple[np.ndarray, dict]:
    """Per-item hits of a ridge classifier (one-vs-rest least squares on one-hot answers) over the questions'
    word uni- and bigrams (binary, those seen twice in training), with the penalty of :data:`RIDGE_PENALTIES`
    that scores best on ``val``; and what was chosen. Answers outside the training vocabulary count wrong."""
    counts = Counter(w for r in train for w in set(words(record_text(r))))
    features = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= 2))}
    vocab = LabelVocab.build(record_target(r) for r in train)

    def design(records: list[TaskRecord]) -> np.ndarray:
        x = np.zeros((len(records), len(features) + 1))
        x[:, -1] = 1.0  # bias
        for row, r in enumerate(records):
            for w in words(record_text(r)):
                if w in features:
                    x[row, features[w]] = 1.0
        return x

    x_train = design(train)
    y_train = np.zeros((len(train), len(vocab)))
    y_train[np.arange(len(train)), [vocab.index(record_target(r)) for r in train]] = 1.0
    gram, target = x_train.T @ x_train, x_train.T @ y_train

    def predict(penalty: float, records: list[TaskRecord]) -> np.ndarray:
        weights = np.linalg.solve(gram + penalty * np.eye(len(gram)), target)
        return (design(records) @ weights).argmax(axis=1)

    def hits(penalty: float, records: list[TaskRecord]) -> np.ndarray:
        labels = np.array([vocab.index(record_target(r)) for r in records])
        return predict(penalty, records) == labels

    scores = {p: float(hits(p, val).mean()) if val else 0.0 for p in RIDGE_PENALTIES}
    best = max(RIDGE_PENALTIES, key=lambda p: (scores[p], -p))
    return hits(best, test), {"penalty": best, "val_accuracy": scores[best], "features": len(features)}


def lookup_baselines(train: list[TaskRecord], val: list[TaskRecord], test: list[TaskRecord]) -> dict[str, float]:
    """Accuracy of every baseline of this module on ``test`` (the trained blind model is a run of its own)."""
    if not test:
        return {}
    return {"majority": float(majority_hits(train, test).mean()),
            "question_only": float(question_only_hits(train, test).mean()),
            "same_image_lookup": float(same_image_lookup_hits(train, test).mean()),
            "text_classifier": float(text_classifier_hits(train, val, test)[0].mean())}
