"""Hostile input over real sockets on the stack (issue 19 point 10, drill d10's cases).

Each case of ``devtools.drills.d10_hostile`` talks raw HTTP/1.1 to the stack's edge:
10 MiB bodies (Content-Length and chunked) answered 413 before they are sent in full,
invalid UTF-8, deep JSON, CR/LF injection in ``X-Provider-Key`` (OpenAI's shape, and
Anthropic's under ``/v1/messages``), and a slow-loris client answered 408 and closed
within the edge's 10 s header timeout. Never a 5xx, never a hang.
"""

from __future__ import annotations

import asyncio

import pytest

from devtools.drills import d10_hostile
from devtools.stack import Stack

# Generous: the first test also pays for the session stack start on a loaded machine;
# every case has its own 30 s deadline (d10_hostile._CASE_DEADLINE_S).
pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("case", sorted(d10_hostile.CASES))
def test_hostile_input_is_answered_typed(stack: Stack, case: str) -> None:
    assert stack.config.api_key is not None
    edge = d10_hostile.target(stack.base_url, stack.config.api_key)
    verdict = asyncio.run(d10_hostile.run_case(edge, case))
    assert verdict.ok, verdict
    assert verdict.status is not None and verdict.status < 500, verdict


def test_hostile_input_does_not_starve_the_edge(stack: Stack) -> None:
    """While slow-loris clients hold half-sent heads, normal requests are served."""
    assert stack.config.api_key is not None
    edge = d10_hostile.target(stack.base_url, stack.config.api_key)

    async def scenario() -> list[d10_hostile.Verdict]:
        loris = [asyncio.create_task(d10_hostile.run_case(edge, "slow-loris")) for _ in range(20)]
        await asyncio.sleep(0.5)
        served = [await d10_hostile.run_case(edge, "invalid-utf8") for _ in range(5)]
        return served + list(await asyncio.gather(*loris))

    verdicts = asyncio.run(scenario())
    assert all(v.ok for v in verdicts), [v for v in verdicts if not v.ok]
