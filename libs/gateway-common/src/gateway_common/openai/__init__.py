"""Typed OpenAI wire models, parsed only where a body must be read or checked.

The gateway forwards request bodies as the bytes the client sent, so these
models exist to *check* a body (and to read the few fields the gateway acts
on: ``model``, ``stream``), not to re-serialize it. Request models therefore
type only what the gateway reads and keep every other field
(``extra="allow"``): a new OpenAI parameter passes through without a change
here. Response models (``Model``, ``ModelList``, ``ErrorResponse``) are the
shapes the gateway itself produces.

    requests    ChatCompletionRequest (ChatMessage, ContentPart, StreamOptions,
                ToolDefinition, FunctionDefinition, ResponseFormat), EmbeddingRequest, ResponsesRequest (InputItem and its kinds)
    responses   Model, ModelList, ModelPricing, ErrorObject, ErrorResponse,
                Response (OutputItem and its kinds, ResponseUsage), InputItemList,
                ResponseDeleted
"""

from ._chat import (
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionDefinition,
    ResponseFormat,
    Role,
    StreamOptions,
    ToolDefinition,
)
from ._embeddings import EmbeddingRequest
from ._responses import ErrorObject, ErrorResponse, Model, ModelList, ModelPricing
from ._responses_api import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionToolCall,
    InputContentPart,
    InputItem,
    InputItemList,
    InputMessage,
    OtherItem,
    OutputItem,
    OutputMessage,
    OutputRefusal,
    OutputText,
    Response,
    ResponseDeleted,
    ResponsesRequest,
    ResponseUsage,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "ContentPart",
    "EmbeddingRequest",
    "ErrorObject",
    "ErrorResponse",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionDefinition",
    "FunctionToolCall",
    "InputContentPart",
    "InputItem",
    "InputItemList",
    "InputMessage",
    "Model",
    "ModelList",
    "ModelPricing",
    "OtherItem",
    "OutputItem",
    "OutputMessage",
    "OutputRefusal",
    "OutputText",
    "Response",
    "ResponseDeleted",
    "ResponseFormat",
    "ResponseUsage",
    "ResponsesRequest",
    "Role",
    "StreamOptions",
    "ToolDefinition",
]
