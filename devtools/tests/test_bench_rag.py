"""The retrieval benchmark's scorer and its labelled set (no database, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.bench.rag import LabelledSet, load_set, mrr, recall_at_k, set_problems


def test_recall_at_k_counts_the_answer_within_the_first_k() -> None:
    results = [["a", "b", "c"], ["x", "y", "a"], ["z"], []]
    answers = ["a", "a", "a", "a"]
    assert recall_at_k(results, answers, 1) == pytest.approx(0.25)
    assert recall_at_k(results, answers, 2) == pytest.approx(0.25)
    assert recall_at_k(results, answers, 3) == pytest.approx(0.5)
    assert recall_at_k([], [], 5) == 0.0


def test_mrr_uses_the_first_chunk_of_the_answer_and_zero_for_a_miss() -> None:
    results = [["a", "a"], ["b", "a", "a"], ["b", "c", "d", "a"], ["b"]]
    answers = ["a", "a", "a", "a"]
    assert mrr(results, answers) == pytest.approx((1 + 1 / 2 + 1 / 4 + 0) / 4)
    with pytest.raises(ValueError):
        mrr([["a"]], ["a", "b"])


def test_the_committed_set_is_well_formed() -> None:
    labelled = load_set()
    assert set_problems(labelled) == []
    assert len(labelled.documents) >= 30
    assert len(labelled.questions) >= 60
    assert all(doc in labelled.documents for _, doc in labelled.questions)
    answered = {doc for _, doc in labelled.questions}
    assert answered == set(labelled.documents), "every document answers some question"


def test_set_problems_names_an_unknown_answer_and_a_small_set(tmp_path: Path) -> None:
    (tmp_path / "documents.json").write_text(
        json.dumps([{"id": "one", "name": "One", "text": "first"}])
    )
    (tmp_path / "questions.json").write_text(json.dumps([{"q": "?", "doc": "missing"}]))
    problems = set_problems(load_set(tmp_path))
    assert any("unknown document 'missing'" in p for p in problems)
    assert any("fewer than 30" in p for p in problems)
    assert any("fewer than 60" in p for p in problems)
    assert (
        set_problems(LabelledSet({"a": ("A", "t")}, [("q", "a")]), min_docs=1, min_questions=1)
        == []
    )
