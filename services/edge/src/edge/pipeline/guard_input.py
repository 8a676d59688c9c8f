"""Input guardrails: the endpoint's guardrails on what the caller sent.

The texts checked, together (``max_length`` counts them all), in this order: each
message's content (a string, or the ``text`` of its ``text`` parts), then every
string inside ``variables`` (nested objects and arrays included; keys are not
checked). The system prompt and the prompt template are the endpoint's own and are
not checked. A block is 422 ``guardrail_blocked`` naming the guardrail
(``edge.pipeline.guardrails``); a redaction returns a new ``GatewayCall`` whose
texts are redacted, the rest of it unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from ..endpoints import EndpointView
from .call import GatewayCall
from .guardrails import GuardrailMetrics

__all__ = ["guard_input", "input_texts"]


def _message_texts(message: Mapping[str, Any]) -> Iterator[str]:
    content = message.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if (
                isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            ):
                yield part["text"]


def _value_texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _value_texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _value_texts(item)


def input_texts(call: GatewayCall) -> list[str]:
    """The texts input guardrails check, in the module docstring's order."""
    texts = [t for m in call.messages for t in _message_texts(m)]
    if call.variables is not None:
        texts.extend(_value_texts(call.variables))
    return texts


def _replace_message(message: Mapping[str, Any], texts: Iterator[str]) -> Mapping[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": next(texts)}
    if isinstance(content, list):
        parts = [
            {**part, "text": next(texts)}
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
        return {**message, "content": parts}
    return message


def _replace_value(value: Any, texts: Iterator[str]) -> Any:
    if isinstance(value, str):
        return next(texts)
    if isinstance(value, Mapping):
        return {k: _replace_value(v, texts) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_value(v, texts) for v in value]
    return value


def guard_input(
    call: GatewayCall, endpoint: EndpointView, metrics: GuardrailMetrics | None
) -> GatewayCall:
    """``call`` if it passes unchanged, a redacted copy, or ``GuardrailBlocked`` (422)."""
    if not endpoint.guardrails.applies_to("input"):
        return call
    texts = input_texts(call)
    redacted = endpoint.guardrails.check_input(texts, metrics=metrics)
    if redacted == texts:
        return call
    it = iter(redacted)
    messages = tuple(_replace_message(m, it) for m in call.messages)
    variables = None if call.variables is None else _replace_value(call.variables, it)
    return dataclasses.replace(call, messages=messages, variables=variables)
