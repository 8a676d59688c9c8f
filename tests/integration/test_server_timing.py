"""Every routed answer says where its time went, hop by hop (``Server-Timing``).

The parts come from two processes (edge and router) and must add up to the
gateway's own time plus the provider's: ``edge + router + publish`` is the
``x-switchyard-overhead-ms`` header, ``upstream`` the provider's share.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

pytestmark = pytest.mark.integration

HOPS = ["edge", "router", "publish", "upstream"]


def _timing(resp: httpx.Response) -> dict[str, float]:
    found = re.findall(r"([a-z]+);dur=([0-9.]+)", resp.headers["server-timing"])
    assert [name for name, _ in found] == HOPS, resp.headers["server-timing"]
    return {name: float(value) for name, value in found}


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_server_timing_splits_the_time_by_hop(base_url: str, api_key: str, stream: bool) -> None:
    body = {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": f"timing {uuid.uuid4().hex[:8]}"}],
        "stream": stream,
    }
    resp = httpx.post(
        f"{base_url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    timing = _timing(resp)
    own = timing["edge"] + timing["router"] + timing["publish"]
    # Each part is rounded to a microsecond; the header's overhead is total minus upstream.
    assert own == pytest.approx(float(resp.headers["x-switchyard-overhead-ms"]), abs=0.01)
    assert timing["upstream"] > 0 and timing["edge"] > 0 and timing["router"] > 0
    if stream:
        assert timing["publish"] == 0  # a stream publishes its usage after its last chunk
    else:
        assert timing["publish"] > 0  # a unary answer waits for the usage event's ack
