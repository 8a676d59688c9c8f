"""Provider adapters: the protocol (``base``), the registry, one module per provider kind."""

from .base import (
    Completion,
    EmbeddingsAdapter,
    Operation,
    ProviderAdapter,
    ProviderRequest,
    StreamChunk,
    Usage,
)

__all__ = [
    "Completion",
    "EmbeddingsAdapter",
    "Operation",
    "ProviderAdapter",
    "ProviderRequest",
    "StreamChunk",
    "Usage",
]
