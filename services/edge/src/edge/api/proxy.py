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

Budgets (``edge.budget``): after the body and header checks, each call is
admitted against its project's and key's budgets and credits (refused with
429 ``insufficient_quota`` or 403 before the router sees it) and carries its
lease in ``CompleteRequest.budget_lease_id``; its ticket is settled with the
usage the router reports, however the request ends (streams: in ``_sse``'s
``finally``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Protocol, TypeVar

from fastapi import Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

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

from ..auth import KeyEntry, UnknownKey
from ..budget import BudgetGate, Ticket
from ..drain import Drain
from ..metrics import EdgeMetrics
from ..passthrough import MAX_PROVIDER_KEY, PROVIDER_KEY_HEADER, PROVIDER_KEY_SHAPE, Passthrough
from ..projects import CallOptions, ProjectCache
from ..router_client import CallContext, RouterClient
from .errors import error_bytes, validation_error

__all__ = ["Proxy", "Shaper", "server_timing"]

#: The body of a routed endpoint; each names its ``model``.
M = TypeVar("M", ChatCompletionRequest, EmbeddingRequest, ResponsesRequest)

_DONE = b"data: [DONE]\n\n"
#: Metric label per operation, named as usage events name them.
_OPERATION_LABELS = {
    router_pb2.OPERATION_CHAT_COMPLETIONS: "chat.completions",
    router_pb2.OPERATION_EMBEDDINGS: "embeddings",
    router_pb2.OPERATION_RESPONSES: "responses",
}
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
#: What a passthrough call carries instead of its (nonexistent) project's options.
_NO_PROJECT = CallOptions()


#: How a stream still open at the shutdown deadline ends (``edge.drain``).
_SHUTTING_DOWN = ServiceUnavailable(
    "The gateway is restarting and ended this stream; please retry.",
    code="server_shutting_down",
)


def _error_frame(err: GatewayError) -> bytes:
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
    by one, in order); ``done`` is written after a good stream (empty: nothing).
    A failure in ``body`` becomes the error response, one in ``frame`` the
    in-band error frame that ends the stream, after the frames before it.
    """

    done: bytes

    async def body(self, body: bytes) -> bytes: ...

    async def frame(self, chunk: bytes) -> bytes: ...


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
        drain: Drain,
    ) -> None:
        self._client = client
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
        return b"".join(parts)  # one part (the common case) is returned without a copy

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"Request body too large: the limit is {self._max_body} bytes.",
            code="request_too_large",
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
    ) -> Response:
        """Send ``body`` to the router as ``op`` and shape its answer as the HTTP response.

        ``max_output_tokens`` (the request's completion cap per choice, None when
        unset) and ``choices`` (its ``n``) bound the worst case the budget reserves.
        ``endpoint`` names the Gateway API endpoint the call came through ("": none).
        """
        started: float = request.state.started_at
        provider_key: str | None
        if key.provider_key is not None:
            # Again where the key leaves: ``model`` is what the router will route.
            self._passthrough.confirm(key, model)
            options, provider_key, ticket = _NO_PROJECT, key.provider_key, Ticket()
        else:
            options = self._projects.call_options(key.project_id)
            provider_key = _provider_key(request)
            ticket = await self._budget.admit(
                key, op, model, body, max_output_tokens=max_output_tokens, choices=choices
            )
        ctx = CallContext(
            request_id=REQUEST_ID.get(),
            project_id=key.project_id,
            api_key_id=key.key_id,
            provider_key=provider_key,
            credentials=options.credentials,
            include_generation_context=options.include_generation_context,
            budget_lease_id=ticket.lease_id,
            endpoint=endpoint,
        )
        operation = _OPERATION_LABELS.get(op, "unspecified")
        if not stream:
            with ticket:
                result = await self._client.complete(op, model, body, ctx)
                ticket.record(result.usage)
            headers = self._route_headers(result.route, started, operation)
            answer = result.body if shaper is None else await shaper.body(result.body)
            return Response(answer, media_type="application/json", headers=headers)

        events = self._client.stream(op, model, body, ctx)
        try:
            first = await self._first_event(events)
        except BaseException as exc:
            ticket.close(exc)
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

    @staticmethod
    async def _sse(
        events: AsyncGenerator[router_pb2.StreamEvent, None],
        *,
        pending: router_pb2.StreamEvent | None,
        shaper: Shaper | None,
        ticket: Ticket,
        first_token: Callable[[], None] | None = None,
        drain: Drain,
    ) -> AsyncIterator[bytes]:
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
                                yield frames + _error_frame(failure)
                                return
                            yield frames
                    elif kind == "usage":
                        ticket.record(event.usage)
                    elif kind == "error":
                        yield _error_frame(from_detail(event.error))
                        return
                    event = await anext(events, None)
                done = _DONE if shaper is None else shaper.done
                if done:
                    yield done
        except GatewayError as err:
            # The call itself failed mid-stream (router gone, deadline): report it in-band.
            yield _error_frame(err)
        except TimeoutError:
            if not drain.draining:
                raise
            # Still open at the shutdown deadline: end it in-band, as a failure after the
            # first chunk always ends; the ticket settles at the usage known so far.
            yield _error_frame(_SHUTTING_DOWN)
        finally:
            ticket.close()  # settles at the reported usage, else at the whole reservation
            await events.aclose()


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
