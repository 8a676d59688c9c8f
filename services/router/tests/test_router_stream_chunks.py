"""``RouterService.stream``: which chunks a chat stream holds back for ``generation_context``.

The provider is a ``Gated`` adapter: it yields its first chunk, then waits for
the test to open each later one, and says when it is waiting. While it waits,
the service has handled every chunk before (async generators hand a yielded
value straight to the consumer), so the test can tell a chunk that went out
from one held back. The usage sink can be gated the same way, to see the last
chunk wait for the usage event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway_common.catalog import Catalog, ProviderEntry
from gateway_common.events import UsageRecorded
from router.catalog import LiveCatalog
from router.failover import Failover, RouteInfo
from router.generation import GenerationContext
from router.metrics import RouterMetrics
from router.providers.base import (
    Completion,
    Operation,
    ProviderAdapter,
    ProviderRequest,
    StreamChunk,
    Usage,
)
from router.service import Call, RouterService, StreamEvent
from router.usage import Payer, Status, usage_event

from .scripted import Scripted

pytestmark = pytest.mark.timeout(10)

USAGE = Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)


def _chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> StreamChunk:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    data = orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [choice]})
    return StreamChunk(data, final=finish is not None)


ROLE = _chunk(0, {"role": "assistant", "content": ""})
HI = _chunk(0, {"content": "Hi"})
STOP = _chunk(0, {}, "stop")
USAGE_CHUNK = StreamChunk(b'{"id":"c1","choices":[],"usage":{}}', USAGE, final=True)
UNASKED_USAGE = StreamChunk(None, USAGE, final=True)


async def _until(probe: Any, what: str) -> None:
    """Poll ``probe()`` until true, for at most 2 s."""
    deadline = asyncio.get_running_loop().time() + 2
    while not probe():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


@dataclass
class Gated:
    """A provider adapter whose chunks after the first each wait for ``open_next``."""

    name: str
    steps: Sequence[StreamChunk]
    waiting_for: int = -1  # the step it waits to be opened for (-1: none)
    _gate: asyncio.Event = field(default_factory=asyncio.Event)

    def open_next(self) -> None:
        self.waiting_for = -1
        self._gate.set()

    async def complete(self, req: ProviderRequest, *, deadline: float | None) -> Completion:
        raise AssertionError("streams only")

    async def stream(
        self, req: ProviderRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamChunk, None]:
        for n, step in enumerate(self.steps):
            if n:
                self._gate.clear()
                self.waiting_for = n
                await self._gate.wait()
            yield step

    async def list_models(self) -> tuple[str, ...]:
        return ()

    async def aclose(self) -> None:
        pass


@dataclass
class Sink:
    """A usage sink that builds the event; with ``gate`` it waits for it to be set first."""

    gate: asyncio.Event | None = None
    recording: bool = False
    events: list[UsageRecorded] = field(default_factory=list)

    async def record(
        self,
        payer: Payer,
        operation: Operation,
        route: RouteInfo,
        usage: Usage | None,
        *,
        status: Status = "ok",
    ) -> UsageRecorded | None:
        self.recording = True
        if self.gate is not None:
            await self.gate.wait()
        if usage is None:
            return None
        event = usage_event(payer, operation, route, usage, status=status)
        self.events.append(event)
        return event


@dataclass
class Run:
    """One stream consumed in a task; ``events`` fills as the service yields."""

    adapter: Gated
    sink: Sink
    events: list[StreamEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def chunks(self) -> list[bytes]:
        return [e for e in self.events if isinstance(e, bytes)]

    async def step(self) -> None:
        """Open the provider's next chunk; return once the service asks for the one after."""
        n = self.adapter.waiting_for
        self.adapter.open_next()
        await _until(
            lambda: self.adapter.waiting_for > n or (self.task is not None and self.task.done()),
            f"the provider to be asked for chunk {n + 1}",
        )

    async def finish(self) -> list[StreamEvent]:
        assert self.task is not None
        if not self.task.done():
            self.adapter.open_next()
        await asyncio.wait_for(self.task, 2)
        return self.events


@pytest.fixture
async def service_for(catalog_file: Path, metrics: RouterMetrics) -> AsyncGenerator[Any, None]:
    services: list[LiveCatalog] = []

    async def make(adapter: Gated, sink: Sink) -> RouterService:
        def build(
            catalog: Catalog, *, reuse: Mapping[str, tuple[ProviderEntry, ProviderAdapter]]
        ) -> Mapping[str, ProviderAdapter]:
            return {"primary": adapter, "backup": Scripted("backup")}

        live = LiveCatalog(catalog_file, build, metrics)
        await live.load()
        services.append(live)
        return RouterService(live, Failover(metrics), sink)

    yield make
    for live in services:
        await live.aclose()


async def _start(
    service_for: Any,
    steps: Sequence[StreamChunk],
    *,
    context: bool = True,
    sink: Sink | None = None,
) -> Run:
    adapter = Gated("primary", steps)
    run = Run(adapter, sink or Sink())
    service: RouterService = await service_for(adapter, run.sink)
    body = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}
    call = Call(
        "chat.completions",
        "chat-model",
        body,
        Payer("req-1", "proj-1", "key-1", False),
        generation_context=context,
    )

    async def consume() -> None:
        async with contextlib.aclosing(service.stream(call, deadline=None)) as events:
            async for event in events:
                run.events.append(event)

    run.task = asyncio.create_task(consume())
    await _until(lambda: adapter.waiting_for == 1, "the first chunk")
    return run


def _context(event: StreamEvent) -> dict[str, Any]:
    assert isinstance(event, GenerationContext) and event.chunk is not None
    return dict(orjson.loads(event.chunk))


async def test_content_goes_out_at_once_and_a_finish_waits_for_the_next_chunk(
    service_for: Any,
) -> None:
    run = await _start(service_for, [ROLE, HI, STOP, UNASKED_USAGE])
    assert run.chunks() == [ROLE.data]  # out before the provider sent anything more
    await run.step()
    assert run.chunks() == [ROLE.data, HI.data]
    await run.step()
    assert run.chunks() == [ROLE.data, HI.data]  # STOP is final: held

    events = await run.finish()

    assert [type(e).__name__ for e in events] == [
        "RouteInfo",
        "bytes",
        "bytes",
        "GenerationContext",
        "Usage",
    ]
    last = _context(events[3])
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert [i["sku"] for i in last["generation_context"]["generated_usage"]] == [
        "inference.chat_completions.in",
        "inference.chat_completions.out",
    ]
    assert events[-1] == USAGE


async def test_the_usage_chunk_carries_it_and_releases_the_finish(service_for: Any) -> None:
    run = await _start(service_for, [ROLE, HI, STOP, USAGE_CHUNK])
    await run.step()
    await run.step()
    events = await run.finish()

    chunks = [e for e in events if isinstance(e, bytes)]
    assert chunks == [ROLE.data, HI.data, STOP.data]
    last = _context(events[-2])
    assert last["choices"] == [] and "generation_context" in last


async def test_the_last_chunk_waits_for_the_usage_event(service_for: Any) -> None:
    gate = asyncio.Event()
    run = await _start(service_for, [ROLE, STOP, UNASKED_USAGE], sink=Sink(gate))
    await run.step()
    run.adapter.open_next()
    await _until(lambda: run.sink.recording, "the usage event to be recorded")
    assert run.chunks() == [ROLE.data]
    assert not any(isinstance(e, GenerationContext) for e in run.events)

    gate.set()
    events = await run.finish()

    assert _context(events[-2])["choices"][0]["finish_reason"] == "stop"
    assert len(run.sink.events) == 1


async def test_several_choices_each_finish_in_their_place(service_for: Any) -> None:
    stop_0, hi_1, stop_1 = (
        _chunk(0, {}, "stop"),
        _chunk(1, {"content": "Yo"}),
        _chunk(1, {}, "stop"),
    )
    run = await _start(service_for, [ROLE, stop_0, hi_1, stop_1, UNASKED_USAGE])
    await run.step()
    assert run.chunks() == [ROLE.data]
    await run.step()
    assert run.chunks() == [ROLE.data, stop_0.data, hi_1.data]  # the next chunk released it
    await run.step()
    assert run.chunks() == [ROLE.data, stop_0.data, hi_1.data]  # stop_1 is held in turn
    events = await run.finish()

    assert [e for e in events if isinstance(e, bytes)] == [ROLE.data, stop_0.data, hi_1.data]
    assert _context(events[-2])["choices"][0]["index"] == 1


async def test_without_the_flag_nothing_is_held_and_nothing_is_added(service_for: Any) -> None:
    run = await _start(service_for, [ROLE, HI, STOP, UNASKED_USAGE], context=False)
    await run.step()
    await run.step()
    assert run.chunks() == [ROLE.data, HI.data, STOP.data]

    events = await run.finish()

    assert run.chunks() == [ROLE.data, HI.data, STOP.data]
    assert not any(isinstance(e, GenerationContext) for e in events)


async def test_a_stream_without_a_final_chunk_gets_no_added_chunk(service_for: Any) -> None:
    run = await _start(service_for, [ROLE, HI, UNASKED_USAGE])
    await run.step()
    events = await run.finish()

    assert run.chunks() == [ROLE.data, HI.data]
    assert not any(isinstance(e, GenerationContext) for e in events)
    assert events[-1] == USAGE
