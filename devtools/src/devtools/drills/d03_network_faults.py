"""d03: network faults between the services and NATS, and between router and provider.

The drill stack's router, billing and edge reach NATS, and the router reaches
``drill-net``'s provider, through the kit's fault proxies (``devtools.faultproxy``).
Load: paced chat requests (short 4 clients at ~8/s, full 8 at ~30/s): ``mock-chat``
70 % unary / 30 % streamed, every fourth a unary ``drill-net``. Faults, in order,
with the load running:

1. lost consumer acks: billing's client -> NATS bytes dropped (its acks are lost,
   JetStream redelivers after the ack wait; billing must drop the copies);
2. lost publish acks: NATS -> router bytes dropped (the router's publish reaches the
   stream, its ack does not; it retries with the same ``Nats-Msg-Id``);
3. router -> provider: latency, then resets (new and open connections);
4. a NATS blackhole for router, billing and edge (short 4 s, full 30 s), longer
   than the router's publish retry window (``kit.PUBLISH_WINDOW_S``): answered
   calls' usage goes to the router's outbox and is replayed when NATS returns.

Pass: no request hangs past its deadline, each succeeds or ends with a typed
502/503 (OpenAI's error object); the usage stream holds one message per event
id; exactly one ledger entry per answered request, none for a refused one, tokens
equal to the usage the client received and the ledger total equal to that usage at
the catalog's prices; at least one publish retried and one event spooled, and
every spooled event replayed; in the full form also at least one consumer
redelivery (the short form's single 1 s window of lost billing acks may fall
where billing had no ack in flight: a clean CI run saw 0, so there it is only
reported).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import nats
import orjson
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from devtools.drills.base import DrillResult
from devtools.drills.d01_billing_kill import _Answer, _one, _settled_ledger
from devtools.drills.kit import DrillStack, check_ledger, drill_stack
from gateway_common import subjects

_T = TypeVar("_T")

NAME = "d03 network faults"
_DEADLINE_S = 20.0
_SETTLE_S = 1.0
#: What a request may end with besides success: a typed 502/503 (``_one``'s verdicts).
_TYPED = frozenset({"status 502", "status 503"})


@dataclass(frozen=True, slots=True)
class _Form:
    clients: int
    rate: float
    ack_faults: int  # rounds of each lost-ack fault
    fault_s: float  # each lost-ack fault and each provider fault lasts this long
    blackhole_s: float


_SHORT = _Form(clients=4, rate=8.0, ack_faults=1, fault_s=1.0, blackhole_s=4.0)
_FULL = _Form(clients=8, rate=30.0, ack_faults=3, fault_s=3.0, blackhole_s=30.0)


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    form = _FULL if full else _SHORT
    if kit is not None:
        return asyncio.run(_drill(kit, form))
    with drill_stack() as own:
        return asyncio.run(_drill(own, form))


async def _drill(kit: DrillStack, form: _Form) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    proxies = kit.proxies
    nats_proxies = [proxies[f"nats-{svc}"] for svc in ("router", "billing", "edge")]
    first_seq = await _stream_last_seq(kit) + 1
    before = await _counters(kit)
    answers: list[_Answer] = []
    typed_during: Counter[str] = Counter()  # typed 502/503s by the fault in force at the start
    current = ["no fault"]
    stop = asyncio.Event()
    started = time.monotonic()
    done: list[str] = []

    async def client(http: httpx.AsyncClient, worker: int) -> None:
        n = 0
        while not stop.is_set():
            index = n * form.clients + worker
            n += 1
            await asyncio.sleep(max(0.0, started + index / form.rate - time.monotonic()))
            during = current[0]
            if index % 4 == 3:
                answer = await _one(http, marker, index, "drill-net", stream=False)
            else:
                answer = await _one(http, marker, index)
            answers.append(answer)
            if answer.verdict in _TYPED:
                typed_during[during] += 1

    async def fault(name: str, seconds: float, on: Callable[[], None]) -> None:
        current[0] = name
        on()
        await asyncio.sleep(seconds)
        proxies_clear()
        current[0] = "no fault"
        done.append(name)
        await asyncio.sleep(_SETTLE_S)  # the services reconnect; load in between

    def proxies_clear() -> None:
        for proxy in proxies.values():
            proxy.clear()

    async def faults() -> None:
        await asyncio.sleep(_SETTLE_S)  # load before the first fault
        for _ in range(form.ack_faults):
            await fault(
                "billing acks lost",
                form.fault_s,
                lambda: proxies["nats-billing"].set(blackhole="up"),
            )
            await fault(
                "publish acks lost",
                form.fault_s,
                lambda: proxies["nats-router"].set(blackhole="down"),
            )
        await fault(
            "provider +300 ms", form.fault_s, lambda: proxies["provider"].set(latency_s=0.3)
        )
        await fault("provider resets", form.fault_s, lambda: proxies["provider"].set(reset=True))
        await fault(f"NATS blackhole {form.blackhole_s:g} s", form.blackhole_s, blackhole_nats)

    def blackhole_nats() -> None:
        for proxy in nats_proxies:
            proxy.set(blackhole="both")

    async with httpx.AsyncClient(
        base_url=kit.base_url, headers=kit.headers, timeout=_DEADLINE_S
    ) as http:
        tasks = [asyncio.create_task(client(http, w)) for w in range(form.clients)]
        try:
            await faults()
        finally:
            proxies_clear()
            stop.set()
            await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started

    answered = [a for a in answers if a.verdict == "ok"]
    refused = [a for a in answers if a.verdict != "ok"]
    ids = [a.request_id for a in answers if a.request_id]
    after = await _wait_replayed(kit)
    rows = await _settled_ledger(kit, ids, len(answered))
    stream_ids, unkeyed = await _stream_event_ids(kit, first_seq)
    delta = {name: after[name] - before[name] for name in after}

    check = check_ledger(rows, answered, [a.request_id for a in refused])
    stream_dupes = len(stream_ids) - len(set(stream_ids))
    bad = Counter(a.verdict for a in refused if a.verdict not in _TYPED)
    typed = ", ".join(f"{n} during {fault}" for fault, n in typed_during.items()) or "0"
    passed = (
        len(answered) > 0
        and not bad
        and check.exact(len(answered), len(rows))
        and stream_dupes == 0
        and unkeyed == 0
        and delta["retries"] > 0
        and (delta["redeliveries"] > 0 or form is _SHORT)
        and delta["spooled"] > 0
        and delta["replayed"] >= delta["spooled"]
    )
    return DrillResult(
        name=NAME,
        load=(
            f"{len(answers)} requests ({form.clients} clients, 1/4 on drill-net), {elapsed:.0f} s"
        ),
        faults=", ".join(done),
        figure=(
            f"answered {len(answered)}, typed 502/503 {typed}, hangs or other {sum(bad.values())}; "
            f"billed once: {check.once}/{len(answered)}; duplicates: {check.duplicates}; "
            f"refused but billed: {check.refused_billed}; token mismatches: "
            f"{check.token_mismatches}; ledger {check.ledger_total.normalize()} USD vs clients' "
            f"{check.client_total.normalize()} USD; stream: {len(stream_ids)} messages, "
            f"{stream_dupes} duplicate event ids, {unkeyed} without Nats-Msg-Id; "
            f"publish retries {delta['retries']:.0f}, "
            f"redeliveries {delta['redeliveries']:.0f} (billing dropped "
            f"{delta['duplicates']:.0f}), outbox spooled {delta['spooled']:.0f} / "
            f"replayed {delta['replayed']:.0f}"
        ),
        passed=passed,
        detail="; ".join(f"{v} x{c}" for v, c in bad.items()),
    )


async def _stream_last_seq(kit: DrillStack) -> int:
    return (await _on_stream(kit, lambda js: js.stream_info(subjects.USAGE_STREAM))).state.last_seq


async def _stream_event_ids(kit: DrillStack, first_seq: int) -> tuple[list[str], int]:
    """The event id of every usage message from ``first_seq`` on (the run's), and how many
    of them came without a ``Nats-Msg-Id`` equal to it."""

    async def read(js: JetStreamContext) -> tuple[list[str], int]:
        last = (await js.stream_info(subjects.USAGE_STREAM)).state.last_seq
        ids, unkeyed = [], 0
        for seq in range(first_seq, last + 1):
            msg = await js.get_msg(subjects.USAGE_STREAM, seq)
            assert msg.data is not None
            event_id = str(orjson.loads(msg.data)["event_id"])
            ids.append(event_id)
            unkeyed += (msg.headers or {}).get("Nats-Msg-Id") != event_id
        return ids, unkeyed

    return await _on_stream(kit, read)


async def _on_stream(kit: DrillStack, use: Callable[[JetStreamContext], Awaitable[_T]]) -> _T:
    nc = await nats.connect(kit.stack.nats_url)  # directly, not through a proxy
    try:
        return await use(nc.jetstream())
    finally:
        await nc.close()


async def _counters(kit: DrillStack) -> dict[str, float]:
    """The router's publish retries and outbox counts, billing's redeliveries and dupes."""
    ports = kit.stack.config.ports
    async with httpx.AsyncClient(timeout=5) as http:
        router = (await http.get(f"http://127.0.0.1:{ports.router_metrics}/metrics")).text
        billing = (await http.get(f"http://127.0.0.1:{ports.billing_metrics}/metrics")).text
    return {
        "retries": _sample(router, "switchyard_router_usage_publish_retries_total"),
        "spooled": _sample(router, "switchyard_router_usage_outbox_total", event="spooled"),
        "replayed": _sample(router, "switchyard_router_usage_outbox_total", event="replayed"),
        "redeliveries": _sample(billing, "switchyard_jetstream_redeliveries_total"),
        "duplicates": _sample(billing, "switchyard_billing_events_duplicate_total"),
    }


async def _wait_replayed(kit: DrillStack, timeout_s: float = 60.0) -> dict[str, float]:
    """The counters once the router replayed everything it spooled (or the wait ran out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counters = await _counters(kit)
        if counters["replayed"] >= counters["spooled"] or time.monotonic() > deadline:
            return counters
        await asyncio.sleep(0.2)


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when absent)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
