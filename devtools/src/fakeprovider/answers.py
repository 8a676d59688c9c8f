"""What the fake assistant says to a chat request: text, a refusal, or tool calls.

Pure and deterministic, decided from the body alone (``replies`` wraps an
``Answer`` in OpenAI's envelopes)::

    tools + tool_choice "required"                one call per function tool (only the
                                                  first when parallel_tool_calls is false)
    tools + tool_choice {"type": "function",
                         "function": {"name": N}}  one call to N
    last user text contains "[refuse]"            a refusal: content null, refusal text
    last user text starts with "[verbatim]"       text: the rest of the last user text,
                                                  exactly (no digest), so a test can make
                                                  the model answer given content (JSON for
                                                  output schemas, an e-mail address for PII)
    otherwise                                     text: f"{last_user_text} [{digest}]"

A call's ``id`` is ``call_<digest>_<i>`` and its ``arguments`` are
``orjson.dumps({"text": last_user_text})``; streamed, the arguments arrive in
``ARGUMENT_DELTA_CHARS``-character pieces after a first delta carrying the id
and name, as OpenAI streams them. A refusal reads
``f"I can't help with that. [{digest}]"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "ARGUMENT_DELTA_CHARS",
    "REFUSE_MARKER",
    "VERBATIM_MARKER",
    "Answer",
    "ToolCall",
    "answer",
]

#: A last user message containing this is refused.
REFUSE_MARKER = "[refuse]"
#: A last user message starting with this is answered with the rest of it, verbatim.
VERBATIM_MARKER = "[verbatim]"
#: Size of each streamed piece of a tool call's arguments.
ARGUMENT_DELTA_CHARS = 8


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the assistant makes."""

    id: str
    name: str
    arguments: str

    def wire(self) -> dict[str, Any]:
        """The call as it appears in ``message.tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """The assistant's side of one choice; exactly one of the three kinds is set."""

    content: str | None = None
    refusal: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def tokens(self) -> int:
        """Completion tokens of one choice: words of the text, refusal or arguments."""
        said = self.content or self.refusal or " ".join(c.arguments for c in self.tool_calls)
        return len(said.split())

    def message(self) -> dict[str, Any]:
        """The ``choices[i].message`` object."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.content,
            "refusal": self.refusal,
        }
        if self.tool_calls:
            message["tool_calls"] = [call.wire() for call in self.tool_calls]
        return message

    def deltas(self) -> list[dict[str, Any]]:
        """The streamed ``delta`` objects of one choice, before the finishing chunk."""
        if self.tool_calls:
            out: list[dict[str, Any]] = [{"role": "assistant", "content": None}]
            for index, call in enumerate(self.tool_calls):
                head = {"name": call.name, "arguments": ""}
                out.append(
                    {
                        "tool_calls": [
                            {"index": index, "id": call.id, "type": "function", "function": head}
                        ]
                    }
                )
                out.extend(
                    {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    for piece in _pieces(call.arguments)
                )
            return out
        if self.refusal is not None:
            field, text = "refusal", self.refusal
            first: dict[str, Any] = {"role": "assistant", "content": None, "refusal": ""}
        else:
            field, text = "content", self.content or ""
            first = {"role": "assistant", "content": ""}
        words = text.split()
        return [first, *({field: w if i == 0 else " " + w} for i, w in enumerate(words))]


def _pieces(text: str) -> list[str]:
    return [text[i : i + ARGUMENT_DELTA_CHARS] for i in range(0, len(text), ARGUMENT_DELTA_CHARS)]


def _called_functions(body: dict[str, Any]) -> list[str]:
    """Names of the functions the request forces a call to; empty when it forces none."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return []
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        return [name] if isinstance(name, str) and name else []
    if choice != "required":
        return []
    names = [
        tool["function"]["name"]
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    ]
    return names[:1] if body.get("parallel_tool_calls") is False else names


def answer(body: dict[str, Any], *, last_user: str, digest: str) -> Answer:
    """The answer to ``body`` (see the module docstring)."""
    if names := _called_functions(body):
        arguments = orjson.dumps({"text": last_user}).decode()
        return Answer(
            tool_calls=tuple(
                ToolCall(f"call_{digest}_{i}", name, arguments) for i, name in enumerate(names)
            )
        )
    if REFUSE_MARKER in last_user:
        return Answer(refusal=f"I can't help with that. [{digest}]")
    if last_user.startswith(VERBATIM_MARKER):
        return Answer(content=last_user[len(VERBATIM_MARKER) :])
    return Answer(content=f"{last_user} [{digest}]")
