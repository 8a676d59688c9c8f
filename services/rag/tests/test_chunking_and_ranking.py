"""Chunking rule and hybrid ranking (pure functions)."""

from __future__ import annotations

import pytest

from rag.chunking import chunk_text
from rag.embed import HashingEmbedder, pack, unpack
from rag.retrieve import VECTOR_WEIGHT, Candidate, rank


def test_chunks_overlap_by_the_documented_rule() -> None:
    text = " ".join(f"w{i}" for i in range(450))
    chunks = chunk_text(text, size=200, overlap=40)
    assert [len(c.split()) for c in chunks] == [200, 200, 130]
    assert chunks[0].split()[-40:] == chunks[1].split()[:40]
    assert chunks[2].split()[-1] == "w449"


def test_short_and_empty_texts() -> None:
    assert chunk_text("one two\n\nthree", size=200, overlap=40) == ["one two\n\nthree"]
    assert chunk_text("   \n ") == []
    with pytest.raises(ValueError):
        chunk_text("x", size=10, overlap=10)


def test_hashing_embedder_is_deterministic_and_unit_length() -> None:
    embedder = HashingEmbedder()
    a, b = embedder.vector("solar panels on roofs"), embedder.vector("solar panels on roofs")
    assert a == b
    assert abs(sum(v * v for v in a) - 1.0) < 1e-9
    assert unpack(pack(a)) == pytest.approx(a, abs=1e-6)


def _candidates(texts: dict[str, str]) -> list[Candidate]:
    embedder = HashingEmbedder()
    return [
        Candidate(f"c-{doc}", doc, doc, 0, body, embedder.vector(body))
        for doc, body in texts.items()
    ]


def test_the_relevant_document_ranks_first_and_scores_are_bounded() -> None:
    pool = _candidates(
        {
            "d-bees": "honey bees pollinate flowers and make honey in hives",
            "d-rust": "the rust borrow checker enforces ownership of memory",
            "d-tea": "green tea is brewed at eighty degrees for two minutes",
        }
    )
    query = HashingEmbedder().vector("how does the borrow checker handle ownership")
    ranked = rank(query, pool, {"c-d-rust": 3.2, "c-d-tea": 0.1}, top_k=2)
    assert [r.candidate.document_id for r in ranked] == ["d-rust", "d-tea"]
    assert all(0.0 <= r.score <= 1.0 for r in ranked)
    assert ranked[0].score >= 1 - VECTOR_WEIGHT  # the best lexical hit gets the full share
    vector_only = rank(query, pool, {}, top_k=3, hybrid=False)
    assert vector_only[0].candidate.document_id == "d-rust"


def test_min_score_drops_weak_chunks() -> None:
    pool = _candidates({"d-a": "alpha beta gamma", "d-b": "unrelated words entirely"})
    query = HashingEmbedder().vector("alpha beta gamma")
    ranked = rank(query, pool, {}, top_k=5, min_score=0.5, hybrid=False)
    assert [r.candidate.document_id for r in ranked] == ["d-a"]
