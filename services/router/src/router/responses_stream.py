"""Streamed Responses: chat completion chunks in, Responses API events out.

``translate_stream`` wraps the service's chat stream (``RouteInfo``, chunk
bytes, ``Usage`` or an error) and yields the same kinds, with the chunks
replaced by Responses events, each one JSON object whose first key is
``type`` (the edge reads the type from the prefix to frame ``event:`` lines)
followed by ``sequence_number``::

    RouteInfo      -> RouteInfo, response.created, response.in_progress
    chat chunk     -> response.output_item.added, response.content_part.added,
                      response.output_text.delta / response.refusal.delta,
                      response.function_call_arguments.delta   (items open as content arrives;
                                                                opening one closes the last)
    GenerationContext -> nothing yet: kept for response.completed
    Usage (final)  -> the open item's *.done events, response.completed (the whole
                      Response with usage, and generation_context when asked), then the Usage
    error          -> passed through (the edge writes it in-band and ends the stream)

The final ``Usage`` only comes after the usage event is acknowledged, so a
client that saw ``response.completed`` made a call billing will see.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway_common.errors import GatewayError
from gateway_common.openai import OutputRefusal, OutputText

from .failover import RouteInfo
from .generation import GenerationContext
from .providers.base import Usage
from .responses import IdFactory, new_id, response_object

__all__ = ["ResponseEvents", "translate_stream"]

_ChatEvent = RouteInfo | bytes | GenerationContext | Usage | GatewayError


@dataclass
class _Item:
    """One output item being streamed: a message (its parts) or a function call."""

    output_index: int
    id: str
    kind: str  # "message" | "function_call"
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    parts: list[list[str]] = field(default_factory=list)  # [[part type, text so far], ...]

    def body(self, status: str) -> dict[str, Any]:
        if self.kind == "function_call":
            return {
                "type": "function_call",
                "id": self.id,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": self.arguments,
                "status": status,
            }
        return {
            "type": "message",
            "id": self.id,
            "status": status,
            "role": "assistant",
            "content": [_part(kind, text) for kind, text in self.parts],
        }


def _part(kind: str, text: str) -> dict[str, Any]:
    """The content part as the unary Response has it (same models, so the fields agree)."""
    if kind == "refusal":
        return OutputRefusal(refusal=text).model_dump(mode="json")
    return OutputText(text=text).model_dump(mode="json")


class ResponseEvents:
    """Turns one chat stream into Responses events; one instance per call, not thread safe."""

    def __init__(
        self,
        request: Mapping[str, Any],
        *,
        response_id: str | None = None,
        created_at: int | None = None,
        ids: IdFactory = new_id,
    ) -> None:
        self._request = request
        self._id = response_id or ids("resp")
        self._created_at = int(time.time()) if created_at is None else created_at
        self._ids = ids
        self._seq = 0
        self._model = str(request.get("model", ""))
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._tool_items: dict[int, _Item] = {}
        self._finish_reason: str | None = None
        self._generation_context: bytes | None = None

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        snapshot = self._response("in_progress", None)
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events for one ``chat.completion.chunk`` (only choice 0 is read)."""
        obj = orjson.loads(chunk)
        if isinstance(obj.get("model"), str) and obj["model"]:
            self._model = obj["model"]
        out: list[bytes] = []
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                out += self._text("output_text", text)
            if refusal := delta.get("refusal"):
                out += self._text("refusal", refusal)
            for call in delta.get("tool_calls") or ():
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return out

    def attach(self, context: GenerationContext) -> None:
        """Put ``context``'s ``generation_context`` on the Response that ``finish`` sends."""
        self._generation_context = context.value

    def finish(self, usage: Usage | None) -> list[bytes]:
        """Close the open item, then ``response.completed`` with the whole Response."""
        out = self._close()
        response = self._response("completed", usage)
        if self._generation_context is not None:
            response["generation_context"] = orjson.Fragment(self._generation_context)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, response=response))
        return out

    # -- items --------------------------------------------------------------------------------

    def _text(self, kind: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        item = self._open
        if item is None or item.kind != "message":
            out += self._close()
            item = self._add(_Item(len(self._items), self._ids("msg"), "message"))
            out.append(self._added(item))
        if not item.parts or item.parts[-1][0] != kind:
            out += self._close_part(item)
            item.parts.append([kind, ""])
            out.append(
                self._event("response.content_part.added", **self._at(item), part=_part(kind, ""))
            )
        item.parts[-1][1] += text
        delta = "response.output_text.delta" if kind == "output_text" else "response.refusal.delta"
        extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        out.append(self._event(delta, **self._at(item), delta=text, **extra))
        return out

    def _tool_call(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self._tool_items.get(index)
        if item is None:
            out += self._close()
            item = self._add(
                _Item(
                    len(self._items),
                    self._ids("fc"),
                    "function_call",
                    call_id=call.get("id") or self._ids("call"),
                    name=function.get("name") or "",
                )
            )
            self._tool_items[index] = item
            out.append(self._added(item))
        if arguments := function.get("arguments"):
            item.arguments += arguments
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=item.output_index,
                    delta=arguments,
                )
            )
        return out

    def _add(self, item: _Item) -> _Item:
        self._items.append(item)
        self._open = item
        return item

    def _added(self, item: _Item) -> bytes:
        return self._event(
            "response.output_item.added",
            output_index=item.output_index,
            item=item.body("in_progress"),
        )

    def _close(self) -> list[bytes]:
        item, self._open = self._open, None
        if item is None:
            return []
        if item.kind == "function_call":
            out = [
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=item.output_index,
                    name=item.name,
                    arguments=item.arguments,
                )
            ]
        else:
            out = self._close_part(item)
        out.append(
            self._event(
                "response.output_item.done",
                output_index=item.output_index,
                item=item.body("completed"),
            )
        )
        return out

    def _close_part(self, item: _Item) -> list[bytes]:
        if not item.parts:
            return []
        kind, text = item.parts[-1]
        if kind == "output_text":
            done = self._event(
                "response.output_text.done", **self._at(item), text=text, logprobs=[]
            )
        else:
            done = self._event("response.refusal.done", **self._at(item), refusal=text)
        return [
            done,
            self._event("response.content_part.done", **self._at(item), part=_part(kind, text)),
        ]

    @staticmethod
    def _at(item: _Item) -> dict[str, Any]:
        return {
            "item_id": item.id,
            "output_index": item.output_index,
            "content_index": len(item.parts) - 1,
        }

    # -- envelopes ----------------------------------------------------------------------------

    def _response(self, status: str, usage: Usage | None) -> dict[str, Any]:
        output = [item.body("completed") for item in self._items] if status != "in_progress" else []
        return response_object(
            self._request,
            response_id=self._id,
            created_at=self._created_at,
            model=self._model,
            status=status,
            output=output,
            usage=usage,
            finish_reason=self._finish_reason if status != "in_progress" else None,
        ).model_dump(mode="json")

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return orjson.dumps(event)


async def translate_stream(
    events: AsyncGenerator[_ChatEvent, None], translator: ResponseEvents
) -> AsyncGenerator[_ChatEvent, None]:
    """The service's chat stream with its chunks replaced by Responses events (module docstring).

    Closing this generator closes ``events`` (and so the provider stream).
    """
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, bytes):
                for translated in translator.feed(event):
                    yield translated
            elif isinstance(event, RouteInfo):
                yield event
                for translated in translator.start():
                    yield translated
            elif isinstance(event, GenerationContext):
                translator.attach(event)
            elif isinstance(event, Usage):
                for translated in translator.finish(event):
                    yield translated
                yield event
            else:
                yield event
