"""The Responses API (``/v1/responses``): request envelope, input items, the Response object.

Requests are checked, not rebuilt: the typed fields are the ones the gateway
acts on (``model``, ``input``, ``instructions``, ``previous_response_id``,
``store``, ``metadata``, ``stream``) and the ones OpenAI bounds
(``temperature`` 0..2, ``top_p`` 0..1, ``max_output_tokens`` >= 16,
``top_logprobs`` 0..20; see ``_bounds``); tools, ``text``, ``reasoning`` and
anything OpenAI adds later stay as extra fields. An input item is typed by its
``type`` (a message may omit it and give only ``role``):

    message               role + content (a string or input_text/input_image/... parts)
    function_call         an earlier tool call of the assistant (call_id, name, arguments)
    function_call_output  the caller's result for a tool call (call_id, output)
    anything else         kept as is (``OtherItem``); the router decides whether it can serve it

The Response object and its output items are what the gateway produces (the
router translates a chat completion into them); ``Response`` keeps unknown
fields so the request parameters it echoes survive a parse.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator
from pydantic_core import PydanticCustomError

from ._bounds import MaxOutputTokens, Temperature, TopLogprobs, TopP

__all__ = [
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionToolCall",
    "InputContentPart",
    "InputItem",
    "InputItemList",
    "InputMessage",
    "OtherItem",
    "OutputItem",
    "OutputMessage",
    "OutputRefusal",
    "OutputText",
    "Response",
    "ResponseDeleted",
    "ResponseUsage",
    "ResponsesRequest",
]

MessageRole = Literal["user", "assistant", "system", "developer"]
_TYPED_ITEMS = {
    "message": "InputMessage",
    "function_call": "FunctionCallItem",
    "function_call_output": "FunctionCallOutputItem",
}


class _Open(BaseModel):
    """Unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow")


class InputContentPart(_Open):
    """One part of a message: ``input_text``, ``output_text``, ``input_image``, ``input_file``..."""

    type: str = Field(description="Part kind; the kind-specific fields are kept.")
    text: str | None = Field(default=None, description="The text of a text part.")


def _string_or_parts(value: Any) -> Any:
    if isinstance(value, str | list):
        return value
    raise PydanticCustomError("content_type", "expected a string or an array of content parts")


class InputMessage(_Open):
    """A message item; ``type`` may be omitted (OpenAI's "easy" input message)."""

    type: Literal["message"] = "message"
    role: MessageRole
    content: str | list[InputContentPart]
    id: str | None = None

    _content_shape = field_validator("content", mode="before")(_string_or_parts)


class FunctionCallItem(_Open):
    """A tool call the assistant made earlier in the conversation."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(_Open):
    """The caller's result for the tool call ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[InputContentPart]
    id: str | None = None

    _output_shape = field_validator("output", mode="before")(_string_or_parts)


class OtherItem(_Open):
    """Any other item kind (``reasoning``, ``item_reference``, ...), kept for the router."""

    type: str


def _item_kind(value: Any) -> str:
    # Tags are the class names: error locations then read input[0].role, not
    # input[0].message.role (the edge drops capitalized segments when naming a field).
    if isinstance(value, dict):
        kind = value.get("type") or ("message" if "role" in value else None)
    else:
        kind = getattr(value, "type", None)
    return _TYPED_ITEMS.get(kind, "OtherItem") if isinstance(kind, str) else "OtherItem"


InputItem = Annotated[
    Annotated[InputMessage, Tag("InputMessage")]
    | Annotated[FunctionCallItem, Tag("FunctionCallItem")]
    | Annotated[FunctionCallOutputItem, Tag("FunctionCallOutputItem")]
    | Annotated[OtherItem, Tag("OtherItem")],
    Discriminator(_item_kind),
]


class ResponsesRequest(_Open):
    """``POST /v1/responses`` (see the module docstring for what is typed)."""

    model: str = Field(min_length=1, description="Public model name; required on every request.")
    input: str | list[InputItem] = Field(description="Text, or a list of input items.")
    instructions: str | None = Field(default=None, description="System prompt; never inherited.")
    previous_response_id: str | None = Field(
        default=None, min_length=1, description="Continue the chain ending at this response."
    )
    store: bool = Field(default=True, strict=True, description="Keep the response for chaining.")
    metadata: dict[str, str] | None = Field(
        default=None, max_length=16, description="Up to 16 string pairs, echoed and stored."
    )
    stream: bool = Field(default=False, strict=True, description="Answer as server-sent events.")
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_output_tokens: MaxOutputTokens | None = None
    top_logprobs: TopLogprobs | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input_shape(cls, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, list) and value):
            return value
        raise PydanticCustomError("input_type", "expected a string or a non-empty array of items")


# -- what the gateway answers --------------------------------------------------


class OutputText(BaseModel):
    """Assistant text. ``annotations`` and ``logprobs`` are always present (empty) as OpenAI
    sends them: outside clients compare the parts field by field."""

    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputRefusal(BaseModel):
    """The model declined to answer."""

    type: Literal["refusal"] = "refusal"
    refusal: str


class OutputMessage(BaseModel):
    """The assistant's message item."""

    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputText | OutputRefusal]


class FunctionToolCall(BaseModel):
    """A tool call the model asks the caller to run."""

    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


OutputItem = Annotated[OutputMessage | FunctionToolCall, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    """``cache_write_tokens`` is 0: the chat usage a Response is built from does not say."""

    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    """Token counts: input includes cached, output includes reasoning."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(_Open):
    """The Response object (``object: "response"``); request parameters are echoed as extras."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "in_progress", "failed"]
    error: Any = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    previous_response_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: ResponseUsage | None = None


class InputItemList(BaseModel):
    """``GET /v1/responses/{id}/input_items``: a cursor page of the response's input items."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ResponseDeleted(BaseModel):
    """``DELETE /v1/responses/{id}``."""

    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True
