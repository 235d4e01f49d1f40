"""Ranking for image–caption retrieval: pure functions of embeddings, no model and no data.

One similarity matrix (computed in row chunks) ranks every caption for every image (image→text,
``i2t``) and every image for every caption (text→image, ``t2i``). Images shared by several captions
are ranked once (COCO protocol): an image query's rank is that of its best-ranked caption. Ties count
against the query (rank = 1 + number of non-matches scoring at least the match), so a collapsed model
ranks last, not first. An optional scorer re-orders each query's top-k candidates (ITM re-ranking).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

DIRECTIONS = ("i2t", "t2i")
RECALL_AT = (1, 5, 10)
PairScorer = Callable[[Tensor, Tensor], Tensor]  # (query index (P,), candidate index (P,)) → match score (P,)


def group_images(image_keys: list[str]) -> tuple[list[int], Tensor]:
    """Per-caption image keys (T,) → (index of each unique image's first caption (I,), caption→image (T,))."""
    first: dict[str, int] = {}
    for j, key in enumerate(image_keys):
        first.setdefault(key, j)
    order = {key: i for i, key in enumerate(first)}
    return list(first.values()), torch.tensor([order[k] for k in image_keys], dtype=torch.long)


def direction_ranks(queries: Tensor, candidates: Tensor, query_group: Tensor, candidate_group: Tensor,
                    rerank: tuple[int, PairScorer] | None = None, chunk: int = 512) -> Tensor:
    """1-based rank of each query's best true match among all candidates.

    queries (Q, d), candidates (C, d) embeddings; a candidate matches a query when their groups (Q,),
    (C,) are equal (every query has at least one match). ``rerank=(k, scorer)`` re-orders each
    query's top-k candidates by ``scorer``; a query whose matches are all outside the top-k keeps its
    ITC rank (> k). Returns (Q,) long.
    """
    ranks = []
    for start in range(0, len(queries), chunk):
        sim = queries[start:start + chunk].float() @ candidates.float().T  # (c, C)
        match = query_group[start:start + chunk, None] == candidate_group[None, :]
        rank = _rank_of_best_match(sim, match)
        if rerank is not None:
            k, scorer = rerank
            top = sim.topk(min(k, sim.shape[1]), dim=1).indices  # (c, k)
            query = torch.arange(start, start + len(sim))[:, None].expand_as(top)
            scores = scorer(query.reshape(-1), top.reshape(-1)).view_as(top).float()
            top_match = match.gather(1, top)
            rank = torch.where(top_match.any(1), _rank_of_best_match(scores, top_match), rank)
        ranks.append(rank)
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def _rank_of_best_match(scores: Tensor, match: Tensor) -> Tensor:
    """scores, match (c, C) → (c,): 1 + number of non-matches scoring at least the best match."""
    best = scores.masked_fill(~match, float("-inf")).amax(1, keepdim=True)
    return 1 + ((scores >= best) & ~match).sum(1)


def retrieval_ranks(image_emb: Tensor, text_emb: Tensor, text_image: Tensor,
                    rerank: dict[str, tuple[int, PairScorer]] | None = None) -> dict[str, Tensor]:
    """Ranks in both directions: image_emb (I, d), text_emb (T, d), text_image (T,) image of each caption
    → {"i2t": (I,), "t2i": (T,)}. ``rerank`` maps a direction to (k, scorer) for ITM re-ranking."""
    rerank = rerank or {}
    images = torch.arange(len(image_emb))
    return {"i2t": direction_ranks(image_emb, text_emb, images, text_image, rerank.get("i2t")),
            "t2i": direction_ranks(text_emb, image_emb, text_image, images, rerank.get("t2i"))}


def rank_metrics(ranks: Tensor) -> dict[str, float]:
    """R@1/5/10, mean and median rank of 1-based ranks (N,)."""
    r = ranks.double().numpy()
    out = {f"r{k}": float((r <= k).mean()) for k in RECALL_AT}
    out.update(mean_rank=float(r.mean()), median_rank=float(np.median(r)))
    return out


def both_directions(ranks: dict[str, Tensor]) -> dict:
    """Per-direction metrics plus their means (``mean_rank``, ``r1``, ...)."""
    per = {d: rank_metrics(ranks[d]) for d in DIRECTIONS}
    return {**per, **{key: float(np.mean([per[d][key] for d in DIRECTIONS])) for key in per["i2t"]}}
