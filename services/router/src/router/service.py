"""The router's domain flow, between the gRPC servicer and the providers.

    Call --resolve--> Route --Failover--> provider result --usage--> answer

``complete`` answers a unary call once its usage event is acknowledged.
``stream`` yields, in order: the ``RouteInfo`` (once the first chunk has
arrived), each chunk's JSON bytes (exactly the chunks OpenAI sends for the
client's request: the adapters see to that), a ``GenerationContext`` when the
call asked for one (``router.generation``: on a chat stream it is the last
chunk itself, carrying the key), then the final ``Usage``; a failure after
the first chunk is yielded as a ``GatewayError`` and ends the stream. Errors
before the first chunk are raised. Each call holds a catalog lease for as
long as it uses a provider.

With ``generation_context`` a chat stream holds back each ``final`` chunk
(a choice's finish, the usage chunk) until the next chunk arrives, so the
last one can wait for the usage event and carry the context; every other
chunk goes out at once.

Provider keys. A call with the caller's own key (BYOK) is narrowed to one
provider (``Route.one_provider``) and presents that key there only; any other
call presents, on each attempt, the project's managed credential for the
attempt's provider if it has one, else the adapter's configured key
(``Failover``, Credentials). Keys are never logged nor put on an event. A
managed credential with its own base URL sends its provider's attempts there
(``router.upstreams``: checked against SSRF rules on every call).

Own endpoint (``Call.own_endpoint``, seed 002's BYOK gateway): the call carries
exactly one managed credential and ``model`` is sent verbatim to that
credential's provider, at its base URL, with its key (``RoutingTable.own``: no
catalog lookup, one candidate, no failover); its usage event is ``byok`` and
``own_endpoint``, so only the edge's ``sku_usage`` is priced.

A ``responses`` call is served as a chat completion (``router.responses``):
its body is translated per call, the answer back into a Response object, and
a stream's chunks into Responses events (``router.responses_stream``). Its
usage is still recorded as operation ``responses``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeAlias, cast

from gateway_common.errors import GatewayError, InvalidRequest

from . import responses
from .catalog import LiveCatalog
from .delivered import Delivered
from .failover import Failover, Invoke, RouteInfo
from .generation import GenerationContext, context_json, with_context
from .providers.base import Completion, EmbeddingsAdapter, Operation, ProviderRequest, Usage
from .responses_stream import ResponseEvents, translate_stream
from .routing import Candidate, Route, RoutingTable
from .upstreams import NO_UPSTREAMS, CustomUpstreams
from .usage import Payer, Status, UsageSink

__all__ = ["Call", "RouterService", "StreamEvent"]

log = logging.getLogger(__name__)

#: What ``RouterService.stream`` yields.
StreamEvent: TypeAlias = RouteInfo | bytes | GenerationContext | Usage | GatewayError


@dataclass(frozen=True, slots=True)
class Call:
    """One request from the edge, decoded once. ``body`` is read-only.

    ``provider_key`` is the caller's own key (BYOK); ``credentials`` the
    project's managed keys by catalog provider name, and ``base_urls`` the
    custom base URLs some of them carry. ``generation_context``: attach the
    priced line items to the answer. ``own_endpoint``: serve ``model`` verbatim on the
    provider of the one credential (module docstring).
    """

    operation: Operation
    model: str
    body: Mapping[str, Any]
    payer: Payer
    provider_key: str | None = None
    credentials: Mapping[str, str] = field(default_factory=dict)
    base_urls: Mapping[str, str] = field(default_factory=dict)
    generation_context: bool = False
    own_endpoint: bool = False

    def provider_request(self) -> ProviderRequest:
        """The request template; failover fills in each attempt's provider model and key."""
        if self.operation == "responses":
            return ProviderRequest(
                operation="chat.completions",
                body=responses.to_chat_request(self.body),
                request_id=self.payer.request_id,
            )
        return ProviderRequest(
            operation=self.operation, body=self.body, request_id=self.payer.request_id
        )

    def keys(self, route: Route) -> Mapping[str, str]:
        """The key each provider of ``route`` gets (``route`` already narrowed for BYOK)."""
        if self.provider_key is None:
            return self.credentials
        return MappingProxyType({route.candidates[0].provider: self.provider_key})

    def upstreams(self) -> Mapping[str, str]:
        """Custom base URLs by provider; none for BYOK (the caller's key goes to the catalog's)."""
        return self.base_urls if self.provider_key is None else NO_UPSTREAMS

    def __repr__(self) -> str:  # the body and keys stay out of logs
        return (
            f"Call({self.operation!r}, model={self.model!r}, request_id={self.payer.request_id!r})"
        )


async def _complete(
    candidate: Candidate, req: ProviderRequest, deadline: float | None
) -> Completion:
    return await candidate.adapter.complete(req, deadline=deadline)


async def _embed(candidate: Candidate, req: ProviderRequest, deadline: float | None) -> Completion:
    # _route_for kept only candidates whose adapter is an EmbeddingsAdapter.
    return await cast(EmbeddingsAdapter, candidate.adapter).embed(req, deadline=deadline)


def _errors_for(call: Call) -> contextlib.AbstractContextManager[None]:
    """A provider's refusal in the words of the API the call came in on (Responses:
    ``responses.as_responses_errors``)."""
    if call.operation == "responses":
        return responses.as_responses_errors()
    return contextlib.nullcontext()


def _route_for(table: RoutingTable, call: Call) -> Route:
    if call.own_endpoint:
        if call.operation != "chat.completions" or len(call.credentials) != 1:
            raise InvalidRequest("An own-endpoint call is one chat completion on one credential.")
        return table.own(call.model, next(iter(call.credentials)))
    route = table.resolve(call.model)
    if call.operation == "responses":
        route = responses.require_support(route, call.model)
    elif call.operation == "embeddings":
        candidates = tuple(c for c in route.candidates if isinstance(c.adapter, EmbeddingsAdapter))
        if not candidates:
            raise InvalidRequest(
                f"The model `{call.model}` does not serve embeddings", param="model"
            )
        route = replace(route, candidates=candidates)
    # A caller's own key belongs to one provider: never fail over to another one.
    return route if call.provider_key is None else route.one_provider()


class RouterService:
    """Routes calls over the live catalog and records their usage; one per process."""

    def __init__(
        self,
        catalog: LiveCatalog,
        failover: Failover,
        usage: UsageSink,
        upstreams: CustomUpstreams | None = None,
    ) -> None:
        """``upstreams`` serves credentials' custom base URLs (default: public ones only)."""
        self._catalog = catalog
        self._failover = failover
        self._usage = usage
        self._upstreams = CustomUpstreams(allow_private=False) if upstreams is None else upstreams

    @property
    def catalog(self) -> LiveCatalog:
        return self._catalog

    async def complete(self, call: Call, *, deadline: float | None) -> tuple[Completion, RouteInfo]:
        """One unary call; raises ``GatewayError``."""
        invoke: Invoke[Completion] = _embed if call.operation == "embeddings" else _complete
        async with (
            self._catalog.lease() as table,
            self._upstreams.bind(table, _route_for(table, call), call.upstreams()) as route,
        ):
            with _errors_for(call):
                completion, info = await self._failover.call(
                    route, call.provider_request(), invoke, deadline=deadline, keys=call.keys(route)
                )
        publishing = time.perf_counter()
        event = await self._usage.record(call.payer, call.operation, info, completion.usage)
        info = replace(info, publish_ms=(time.perf_counter() - publishing) * 1000)
        if call.operation == "responses":
            completion = responses.to_completion(completion, call.body)
        if call.generation_context:
            context = context_json(table.prices, event)
            completion = replace(completion, body=with_context(completion.body, context))
        return completion, info

    def stream(
        self, call: Call, *, deadline: float | None, delivered: Delivered | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """One streaming call (see the module docstring for the event order).

        Close it with ``aclose()`` when stopping early: that closes the
        provider stream. A stream cancelled or closed early after its first
        chunk is billed, status ``cancelled``: by the provider's usage if it
        had reported it, else by what was ``delivered`` (the chunks the
        caller wrote out; without it, every chunk yielded), estimated
        (``router.delivered``). One cancelled before its first chunk bills
        nothing: no provider answer had begun.
        """
        events = self._stream(call, deadline=deadline, delivered=delivered)
        if call.operation == "responses":
            return translate_stream(events, ResponseEvents(call.body))
        return events

    async def _stream(
        self, call: Call, *, deadline: float | None, delivered: Delivered | None
    ) -> AsyncGenerator[StreamEvent, None]:
        async with (
            self._catalog.lease() as table,
            self._upstreams.bind(table, _route_for(table, call), call.upstreams()) as route,
        ):
            with _errors_for(call):
                committed = await self._failover.stream(
                    route, call.provider_request(), deadline=deadline, keys=call.keys(route)
                )
            info = committed.info
            usage: Usage | None = None
            # With generation_context, a final chunk waits for the next one; the last one
            # carries the context (the client's last chunk, as in seed 002's stream).
            hold = call.generation_context and call.operation == "chat.completions"
            held: bytes | None = None
            # What went out before the provider reported usage, to bill a cut stream by.
            yielded = Delivered()
            try:
                async with contextlib.aclosing(committed) as chunks:
                    yield info
                    async for chunk in chunks:
                        usage = chunk.usage or usage
                        if chunk.data is None:
                            continue
                        if usage is None:
                            yielded.add((chunk.data,))
                        if held is not None:
                            yield held
                            held = None
                        if hold and chunk.final:
                            held = chunk.data
                        else:
                            yield chunk.data
            except GatewayError as err:
                log.warning("stream on %s failed mid-way: %s", info.deployment, err.message)
                if usage is None:  # cut before the provider reported it: bill what went out
                    usage = yielded.usage(call.operation, call.body)
                await self._record_quietly(call, info, usage, "error")
                if held is not None:
                    yield held
                yield err
                return
            except (asyncio.CancelledError, GeneratorExit):
                if usage is None:  # the caller went away first: bill what reached it
                    sent = yielded if delivered is None else delivered
                    usage = sent.usage(call.operation, call.body)
                await asyncio.shield(self._record_quietly(call, info, usage, "cancelled"))
                raise
        try:
            event = await self._usage.record(call.payer, call.operation, info, usage)
        except GatewayError as err:
            yield err
            return
        if call.generation_context:
            context = context_json(table.prices, event)
            if held is not None:
                yield GenerationContext.on_chunk(context, held)
            elif call.operation == "responses":
                yield GenerationContext(context, None)
            else:  # a provider stream without a final chunk: none OpenAI would send carries it
                log.info("stream on %s had no final chunk for generation_context", info.deployment)
        yield usage or Usage()

    async def _record_quietly(
        self, call: Call, info: RouteInfo, usage: Usage | None, status: Status
    ) -> None:
        # The sink logs and counts its own failures; on these paths the caller
        # must see the provider's error or the cancellation, not ours.
        with contextlib.suppress(GatewayError):
            await self._usage.record(call.payer, call.operation, info, usage, status=status)
