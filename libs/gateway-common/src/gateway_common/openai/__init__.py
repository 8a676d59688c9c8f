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
    bounds      Temperature, TopP, Penalty, TokenLimit, MaxOutputTokens, ChoiceCount,
                TopLogprobs, LogitBias, Dimensions: OpenAI's parameter ranges as field
                types, for the models above and anything else that stores such a
                parameter (the Gateway API's endpoint params)
"""

from ._bounds import (
    ChoiceCount,
    Dimensions,
    LogitBias,
    MaxOutputTokens,
    Penalty,
    Temperature,
    TokenLimit,
    TopLogprobs,
    TopP,
)
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
    "ChoiceCount",
    "ContentPart",
    "Dimensions",
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
    "LogitBias",
    "MaxOutputTokens",
    "Model",
    "ModelList",
    "ModelPricing",
    "OtherItem",
    "OutputItem",
    "OutputMessage",
    "OutputRefusal",
    "OutputText",
    "Penalty",
    "Response",
    "ResponseDeleted",
    "ResponseFormat",
    "ResponseUsage",
    "ResponsesRequest",
    "Role",
    "StreamOptions",
    "Temperature",
    "TokenLimit",
    "ToolDefinition",
    "TopLogprobs",
    "TopP",
]
