"""The gateway's error taxonomy: one small hierarchy, shared by every service.

    GatewayError                       500  INTERNAL            not retryable
    ├── InvalidRequest                 400  INVALID_ARGUMENT
    │   ├── PayloadTooLarge            413  INVALID_ARGUMENT
    │   ├── ContextLengthExceeded      400  INVALID_ARGUMENT    code "context_length_exceeded" (OpenAI)
    │   ├── GuardrailBlocked           422  INVALID_ARGUMENT    code "guardrail_blocked" (seed 001)
    │   └── InputSchemaInvalid         422  INVALID_ARGUMENT    code "input_schema_invalid" (seed 001)
    ├── Unauthenticated                401  UNAUTHENTICATED
    ├── PermissionDenied               403  PERMISSION_DENIED
    │   └── CreditsExhausted           403  PERMISSION_DENIED   type "insufficient_quota" (seed 003)
    ├── NotFound                       404  NOT_FOUND
    │   └── ModelNotFound              404  NOT_FOUND           code "model_not_found"
    ├── RateLimited                    429  RESOURCE_EXHAUSTED
    │   └── BudgetExceeded             429  RESOURCE_EXHAUSTED  code/type "insufficient_quota"
    ├── ServiceUnavailable             503  UNAVAILABLE
    └── ProviderError                  502  UNAVAILABLE
        ├── ProviderTimeout            504  DEADLINE_EXCEEDED   retryable
        ├── ProviderUnavailable        502  UNAVAILABLE         retryable (connect errors, 429, 5xx;
        │                                                       503 code "provider_overloaded" for a
        │                                                       provider that shed the call: 529)
        ├── ProviderRejected           502  FAILED_PRECONDITION not retryable (provider said 4xx)
        ├── OutputSchemaInvalid        502  UNAVAILABLE         the model's content failed the output schema
        └── AllProvidersFailed         502  UNAVAILABLE         retryable if any child was
                                       (429 / 504 when every attempt was rate limited / timed out,
                                        503 "provider_overloaded" when every one was shed)

Each class carries ``http_status``, ``grpc_code``, ``code`` (a stable machine
string) and ``retryable``; an instance carries a user-safe ``message`` and,
optionally, the request ``param`` it is about. Services raise these and
nothing else across a boundary: adapters map httpx exceptions into them
(``map_exceptions``), the router turns them into a gRPC status with an
``ErrorDetail`` (``to_detail``), and the edge turns that detail back into the
caller's API shape (``from_detail``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import grpc

from gateway.common.v1 import types_pb2

__all__ = [
    "PROVIDER_OVERLOADED",
    "AllProvidersFailed",
    "BudgetExceeded",
    "ContextLengthExceeded",
    "CreditsExhausted",
    "GatewayError",
    "GuardrailBlocked",
    "InputSchemaInvalid",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "OutputSchemaInvalid",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProviderError",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthenticated",
    "from_detail",
    "map_exceptions",
    "to_detail",
]


#: The ``code`` of a ``ProviderUnavailable`` (503) whose provider shed the call (Anthropic's
#: 529 "overloaded"), and of the ``AllProvidersFailed`` when every attempt was shed.
PROVIDER_OVERLOADED = "provider_overloaded"


class GatewayError(Exception):
    """Base of every error the gateway raises across a boundary."""

    http_status: int = 500
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    code: str = "internal_error"
    error_type: str = "api_error"  # OpenAI's error "type"
    retryable: bool = False
    #: Each failed attempt, when this error came back from a failover (see ``from_detail``).
    attempts: tuple[types_pb2.AttemptError, ...] = ()

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if http_status is not None:
            self.http_status = http_status
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.http_status})"


class InvalidRequest(GatewayError):
    """The request is malformed or asks for something impossible (400)."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    code = "invalid_request"
    error_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    """The request body is over the documented size limit (413)."""

    http_status = 413
    code = "payload_too_large"


class ContextLengthExceeded(InvalidRequest):
    """The prompt, with the completion it asks for, cannot fit the model's context window (400).

    OpenAI's error: ``param`` is ``messages`` on chat completions and ``input`` on
    the Responses API, the message OpenAI's ("This model's maximum context length
    is N tokens. However, your messages resulted in M tokens. ..."; built by
    ``gateway_common.tokens.overflow_message``). Raised by the edge before any
    provider is called, and by the router for a provider's own context-length
    refusal, so both reach the client as the same 400. Never retried: another
    deployment of the same model has the same window.
    """

    code = "context_length_exceeded"

    def __init__(self, message: str, *, param: str | None = "messages", **kw: object) -> None:
        super().__init__(message, param=param, **kw)  # type: ignore[arg-type]


class GuardrailBlocked(InvalidRequest):
    """A guardrail of the endpoint refused the call's input or the model's output (422).

    ``guardrail`` is the guardrail's name (its configured ``name``, else its type),
    ``guardrail_type`` its type, ``index`` its place in the endpoint's list, ``direction`` ``"input"`` or ``"output"`` and
    ``reason`` ``"matched"`` (the guardrail found what it looks for) or ``"timeout"``
    (its check ran out of time, which blocks too). The message names the guardrail and
    never quotes the text that fired it. 422 is seed 001's status on the Gateway API;
    the type is ``invalid_request_error``, as OpenAI's own content refusals, so an
    OpenAI-shaped surface can answer it with status 400.
    """

    http_status = 422
    code = "guardrail_blocked"

    def __init__(
        self,
        message: str,
        *,
        guardrail: str,
        guardrail_type: str,
        direction: str,
        reason: str = "matched",
        index: int | None = None,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.guardrail = guardrail
        self.guardrail_type = guardrail_type
        self.direction = direction
        self.reason = reason
        self.index = index


class InputSchemaInvalid(InvalidRequest):
    """The call's ``variables`` do not satisfy the endpoint's ``input_schema`` (422).

    ``path`` is where the validator failed, JSON-path style (``$.address.zip``,
    ``$`` for the whole object), ``reason`` the validator's message; ``param`` is
    the same place in the request (``variables.address.zip``).
    """

    http_status = 422
    code = "input_schema_invalid"

    def __init__(self, message: str, *, path: str, reason: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.path = path
        self.reason = reason


class Unauthenticated(GatewayError):
    """No credentials, or credentials we do not accept (401)."""

    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    code = "invalid_api_key"
    error_type = "authentication_error"


class PermissionDenied(GatewayError):
    """Valid credentials without the right to do this (403)."""

    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    code = "permission_denied"
    error_type = "permission_error"


class NotFound(GatewayError):
    """The thing named does not exist for this caller (404)."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND
    code = "not_found"
    error_type = "invalid_request_error"


class ModelNotFound(NotFound):
    """The model, alias or provider prefix is not in the catalog (404)."""

    code = "model_not_found"


class RateLimited(GatewayError):
    """A rate limit, quota or budget refused the request (429).

    ``retry_after`` is the whole number of seconds after which the same request would
    be admitted again (the edge sends it as ``Retry-After``); ``None`` when waiting
    cannot help (a request larger than the limit itself) or nobody knows.
    """

    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "rate_limit_exceeded"
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class BudgetExceeded(RateLimited):
    """A project's, key's or endpoint's monthly budget cannot cover the request (429, OpenAI's
    shape; 422 on the Gateway API)."""

    code = "insufficient_quota"
    error_type = "insufficient_quota"


class CreditsExhausted(PermissionDenied):
    """The project's prepaid credits cannot cover the request (403, seed 003)."""

    code = "credits_exhausted"
    error_type = "insufficient_quota"


class ServiceUnavailable(GatewayError):
    """One of our own dependencies is not answering (503)."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    code = "service_unavailable"
    retryable = True


class ProviderError(GatewayError):
    """A model provider failed the call (502)."""

    http_status = 502
    grpc_code = grpc.StatusCode.UNAVAILABLE
    code = "provider_error"


class ProviderTimeout(ProviderError):
    """The provider did not answer within the deadline (504, retryable)."""

    http_status = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    code = "provider_timeout"
    retryable = True


class ProviderUnavailable(ProviderError):
    """Connection failure, 429 or 5xx from the provider (retryable)."""

    code = "provider_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """The provider refused the request itself (4xx): retrying cannot help."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    code = "provider_rejected"


class OutputSchemaInvalid(ProviderError):
    """The model's content is not JSON, or not JSON the endpoint's ``output_schema`` accepts (502).

    ``path`` (``$`` when the content is not JSON at all) and ``reason`` as on
    ``InputSchemaInvalid``. Not retryable: the gateway does not call the model again.
    """

    code = "output_schema_invalid"

    def __init__(self, message: str, *, path: str, reason: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.path = path
        self.reason = reason


class AllProvidersFailed(ProviderError):
    """Every attempt of a routed call failed.

    ``failures`` keeps each attempt's ``(provider/deployment, error)`` in order (a
    deployment retried appears once per attempt); ``errors`` maps each deployment
    to its last error. The status is 502, except when every attempt failed the
    same way: all rate limited (each error's status 429) gives 429
    ``RESOURCE_EXHAUSTED``, so OpenAI clients back off and retry as they would
    against OpenAI itself; all timed out (504) gives 504 ``DEADLINE_EXCEEDED``;
    all shed by an overloaded provider (503: its 529, or its breaker opened by
    them) gives 503 ``provider_overloaded``, which the Messages surface answers
    as Anthropic's 529 ``overloaded_error``.
    """

    code = "all_providers_failed"

    def __init__(
        self, errors: Mapping[str, GatewayError] | Iterable[tuple[str, GatewayError]]
    ) -> None:
        self.failures = tuple(errors.items() if isinstance(errors, Mapping) else errors)
        self.errors = dict(self.failures)
        summary = "; ".join(f"{name}: {err.message}" for name, err in self.failures)
        super().__init__(f"All providers failed: {summary}" if summary else "No provider available")
        statuses = {err.http_status for _, err in self.failures}
        if statuses == {429}:
            self.http_status = 429
            self.grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
            self.error_type = "rate_limit_error"
        elif statuses == {504}:
            self.http_status = 504
            self.grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
        elif statuses == {503}:
            self.http_status = 503
            self.code = PROVIDER_OVERLOADED

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return any(err.retryable for err in self.errors.values())


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[GatewayError]]) -> Iterator[None]:
    """Re-raise a foreign exception as our own type, ``from`` the original.

    The first mapping entry that matches (by ``isinstance``) wins, so list the
    more specific foreign types first.
    """
    try:
        yield
    except GatewayError:
        raise
    except Exception as exc:
        for foreign, ours in mapping.items():
            if isinstance(exc, foreign):
                raise ours(str(exc) or type(exc).__name__) from exc
        raise


def to_detail(err: GatewayError) -> types_pb2.ErrorDetail:
    """Encode an error as the ``ErrorDetail`` carried on a gRPC status."""
    detail = types_pb2.ErrorDetail(
        code=err.code,
        message=err.message,
        http_status=err.http_status,
        retryable=err.retryable,
        param=err.param or "",
    )
    if isinstance(err, AllProvidersFailed):
        for name, child in err.failures:
            provider, _, deployment = name.partition("/")
            detail.attempts.add(
                provider=provider,
                deployment=deployment or provider,
                http_status=child.http_status,
                code=child.code,
                message=child.message,
                retryable=child.retryable,
            )
    return detail


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    413: PayloadTooLarge,
    429: RateLimited,
    502: ProviderError,
    503: ServiceUnavailable,
    504: ProviderTimeout,
}


#: Codes whose class is more specific than their status's (checked first).
_BY_CODE: dict[tuple[int, str], type[GatewayError]] = {
    (400, ContextLengthExceeded.code): ContextLengthExceeded,
    # A provider's overload, not one of our own services (``ServiceUnavailable``): a
    # budget settles it as a call that cost nothing.
    (503, PROVIDER_OVERLOADED): ProviderUnavailable,
}


def from_detail(detail: types_pb2.ErrorDetail) -> GatewayError:
    """Rebuild a ``GatewayError`` from an ``ErrorDetail`` (the inverse of ``to_detail``)."""
    cls = _BY_CODE.get((detail.http_status, detail.code)) or _BY_STATUS.get(
        detail.http_status, GatewayError
    )
    err = cls(
        detail.message,
        param=detail.param or None,
        http_status=detail.http_status or None,
        code=detail.code or None,
    )
    err.attempts = tuple(detail.attempts)
    return err
