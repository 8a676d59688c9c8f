"""Runtime fault switches: a deployment at ``/fault/switch=<name>/v1`` is broken and healed live."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fakeprovider import FakeProviderApp
from fakeprovider.faults import Faults, FaultSpecError, Switchboard

pytestmark = pytest.mark.timeout(10)

CHAT = {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}
SWITCHED = "/fault/switch=primary/v1/chat/completions"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=FakeProviderApp(history=10))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


async def test_an_unset_switch_is_healthy(client: httpx.AsyncClient) -> None:
    assert (await client.post(SWITCHED, json=CHAT)).status_code == 200
    assert (await client.get("/_fake/switches")).json() == {"switches": {}}


async def test_set_then_heal(client: httpx.AsyncClient) -> None:
    put = await client.put("/_fake/switches/primary", json={"spec": "status=503,retry_after=1"})
    assert put.json() == {"switches": {"primary": "status=503,retry_after=1"}}
    broken = await client.post(SWITCHED, json=CHAT)
    assert (broken.status_code, broken.headers["retry-after"]) == (503, "1")
    assert (await client.post("/fault/switch=other/v1/chat/completions", json=CHAT)).is_success

    await client.delete("/_fake/switches/primary")
    assert (await client.post(SWITCHED, json=CHAT)).status_code == 200


async def test_path_spec_and_headers_override_the_switch(client: httpx.AsyncClient) -> None:
    await client.put("/_fake/switches/primary", json={"spec": "status=500"})
    by_path = await client.post("/fault/switch=primary,status=429/v1/chat/completions", json=CHAT)
    by_header = await client.post(SWITCHED, json=CHAT, headers={"x-fake-status": "502"})
    assert (by_path.status_code, by_header.status_code) == (429, 502)


async def test_delete_all(client: httpx.AsyncClient) -> None:
    await client.put("/_fake/switches/a", json={"spec": "status=500"})
    await client.put("/_fake/switches/b", json={"spec": "reset=1"})
    assert (await client.delete("/_fake/switches")).json() == {"switches": {}}


@pytest.mark.parametrize(
    "body",
    [{"spec": "status=abc"}, {"spec": "nope=1"}, {"spec": "switch=b"}, {"other": 1}, [1]],
)
async def test_bad_specs_are_refused(client: httpx.AsyncClient, body: object) -> None:
    response = await client.put("/_fake/switches/a", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_fault_spec"
    assert (await client.get("/_fake/switches")).json() == {"switches": {}}


async def test_a_switch_needs_a_name_and_a_method(client: httpx.AsyncClient) -> None:
    assert (await client.put("/_fake/switches", json={"spec": ""})).status_code == 405
    assert (await client.post("/_fake/switches/a", json={"spec": ""})).status_code == 405


def test_switchboard_resolves_into_faults() -> None:
    board = Switchboard()
    board.set("x", "status=500,delay_ms=5")
    faults = Faults.from_request("switch=x", {}, board.specs)
    assert (faults.status, faults.delay_ms) == (500, 5)
    board.clear("x")
    assert Faults.from_request("switch=x", {}, board.specs) == Faults()
    with pytest.raises(FaultSpecError):
        board.set("", "status=500")
