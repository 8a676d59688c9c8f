"""Splitting a document's text into overlapping chunks (the documented rule).

Rule: a chunk is a run of ``size`` consecutive words (maximal non-whitespace
runs), and each chunk starts ``size - overlap`` words after the previous one,
so neighbouring chunks share ``overlap`` words and a sentence cut at one
chunk's end is whole in the next. The last chunk may be shorter; a text of at
most ``size`` words is one chunk. Each chunk is the exact slice of the
original text from its first word's start to its last word's end, so line
breaks and Markdown inside a chunk are kept. Defaults (``RAG_CHUNK_WORDS``,
``RAG_CHUNK_OVERLAP``): 200 words with 40 of overlap.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_SIZE", "chunk_text"]

DEFAULT_SIZE = 200
DEFAULT_OVERLAP = 40

_WORD = re.compile(r"\S+")


def chunk_text(text: str, *, size: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP) -> list[str]:
    """The chunks of ``text`` by the module's rule; ``[]`` for a text without words.

    Raises ``ValueError`` unless ``size >= 1`` and ``0 <= overlap < size``.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("chunking needs size >= 1 and 0 <= overlap < size")
    spans = [match.span() for match in _WORD.finditer(text)]
    if not spans:
        return []
    step = size - overlap
    chunks: list[str] = []
    start = 0
    while True:
        end = min(start + size, len(spans))
        chunks.append(text[spans[start][0] : spans[end - 1][1]])
        if end == len(spans):
            return chunks
        start += step
