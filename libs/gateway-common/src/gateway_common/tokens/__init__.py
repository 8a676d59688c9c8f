"""Counting prompt tokens, to refuse a prompt that cannot fit a model's context window.

The edge refuses such a request before any provider is called
(``edge.context_window``); the dev fake provider refuses it as a real
provider would. Both count with this package:

    ``_encodings``  the OpenAI encodings (o200k_base, cl100k_base) built from files
                    shipped here, loaded on first use; ``tokenizer_for`` names a
                    catalog model's encoding (None: unknown, estimate)
    ``_count``      what a chat completions / Responses body counts (OpenAI's
                    cookbook rules), the estimate for unknown tokenizers, the byte
                    bound that lets a short body skip counting, OpenAI's messages

``text_counter`` picks the count of one text for a tokenizer (or the
estimate); the counting functions take the body as parsed JSON.
"""

from __future__ import annotations

from ._count import (
    CONTEXT_LENGTH_EXCEEDED,
    ESTIMATE_CHARS_PER_TOKEN,
    IMAGE_TOKENS,
    RESPONSES_OVERFLOW,
    TOKENS_PER_MESSAGE,
    TextCount,
    chat_prompt_tokens,
    estimate,
    fits_for_sure,
    overflow_message,
    prompt_tokens,
    responses_prompt_tokens,
)
from ._encodings import TOKENIZERS, EncodingError, Encodings, TokenizerName, tokenizer_for

__all__ = [
    "CONTEXT_LENGTH_EXCEEDED",
    "ESTIMATE_CHARS_PER_TOKEN",
    "IMAGE_TOKENS",
    "RESPONSES_OVERFLOW",
    "TOKENIZERS",
    "TOKENS_PER_MESSAGE",
    "EncodingError",
    "Encodings",
    "TextCount",
    "TokenizerName",
    "chat_prompt_tokens",
    "estimate",
    "fits_for_sure",
    "overflow_message",
    "prompt_tokens",
    "responses_prompt_tokens",
    "text_counter",
    "tokenizer_for",
]


def text_counter(encodings: Encodings, tokenizer: TokenizerName | None) -> TextCount:
    """The count of one text with ``tokenizer`` (built now if need be: blocking), or
    ``estimate`` when it is None."""
    if tokenizer is None:
        return estimate
    encoding = encodings.get(tokenizer)

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    return count
