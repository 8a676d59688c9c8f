"""The output step: the endpoint's ``output_schema``, then its output guardrails.

Unary (``check_completion``): the model's content, parsed as JSON, must satisfy the
output schema (502 ``output_schema_invalid`` with ``path`` and ``reason``; no
content at all fails too); then the output guardrails see the content as the
model wrote it: a block is 422 ``guardrail_blocked`` naming the guardrail (seed
001's status for a guardrail, whichever side), a redaction rewrites the content the
client gets. The schema checks the model's own text, before redaction: a redaction
is the gateway's, not the model's, answer.

Streams (``OutputStream``, a ``Proxy.forward`` shaper, built only when the endpoint
has an output schema or output guardrails): each chunk's first choice's
``delta.content`` goes through the guardrails' ``OutputRedactor``, which sends
what is sure at once, redacted, and holds back only the shortest tail that could
still become a match (a term or an e-mail address split across chunks is held
until it is whole or cannot be one; at most 320 characters); the held tail goes out
with the chunk that finishes the choice (``finish_reason``), or, if none comes, in
one more content chunk before ``[DONE]``. With a session, the content as the client
got it (redacted) is stored before ``[DONE]`` (``record``). A chunk whose content is unchanged is
sent as the router's bytes; one that changed is re-serialized. The output schema
is checked on the whole content when the choice finishes: by then the content was
sent, so a failure ends the stream with an error event (``data: {"error": {...,
"code": "output_schema_invalid"}}``) in place of the finishing chunk, and no
``[DONE]``; a guardrail block mid-stream ends it the same way (``guardrail_blocked``),
the text that fired it unsent. A stream's error before its first chunk is not
this step's: the router's error is answered with its status before any byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
from pydantic import BaseModel, ValidationError

from gateway_common.errors import ProviderError

from ..endpoints import EndpointView
from .call import Completion, UpstreamAnswer
from .guardrails import GuardrailMetrics, OutputRedactor

__all__ = ["OutputStream", "check_completion", "needs_checks"]

_DONE: Final = b"data: [DONE]\n\n"
_ROUTE_HEADERS: Final = ("x-switchyard-", "server-timing")


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message | None = None
    finish_reason: str | None = None


class _Completion(BaseModel):
    """The fields of an OpenAI chat completion the pipeline reads (the rest is dropped);
    lenient about nulls, since a provider's answer that reached here was a success."""

    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    generation_context: dict[str, Any] | None = None


def check_completion(
    answer: UpstreamAnswer, endpoint: EndpointView, metrics: GuardrailMetrics | None
) -> Completion:
    """The unary answer after the output checks (module docstring); 502 if unreadable."""
    try:
        completion = _Completion.model_validate_json(answer.body)
    except ValidationError:
        raise ProviderError("The provider's answer could not be read.") from None
    first = completion.choices[0] if completion.choices else _Choice()
    content = first.message.content if first.message is not None else None
    if endpoint.output_schema is not None:
        endpoint.output_schema.validate_content(content or "")
    if content is not None and endpoint.guardrails.applies_to("output"):
        content = endpoint.guardrails.check_output(content, metrics=metrics)
    usage = completion.usage or _Usage()
    return Completion(
        id=completion.id or "",
        model=completion.model or "",
        content=content,
        finish_reason=first.finish_reason,
        usage=usage.model_dump(),
        headers={k: v for k, v in answer.headers.items() if k.startswith(_ROUTE_HEADERS)},
        generation_context=completion.generation_context,
    )


def needs_checks(endpoint: EndpointView) -> bool:
    """Whether ``endpoint``'s answers have anything to check (else a stream needs no shaper)."""
    return endpoint.output_schema is not None or endpoint.guardrails.applies_to("output")


def _frame(chunk: bytes) -> bytes:
    return b"data: " + chunk + b"\n\n"


class OutputStream:
    """Checks and redacts one stream's content (module docstring: Streams)."""

    def __init__(
        self,
        endpoint: EndpointView,
        metrics: GuardrailMetrics | None,
        *,
        record: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._record = record
        self._sent: list[str] = []
        self._schema = endpoint.output_schema
        self._redactor: OutputRedactor | None = (
            endpoint.guardrails.output_stream(metrics=metrics)
            if endpoint.guardrails.applies_to("output")
            else None
        )
        self._content: list[str] = []
        self._finished = False
        self._last: Mapping[str, Any] | None = None  # the last content chunk, as a template

    async def body(self, body: bytes) -> bytes:
        return body

    async def frame(self, chunk: bytes) -> bytes:
        """The SSE frame(s) of one chunk; raises ``GatewayError`` to end the stream."""
        try:
            parsed = orjson.loads(chunk)
        except orjson.JSONDecodeError:
            return _frame(chunk)  # not a chunk this step can read: passed on as it came
        choices = parsed.get("choices") if isinstance(parsed, dict) else None
        if not choices or not isinstance(choices[0], dict) or choices[0].get("index", 0) != 0:
            return _frame(chunk)
        choice = choices[0]
        raw_delta = choice.get("delta")
        delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
        text = delta.get("content")
        finishing = choice.get("finish_reason") is not None and not self._finished
        if not isinstance(text, str) and not finishing:
            return _frame(chunk)
        sent = text if isinstance(text, str) else None
        if isinstance(text, str):
            self._content.append(text)
            self._last = parsed
            if self._redactor is not None:
                sent = self._redactor.feed(text)
        if finishing:
            self._finished = True
            if self._redactor is not None:
                rest = self._redactor.finish()
                sent = (sent or "") + rest if (sent is not None or rest) else None
            self._check_schema()
        if sent:
            self._sent.append(sent)
        if sent == text:
            return _frame(chunk)
        delta = {**delta, "content": sent}
        rewritten = {**parsed, "choices": [{**choice, "delta": delta}, *choices[1:]]}
        return _frame(orjson.dumps(rewritten))

    async def finish(self) -> bytes:
        """After the last chunk: the held tail (when no chunk finished the choice), the schema
        check, the session's record of what the client got, then ``[DONE]``."""
        tail = b""
        if not self._finished:
            self._finished = True
            rest = self._redactor.finish() if self._redactor is not None else ""
            self._check_schema()
            if rest and self._last is not None:
                self._sent.append(rest)
                choice = {"index": 0, "delta": {"content": rest}, "finish_reason": None}
                tail = _frame(orjson.dumps({**self._last, "choices": [choice]}))
        if self._record is not None:
            await self._record("".join(self._sent))
        return tail + _DONE

    def _check_schema(self) -> None:
        if self._schema is not None:
            self._schema.validate_content("".join(self._content))
