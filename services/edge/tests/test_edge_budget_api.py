"""Budget admission through the edge's HTTP API (scripted router, the session's real billing).

What the client sees when a budget or credits refuse (OpenAI's 429
``insufficient_quota``; seed 003's 403), that an admitted call carries its
lease to the router, and that a stream settles at the usage it reported.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import nats
import orjson
import pytest
from nats.aio.msg import Msg

from edge import EdgeSettings, create_app
from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2
from gateway_common import billing_api as wire
from gateway_common import subjects

from .support import (
    KEYS,
    RouterServer,
    auth,
    billing_request,
    chunk_event,
    eventually,
    route_event,
    seed_keys,
)

pytestmark = pytest.mark.timeout(30)

BODY = orjson.dumps(
    {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
)
#: config/catalog.yaml's mock-chat: input 0.00000015, output 0.0000006 per token.
IN, OUT = Decimal("0.00000015"), Decimal("0.0000006")
WORST = IN * len(BODY) + OUT * 10


async def test_a_budget_too_small_is_refused_as_openai_does(
    settings: EdgeSettings, router: RouterServer
) -> None:
    await seed_keys(settings.resolved_database_url())
    # No refusal is reused, so the raised budget applies at once.
    app = create_app(settings.model_copy(update={"budget_refusal_ttl_s": 0.0}))
    async with app.router.lifespan_context(app):
        project_id = app.state.edge.keys.authenticate(f"Bearer {KEYS['all'][0]}").project_id
        await billing_request(
            settings.nats_url,
            subjects.BILLING_BUDGET_SET,
            wire.BudgetSet(project_id=project_id, limit=WORST - Decimal("0.000000001")),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            refused = await client.post("/v1/chat/completions", content=BODY, headers=auth())
            assert refused.status_code == 429
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
            assert router.servicer.calls == []
            # Without max_tokens the model's max_output_tokens (16384) is reserved: refused too.
            await billing_request(
                settings.nats_url,
                subjects.BILLING_BUDGET_SET,
                wire.BudgetSet(project_id=project_id, limit=WORST * 2),
            )
            admitted = await client.post("/v1/chat/completions", content=BODY, headers=auth())
            assert admitted.status_code == 200, admitted.text
            unbounded = orjson.dumps({**orjson.loads(BODY), "max_tokens": None})
            resp = await client.post("/v1/chat/completions", content=unbounded, headers=auth())
            assert resp.status_code == 429
    ((request, _),) = router.servicer.calls
    assert request.budget_lease_id


async def test_exhausted_credits_are_a_403(settings: EdgeSettings, router: RouterServer) -> None:
    await seed_keys(settings.resolved_database_url())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        project_id = app.state.edge.keys.authenticate(f"Bearer {KEYS['all'][0]}").project_id
        topup = wire.CreditsTopUp(project_id=project_id, topup_id="t", amount=WORST / 2)
        await billing_request(settings.nats_url, subjects.BILLING_CREDITS_TOPUP, topup)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            resp = await client.post("/v1/chat/completions", content=BODY, headers=auth())
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == "Credits exhausted."


async def test_a_stream_settles_at_its_reported_usage(
    settings: EdgeSettings, router: RouterServer
) -> None:
    usage = types_pb2.Usage(prompt_tokens=7, completion_tokens=3)
    router.servicer.stream_events = [
        route_event(),
        chunk_event(b'{"n":1}'),
        router_pb2.StreamEvent(usage=usage),
    ]
    await seed_keys(settings.resolved_database_url())
    nc = await nats.connect(settings.nats_url)
    releases: list[wire.LeaseRelease] = []

    async def observe(msg: Msg) -> None:
        releases.append(wire.LeaseRelease.model_validate_json(msg.data))

    await nc.subscribe(subjects.BILLING_BUDGET_RELEASE, cb=observe)
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            project_id = app.state.edge.keys.authenticate(f"Bearer {KEYS['all'][0]}").project_id
            budget = wire.BudgetSet(project_id=project_id, limit=WORST * 100)
            await billing_request(settings.nats_url, subjects.BILLING_BUDGET_SET, budget)
            stream_body = orjson.dumps({**orjson.loads(BODY), "stream": True})
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
                resp = await client.post(
                    "/v1/chat/completions", content=stream_body, headers=auth()
                )
                assert resp.status_code == 200
                assert resp.text.endswith("data: [DONE]\n\n")

        # Shutting down released the lease, reporting what the stream cost. On a busy
        # machine billing's budget announcement can reach the edge while its first lease
        # request is on its way: that answer is released unused (consumed 0) and the
        # request renews, so a zero release may come first; exactly one carries the cost.
        cost = IN * 7 + OUT * 3

        async def released() -> bool:
            return sum(r.consumed for r in releases) >= cost

        await eventually(released)
        assert [r.consumed for r in releases if r.consumed] == [cost]
    finally:
        await nc.close()
