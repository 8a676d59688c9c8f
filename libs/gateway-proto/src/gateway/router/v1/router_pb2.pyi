from gateway.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_UNSPECIFIED: _ClassVar[Operation]
    OPERATION_CHAT_COMPLETIONS: _ClassVar[Operation]
    OPERATION_EMBEDDINGS: _ClassVar[Operation]
    OPERATION_RESPONSES: _ClassVar[Operation]
OPERATION_UNSPECIFIED: Operation
OPERATION_CHAT_COMPLETIONS: Operation
OPERATION_EMBEDDINGS: Operation
OPERATION_RESPONSES: Operation

class CompleteRequest(_message.Message):
    __slots__ = ("operation", "model", "body", "request_id", "project_id", "api_key_id", "provider_key", "credentials", "budget_lease_id", "include_generation_context", "endpoint", "endpoint_id", "sku_usage", "metadata", "own_endpoint")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_KEY_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_GENERATION_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_USAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OWN_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    operation: Operation
    model: str
    body: bytes
    request_id: str
    project_id: str
    api_key_id: str
    provider_key: str
    credentials: _containers.RepeatedCompositeFieldContainer[ProviderCredential]
    budget_lease_id: str
    include_generation_context: bool
    endpoint: str
    endpoint_id: str
    sku_usage: _containers.RepeatedCompositeFieldContainer[SkuUsage]
    metadata: _containers.ScalarMap[str, str]
    own_endpoint: bool
    def __init__(self, operation: _Optional[_Union[Operation, str]] = ..., model: _Optional[str] = ..., body: _Optional[bytes] = ..., request_id: _Optional[str] = ..., project_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., provider_key: _Optional[str] = ..., credentials: _Optional[_Iterable[_Union[ProviderCredential, _Mapping]]] = ..., budget_lease_id: _Optional[str] = ..., include_generation_context: _Optional[bool] = ..., endpoint: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., sku_usage: _Optional[_Iterable[_Union[SkuUsage, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., own_endpoint: _Optional[bool] = ...) -> None: ...

class SkuUsage(_message.Message):
    __slots__ = ("sku", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class ProviderCredential(_message.Message):
    __slots__ = ("provider", "api_key", "base_url")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    api_key: str
    base_url: str
    def __init__(self, provider: _Optional[str] = ..., api_key: _Optional[str] = ..., base_url: _Optional[str] = ...) -> None: ...

class RouteInfo(_message.Message):
    __slots__ = ("provider", "deployment", "attempts", "model", "provider_model", "upstream_ms", "router_ms", "publish_ms")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MODEL_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    ROUTER_MS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_MS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    deployment: str
    attempts: int
    model: str
    provider_model: str
    upstream_ms: float
    router_ms: float
    publish_ms: float
    def __init__(self, provider: _Optional[str] = ..., deployment: _Optional[str] = ..., attempts: _Optional[int] = ..., model: _Optional[str] = ..., provider_model: _Optional[str] = ..., upstream_ms: _Optional[float] = ..., router_ms: _Optional[float] = ..., publish_ms: _Optional[float] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("body", "route", "usage")
    BODY_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    route: RouteInfo
    usage: _types_pb2.Usage
    def __init__(self, body: _Optional[bytes] = ..., route: _Optional[_Union[RouteInfo, _Mapping]] = ..., usage: _Optional[_Union[_types_pb2.Usage, _Mapping]] = ...) -> None: ...

class StreamEvent(_message.Message):
    __slots__ = ("route", "chunk", "usage", "error", "chunks")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    route: RouteInfo
    chunk: bytes
    usage: _types_pb2.Usage
    error: _types_pb2.ErrorDetail
    chunks: ChunkBatch
    def __init__(self, route: _Optional[_Union[RouteInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ..., usage: _Optional[_Union[_types_pb2.Usage, _Mapping]] = ..., error: _Optional[_Union[_types_pb2.ErrorDetail, _Mapping]] = ..., chunks: _Optional[_Union[ChunkBatch, _Mapping]] = ...) -> None: ...

class ChunkBatch(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, chunks: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "owned_by", "created", "provider", "context_window", "max_output_tokens", "input_price_per_token", "output_price_per_token", "cached_input_price_per_token", "capabilities", "aliases", "speed_tps", "best_for")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_PRICE_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    SPEED_TPS_FIELD_NUMBER: _ClassVar[int]
    BEST_FOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    owned_by: str
    created: int
    provider: str
    context_window: int
    max_output_tokens: int
    input_price_per_token: str
    output_price_per_token: str
    cached_input_price_per_token: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    speed_tps: int
    best_for: str
    def __init__(self, id: _Optional[str] = ..., owned_by: _Optional[str] = ..., created: _Optional[int] = ..., provider: _Optional[str] = ..., context_window: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., input_price_per_token: _Optional[str] = ..., output_price_per_token: _Optional[str] = ..., cached_input_price_per_token: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., aliases: _Optional[_Iterable[str]] = ..., speed_tps: _Optional[int] = ..., best_for: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
