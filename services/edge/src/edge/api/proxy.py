"""The shared flow of every routed endpoint: read, check, call the router, shape the response.

A thin route (``routes/chat.py``, ``routes/embeddings.py``) authorizes, then
calls ``Proxy.read`` with its request schema and ``Proxy.forward`` with the
operation. The body sent to the router is the client's original bytes; the
parsed model is used only to check the body and to read ``model``/``stream``.
The Gateway API (``routes/gateway_api.py``) reads with ``read_body`` and
forwards the chat request its endpoint builds, naming the endpoint.

Streaming (``text/event-stream``): the first router event is awaited before
any header is sent, so an error before the first token still gets its own
status code. Then each chunk is framed ``data: <json>\\n\\n``; a good stream
ends with ``data: [DONE]\\n\\n``; a failure after the first chunk is written
as ``data: {"error": {...}}\\n\\n`` and the stream ends without ``[DONE]``.
The router sends chunks in batches (what it had ready together, in practice
one provider read); the frames of a batch go out as one body send. When the
client goes away, the response task is cancelled and the ``finally`` closes
the router stream, which cancels the gRPC call.

A route may pass a ``Shaper`` to ``forward`` to rewrite what the client gets
(the Responses API frames ``event:`` lines, ends without ``[DONE]`` and stores
each response before the client sees it); without one, bodies and chunks go
out exactly as the router sent them.

Both kinds of response carry ``x-switchyard-provider``, ``-deployment``,
``-attempts`` and ``-overhead-ms`` (time to the router's answer, or to the
first stream event, minus the router's reported upstream time), and a
``Server-Timing`` header splitting that time by hop (``server_timing``).

BYOK: an ``X-Provider-Key`` header is the caller's own provider key. It is
checked for shape (one token of visible ASCII, at most ``MAX_PROVIDER_KEY``
characters: it becomes an upstream header) and handed to the router in
``CompleteRequest.provider_key``, which sends it to the chosen provider as its
credential and bills the call as BYOK. The edge never stores or logs it.
A bearer-passthrough call (``edge.passthrough``) carries its bearer there
instead; ``read`` and ``forward`` confirm that its model allows it, and it
skips budgets and managed credentials.

Managed credentials and ``generation_context``: every call also carries its
project's managed provider keys, opened from the in-memory ``ProjectCache``
for that call only, and the project's ``generation_context`` setting; the
router attaches the priced line items to the body, or as one more chunk
before the last, which goes out as an ordinary ``data:`` frame.

Context window (``edge.context_window``): ``forward`` first refuses a chat or
Responses body whose prompt cannot fit its model's window (400
``context_length_exceeded``), before rate limits, budgets, credentials or the router.

Rate limits (``edge.pipeline.limits_step``): after the body and header checks
and before the budget, a key's ``allowed_models`` is checked (403
``model_not_allowed``) and the call is counted against its key's, project's
(and, on the Gateway API, endpoint's) limits: requests, and tokens reserved at
the call's worst case, settled to its usage when the call ends; refused with
429 (``Retry-After``). The Gateway API counts the request earlier
(``rate_limit``, right after its endpoint lookup) and hands the ``Admission``
to ``forward``, which reserves the tokens once the prompt is built. The
``x-ratelimit-*`` headers (and ``retry-after``) go on whatever response the
request ends with, errors included: ``rate_limit`` leaves them in
``request.state`` under ``RESPONSE_HEADERS`` and the middleware adds them.

Budgets (``edge.budget``): after the body and header checks, each call is
admitted against its project's, key's and (Gateway API calls) endpoint's
budgets and credits (refused with 429 ``insufficient_quota`` or 403 before
the router sees it; 422 on the Gateway API) and carries its
lease in ``CompleteRequest.budget_lease_id``; its ticket is settled with the
usage the router reports, however the request ends (streams: in ``_sse``'s
``finally``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol, TypeVar, runtime_checkable

from fastapi import Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2
from gateway_common.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    from_detail,
)
from gateway_common.openai import ChatCompletionRequest, EmbeddingRequest, ResponsesRequest
from gateway_common.telemetry import REQUEST_ID

from ..anthropic import CountTokensRequest, MessagesRequest
from ..auth import KeyEntry, UnknownKey
from ..budget import BudgetGate, Ticket
from ..context_window import ContextWindow
from ..drain import Drain
from ..endpoints import EndpointView
from ..metrics import EdgeMetrics
from ..passthrough import MAX_PROVIDER_KEY, PROVIDER_KEY_HEADER, PROVIDER_KEY_SHAPE, Passthrough
from ..pipeline.limits_step import Admission, LimitsStep
from ..pipeline.ratelimit import Decision
from ..pricebook import PriceBook
from ..projects import CallOptions, ProjectCache, Surface
from ..router_client import CallContext, RouterClient
from .errors import error_bytes, validation_error
from .middleware import RESPONSE_HEADERS
from .nul import refuse_nul

__all__ = ["ErrorFramer", "Proxy", "Shaper", "server_timing"]

#: The body of a routed endpoint; each names its ``model``.
M = TypeVar(
    "M",
    ChatCompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
    MessagesRequest,
    CountTokensRequest,
)

_DONE = b"data: [DONE]\n\n"
#: Metric label per operation, named as usage events name them.
_OPERATION_LABELS = {
    router_pb2.OPERATION_CHAT_COMPLETIONS: "chat.completions",
    router_pb2.OPERATION_EMBEDDINGS: "embeddings",
    router_pb2.OPERATION_RESPONSES: "responses",
}
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
#: What a passthrough call carries instead of its (nonexistent) project's options.
#: A passthrough key's call has no project: generation_context only where it is on by default.
_NO_PROJECT: dict[Surface, CallOptions] = {
    "openai": CallOptions(),
    "messages": CallOptions(include_generation_context=False),
}
_ADMITTED = Decision(allowed=True)
_NO_USAGE = types_pb2.Usage()
#: Settles a call's token reservation with its usage (None: unknown) and failure.
_Settle = Callable[[types_pb2.Usage | None, BaseException | None], Awaitable[None]]


#: How a stream still open at the shutdown deadline ends (``edge.drain``).
_SHUTTING_DOWN = ServiceUnavailable(
    "The gateway is restarting and ended this stream; please retry.",
    code="server_shutting_down",
)


def _error_frame(err: GatewayError, shaper: Shaper | None = None) -> bytes:
    """The in-band frame that ends a failed stream: the shaper's own, else OpenAI's."""
    if isinstance(shaper, ErrorFramer):
        return shaper.error_frame(err)
    body = error_bytes(message=err.message, type=err.error_type, param=err.param, code=err.code)
    return b"data: " + body + b"\n\n"


async def _shaped(shaper: Shaper, chunks: Iterable[bytes]) -> tuple[bytes, GatewayError | None]:
    """The frames of ``chunks`` joined, and the ``frame`` failure that stopped them if any."""
    frames: list[bytes] = []
    try:
        for chunk in chunks:
            frames.append(await shaper.frame(chunk))
    except GatewayError as err:
        return b"".join(frames), err
    return b"".join(frames), None


def _provider_key(request: Request) -> str | None:
    """The caller's own provider key from ``X-Provider-Key``, or None; 400 if malformed.

    The error never echoes the value.
    """
    value = request.headers.get(PROVIDER_KEY_HEADER)
    if value is None:
        return None
    value = value.strip()
    if not PROVIDER_KEY_SHAPE.fullmatch(value):
        raise InvalidRequest(
            "The X-Provider-Key header must be a single token of visible ASCII characters, "
            f"at most {MAX_PROVIDER_KEY} long.",
            code="invalid_provider_key",
        )
    return value


class Shaper(Protocol):
    """Shapes one call's answer for its client; either method may raise ``GatewayError``.

    ``body`` gets a unary answer's body and returns what the client receives;
    ``frame`` turns one stream chunk into its SSE frame (chunks of a batch one
    by one, in order); ``finish`` runs after a good stream's last chunk and
    returns what is written last (empty: nothing), so it can store what the
    stream said before the client sees the end. A failure in ``body`` becomes
    the error response, one in ``frame`` or ``finish`` the in-band error frame
    that ends the stream, after the frames before it.
    """

    async def body(self, body: bytes) -> bytes: ...

    async def frame(self, chunk: bytes) -> bytes: ...

    async def finish(self) -> bytes: ...


@runtime_checkable
class ErrorFramer(Protocol):
    """A ``Shaper`` whose API frames a mid-stream failure its own way (Anthropic's ``error``
    event); other shapers' failures are framed as OpenAI's ``data: {"error": ...}``."""

    def error_frame(self, err: GatewayError) -> bytes: ...


class Proxy:
    """Carries one request from the edge to the router and back (see module docstring)."""

    def __init__(
        self,
        client: RouterClient,
        metrics: EdgeMetrics,
        *,
        max_body_bytes: int,
        projects: ProjectCache,
        budget: BudgetGate,
        passthrough: Passthrough,
        context_window: ContextWindow,
        limits: LimitsStep,
        prices: PriceBook,
        drain: Drain,
    ) -> None:
        self._client = client
        self._window = context_window
        self._limits = limits
        self._prices = prices
        self._drain = drain
        self._metrics = metrics
        self._max_body = max_body_bytes
        self._projects = projects
        self._budget = budget
        self._passthrough = passthrough

    async def read(self, request: Request, schema: type[M], key: KeyEntry) -> tuple[bytes, M]:
        """The raw body (at most ``max_body_bytes``) and its parse against ``schema``.

        Raises ``PayloadTooLarge`` (413) or ``InvalidRequest`` (400); for a pending
        passthrough ``key``, ``UnknownKey`` (401) unless the body parses and its
        model is a passthrough model.
        """
        raw = await self.read_body(request)
        try:
            parsed = schema.model_validate_json(raw)
        except ValidationError as exc:
            if key.provider_key is not None:
                raise UnknownKey.of(key.provider_key) from None
            raise validation_error(exc.errors(include_url=False)) from None
        self._passthrough.confirm(key, parsed.model)
        return raw, parsed

    async def read_body(self, request: Request) -> bytes:
        """The raw body, at most ``max_body_bytes`` (``PayloadTooLarge`` otherwise), unparsed.

        For a route that builds the body it forwards (the Gateway API).
        """
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise self._too_large()
        parts: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > self._max_body:
                raise self._too_large()
            parts.append(part)
        body = b"".join(parts)  # one part (the common case) is returned without a copy
        refuse_nul(body)  # PostgreSQL cannot store NUL (``api.nul``)
        return body

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"Request body too large: the limit is {self._max_body} bytes.",
            code="request_too_large",
        )

    def check_model(self, key: KeyEntry, model: str) -> None:
        """403 ``model_not_allowed`` unless ``key``'s ``allowed_models`` lets it call ``model``
        (a Gateway API fallback: the endpoint's own model is checked by ``rate_limit``)."""
        self._limits.check_model(key, model)

    async def rate_limit(
        self,
        request: Request,
        key: KeyEntry,
        *,
        endpoint: EndpointView | None = None,
        tokens: int | None = None,
    ) -> Admission:
        """The rate-limit step: ``allowed_models`` of the call's model (the endpoint's when
        given), then the request counted against its limits (``tokens``: the worst case,
        when known). Raises 403 / 429 / 503; leaves the ``x-ratelimit-*`` headers for the
        response in ``request.state``."""
        if endpoint is not None:
            self._limits.check_model(key, endpoint.model)
        admission = await self._limits.admit(key, endpoint=endpoint, tokens=tokens)
        return self._publish(request, admission)

    def _worst(
        self,
        op: router_pb2.Operation.ValueType,
        model: str,
        body: bytes,
        max_output_tokens: int | None,
        choices: int,
    ) -> int:
        return self._prices.worst_case_tokens(
            op, model, body, max_output_tokens=max_output_tokens, choices=choices
        )

    @staticmethod
    def _publish(request: Request, admission: Admission) -> Admission:
        headers = admission.headers()
        if headers:
            setattr(request.state, RESPONSE_HEADERS, headers)
        if (error := admission.error()) is not None:
            raise error
        return admission

    async def check_budget(
        self,
        key: KeyEntry,
        *,
        model: str,
        body: bytes,
        max_output_tokens: int | None,
        endpoint_id: str,
    ) -> None:
        """The Gateway API's budget step (``BudgetGate.check``), ahead of its guardrails.

        A key with its own provider key spends its own account: no budget applies, as in
        ``forward``.
        """
        if key.provider_key is not None:
            return
        await self._budget.check(
            key,
            router_pb2.OPERATION_CHAT_COMPLETIONS,
            model,
            body,
            max_output_tokens=max_output_tokens,
            endpoint_id=endpoint_id,
        )

    async def forward(
        self,
        request: Request,
        op: router_pb2.Operation.ValueType,
        *,
        model: str,
        body: bytes,
        stream: bool,
        key: KeyEntry,
        shaper: Shaper | None = None,
        max_output_tokens: int | None = None,
        choices: int = 1,
        endpoint: str = "",
        endpoint_id: str = "",
        admission: Admission | None = None,
        surface: Surface = "openai",
        sku_usage: tuple[tuple[str, int], ...] = (),
        metadata: tuple[tuple[str, str], ...] = (),
        own_credential: str = "",
    ) -> Response:
        """Send ``body`` to the router as ``op`` and shape its answer as the HTTP response.

        ``max_output_tokens`` (the request's completion cap per choice, None when
        unset) and ``choices`` (its ``n``) bound the worst case the budget and the
        token limits reserve. ``endpoint`` names the Gateway API endpoint the call
        came through ("": none) and ``endpoint_id`` is its id: the call is also bound
        by the endpoint's budget; ``admission`` is its ``rate_limit`` (None: ``/v1``,
        the model is checked and the call counted here). ``surface`` names the public
        API called: the project's ``generation_context`` setting for it applies
        (``ProjectCache.call_options``); ``sku_usage``: extra catalog SKUs the edge consumed
        for the call (a gateway's retrieval, its routing), billed on its usage event;
        ``metadata`` the client's request metadata, kept on that event. ``own_credential``:
        the id of the project credential whose own endpoint serves ``model`` verbatim (a
        gateway's BYOK; the router bills it ``byok``), "" for the catalog.
        """
        started: float = request.state.started_at
        await self._window.check(op, model, body, max_output_tokens=max_output_tokens)
        provider_key: str | None
        if key.provider_key is not None:
            # Again where the key leaves: ``model`` is what the router will route.
            self._passthrough.confirm(key, model)
            options, provider_key, ticket = _NO_PROJECT[surface], key.provider_key, Ticket()
            admission = Admission((), _ADMITTED)
        else:
            options = self._projects.call_options(
                key.project_id, surface, credential_id=own_credential
            )
            provider_key = _provider_key(request)
            worst = (op, model, body, max_output_tokens, choices)
            if admission is None:  # /v1: the worst case is known, one admission counts all
                self._limits.check_model(key, model)
                tokens = self._worst(*worst) if self._limits.counts_tokens(key) else None
                admission = await self.rate_limit(request, key, tokens=tokens)
            elif self._limits.wants_tokens(admission):
                await self._limits.reserve(admission, tokens=self._worst(*worst))
                self._publish(request, admission)
            try:
                ticket = await self._budget.admit(
                    key,
                    op,
                    model,
                    body,
                    max_output_tokens=max_output_tokens,
                    choices=choices,
                    endpoint_id=endpoint_id,
                )
            except BaseException:
                await self._limits.settle(admission, _NO_USAGE)  # no call: no tokens used
                raise
        ctx = CallContext(
            request_id=REQUEST_ID.get(),
            project_id=key.project_id,
            api_key_id=key.key_id,
            provider_key=provider_key,
            credentials=options.credentials,
            include_generation_context=options.include_generation_context,
            budget_lease_id=ticket.lease_id,
            endpoint=endpoint,
            endpoint_id=endpoint_id,
            sku_usage=sku_usage,
            metadata=metadata,
            own_endpoint=bool(own_credential),
        )
        operation = _OPERATION_LABELS.get(op, "unspecified")
        if not stream:
            try:
                with ticket:
                    result = await self._client.complete(op, model, body, ctx)
                    ticket.record(result.usage)
            except BaseException as exc:
                await self._limits.settle(admission, None, exc)
                raise
            await self._limits.settle(admission, result.usage)
            headers = self._route_headers(result.route, started, operation)
            answer = result.body if shaper is None else await shaper.body(result.body)
            return Response(answer, media_type="application/json", headers=headers)

        events = self._client.stream(op, model, body, ctx)
        try:
            first = await self._first_event(events)
        except BaseException as exc:
            ticket.close(exc)
            await self._limits.settle(admission, None, exc)
            raise
        kind = first.WhichOneof("event")
        route = first.route if kind == "route" else router_pb2.RouteInfo()
        headers = self._route_headers(route, started, operation)
        return StreamingResponse(
            self._sse(
                events,
                pending=None if kind == "route" else first,
                shaper=shaper,
                ticket=ticket,
                settle=self._settler(admission),
                first_token=lambda: self._metrics.observe_first_token(
                    operation=operation, seconds=time.perf_counter() - started
                ),
                drain=self._drain,
            ),
            media_type="text/event-stream",
            headers={**headers, **_SSE_HEADERS},
        )

    @staticmethod
    async def _first_event(
        events: AsyncGenerator[router_pb2.StreamEvent, None],
    ) -> router_pb2.StreamEvent:
        """The stream's first event; an error before the first chunk is raised, not framed."""
        first = await anext(events, None)
        if first is None:
            raise ServiceUnavailable("The router ended the stream without an answer.")
        if first.WhichOneof("event") == "error":
            await events.aclose()
            raise from_detail(first.error)
        return first

    def _route_headers(
        self, route: router_pb2.RouteInfo, started: float, operation: str
    ) -> dict[str, str]:
        total_ms = (time.perf_counter() - started) * 1000
        overhead_ms = total_ms - route.upstream_ms
        self._metrics.observe_overhead(operation=operation, seconds=overhead_ms / 1000)
        return {
            "x-switchyard-provider": route.provider,
            "x-switchyard-deployment": route.deployment,
            "x-switchyard-attempts": str(route.attempts),
            "x-switchyard-overhead-ms": f"{max(overhead_ms, 0.0):.3f}",
            "server-timing": server_timing(route, total_ms),
        }

    def _settler(self, admission: Admission) -> _Settle:
        async def settle(usage: types_pb2.Usage | None, error: BaseException | None) -> None:
            await self._limits.settle(admission, usage, error)

        return settle

    @staticmethod
    async def _sse(
        events: AsyncGenerator[router_pb2.StreamEvent, None],
        *,
        pending: router_pb2.StreamEvent | None,
        shaper: Shaper | None,
        ticket: Ticket,
        settle: _Settle,
        first_token: Callable[[], None] | None = None,
        drain: Drain,
    ) -> AsyncIterator[bytes]:
        usage: types_pb2.Usage | None = None
        failure: BaseException | None = None
        try:
            async with drain.stream():  # ends at the drain deadline (edge.drain)
                event = pending if pending is not None else await anext(events, None)
                while event is not None:
                    kind = event.WhichOneof("event")
                    if kind == "chunks" and (chunks := event.chunks.chunks):  # (empty: nothing)
                        if first_token is not None:  # time to first token, once per stream
                            first_token()
                            first_token = None
                        if shaper is None:
                            yield b"data: " + b"\n\ndata: ".join(chunks) + b"\n\n"
                        else:
                            frames, failure = await _shaped(shaper, chunks)
                            if failure is not None:
                                yield frames + _error_frame(failure, shaper)
                                return
                            yield frames
                    elif kind == "usage":
                        ticket.record(event.usage)
                        usage = event.usage
                    elif kind == "error":
                        failure = from_detail(event.error)
                        yield _error_frame(failure, shaper)
                        return
                    event = await anext(events, None)
                done = _DONE if shaper is None else await shaper.finish()
                if done:
                    yield done
        except GatewayError as err:
            # The call itself failed mid-stream (router gone, deadline): report it in-band.
            failure = err
            yield _error_frame(err, shaper)
        except TimeoutError:
            if not drain.draining:
                raise
            # Still open at the shutdown deadline: end it in-band, as a failure after the
            # first chunk always ends; the ticket settles at the usage known so far.
            failure = _SHUTTING_DOWN
            yield _error_frame(_SHUTTING_DOWN, shaper)
        finally:
            ticket.close()  # settles at the reported usage, else at the whole reservation
            await events.aclose()
            await settle(usage, failure)


def server_timing(route: router_pb2.RouteInfo, total_ms: float) -> str:
    """The ``Server-Timing`` header: where the time to the answer (or to a stream's first
    event) went, hop by hop, in milliseconds; the four parts add up to that time.

    ``edge``: this process (ASGI, auth, checks, budget, gRPC client) and the gRPC round trip,
    ``router``: the router's own work (routing, adapters, failover bookkeeping, pricing),
    ``publish``: the usage event's publish and JetStream ack before a unary answer,
    ``upstream``: waiting on the provider, failed attempts included.
    """
    if route.router_ms <= 0:  # a router that does not report its time
        return f"upstream;dur={route.upstream_ms:.3f}"
    router_own = route.router_ms - route.upstream_ms - route.publish_ms
    return (
        f"edge;dur={max(total_ms - route.router_ms, 0.0):.3f}, "
        f"router;dur={max(router_own, 0.0):.3f}, "
        f"publish;dur={route.publish_ms:.3f}, "
        f"upstream;dur={route.upstream_ms:.3f}"
    )
