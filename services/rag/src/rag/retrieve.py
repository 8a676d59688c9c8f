"""Hybrid ranking: vector cosine fused with full-text scores (pure functions).

For a query, every chunk of the collection's *ready* documents is a
candidate (vectors are stored as float32 blobs and compared here, in Python:
neither pgvector nor sqlite-vec is installed on this deployment's databases,
see docs/collections.md). The full-text engine (SQLite FTS5 ``bm25``,
PostgreSQL ``ts_rank_cd``) scores the chunks that share words with the query.

    vector   v = max(0, cosine(query, chunk))                       in [0, 1]
    lexical  l = fts(chunk) / max(fts over the query's hits)        in [0, 1], 0 if no hit
    score    hybrid on:  VECTOR_WEIGHT * v + (1 - VECTOR_WEIGHT) * l
             hybrid off: v

Ties are broken by document id, then chunk index, so the order is stable.
Chunks scoring below ``min_score`` are dropped before the best ``top_k`` are
taken.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["VECTOR_WEIGHT", "Candidate", "Ranked", "cosine", "rank"]

#: Weight of the vector score in the fused score (the rest is the lexical score).
VECTOR_WEIGHT = 0.6


@dataclass(frozen=True, slots=True)
class Candidate:
    """A chunk that may be returned, with its stored unit vector."""

    chunk_id: str
    document_id: str
    document_name: str
    chunk_index: int
    text: str
    vector: Sequence[float]


@dataclass(frozen=True, slots=True)
class Ranked:
    """A candidate and its fused score."""

    candidate: Candidate
    score: float


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Dot product of two unit vectors (0 when their lengths differ: different models)."""
    if len(a) != len(b):
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def rank(
    query_vector: Sequence[float],
    candidates: Iterable[Candidate],
    lexical: Mapping[str, float],
    *,
    top_k: int,
    min_score: float = 0.0,
    hybrid: bool = True,
) -> list[Ranked]:
    """The best ``top_k`` candidates by the module's fused score, best first."""
    best_lexical = max(lexical.values(), default=0.0)
    scored: list[tuple[float, str, int, Ranked]] = []
    for candidate in candidates:
        vector_score = max(0.0, min(1.0, cosine(query_vector, candidate.vector)))
        if hybrid:
            raw = lexical.get(candidate.chunk_id, 0.0)
            lexical_score = raw / best_lexical if best_lexical > 0 else 0.0
            score = VECTOR_WEIGHT * vector_score + (1 - VECTOR_WEIGHT) * lexical_score
        else:
            score = vector_score
        score = max(0.0, min(1.0, score))
        if score >= min_score:
            ranked = Ranked(candidate, score)
            scored.append((-score, candidate.document_id, candidate.chunk_index, ranked))
    return [item[3] for item in heapq.nsmallest(top_k, scored, key=lambda t: t[:3])]
