"""Extra SKUs the edge sends on ``CompleteRequest.sku_usage`` (a gateway's retrieval and
routing) reach the usage event, priced from the catalog's ``skus`` before the tokens; the
request's ``metadata`` reaches it too."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson

from gateway.router.v1 import router_pb2
from gateway_common.catalog import load_catalog
from gateway_common.events import SkuQuantity
from gateway_common.pricing import PriceIndex
from router.failover import RouteInfo
from router.handlers import decode
from router.providers.base import Usage
from router.usage import usage_event

CATALOG = Path(__file__).resolve().parents[3] / "config" / "catalog.yaml"


def test_sku_usage_goes_from_the_request_to_the_event_and_is_priced() -> None:
    request = router_pb2.CompleteRequest(
        operation=router_pb2.OPERATION_CHAT_COMPLETIONS,
        model="mock-chat",
        body=orjson.dumps({"model": "mock-chat", "messages": []}),
        project_id="p",
        sku_usage=[
            router_pb2.SkuUsage(sku="rag.retrieval.queries", quantity=1),
            router_pb2.SkuUsage(sku="inference.resolving.routing_complexity.in", quantity=276),
            router_pb2.SkuUsage(sku="inference.resolving.routing_complexity.out", quantity=1),
        ],
        metadata={"foo": "bar"},
    )
    call = decode(request)
    route = RouteInfo("fake", "fake/mock-chat", 1, "mock-chat", "mock-chat", 1.0)
    event = usage_event(call.payer, "chat.completions", route, Usage(3, 4, 7), status="ok")
    assert event.metadata == {"foo": "bar"}
    assert event.sku_usage == (
        SkuQuantity(sku="rag.retrieval.queries", quantity=1),
        SkuQuantity(sku="inference.resolving.routing_complexity.in", quantity=276),
        SkuQuantity(sku="inference.resolving.routing_complexity.out", quantity=1),
    )
    items = PriceIndex(load_catalog(CATALOG)).price(event)
    skus = [item.sku for item in items]
    assert skus[:3] == [
        "rag.retrieval.queries",
        "inference.resolving.routing_complexity.in",
        "inference.resolving.routing_complexity.out",
    ]
    assert items[1].amount == Decimal("0.0000207")  # seed 002's figure: 276 x 7.5e-8
