"""d07, live: per-minute and per-day limits across two edges, and their fail modes.

The property tests (``d07_properties``) check the limiter and the leases against
a model with a fake clock; this checks the wired product on the drill stack plus
a second edge process (``kit.second_edge``), on the real clock.

Load: a project of its own with key A (``per_minute`` 6, ``per_day`` 9) and key
D (``per_day`` 4); concurrent bursts of 3x the limit alternate over the two
edges. Full form: A's burst a few seconds before a minute ends and again once
its Retry-After has passed (in the next minute); short form: one burst (no
boundary wait). Checked: each minute admits at least 1 and at most 6 of A's
requests on the two edges together, the day at most 9 (the second minute is cut
by the day); D (a single limit, so exact) admits exactly 4 of its 12; every
refusal is a 429 ``rate_limit_exceeded`` in OpenAI's shape whose Retry-After
is true (its minute, or for a per-day refusal its UTC day, ends within it, and
not more than a second later). A has two limits, so it is not exact: a request
may be refused because another's increment, rolled back a moment later, was
seen over a limit (docs/architecture.md, Rate limits); the figure shows how many.

Faults (both forms), on the kit's NATS fault proxies:

* billing's NATS link blackholed (the budget owner unreachable): every request
  of a budgeted project without a lease is a typed 503, never a hang; the
  project last seen unlimited is still admitted (``GATEWAY_BUDGET_FAIL_OPEN_S``).
* the edges' NATS link blackholed (the limiter's counters unreachable): every
  request of key A, whose minute is full, is admitted (rate limits fail open
  by default, ``GATEWAY_RATELIMIT_FAIL_CLOSED`` unset), and after the fault
  A is refused again (nothing was counted meanwhile, the window is still full).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from devtools.drills.base import DrillResult
from devtools.drills.kit import DrillStack, on_kit, second_edge

NAME = "d07 live limits"
PER_MINUTE, PER_DAY, DAY_ONLY = 6, 9, 4
_CONCURRENCY = 8
_FAULT_REQUESTS = {False: 4, True: 20}
_RECOVER_S = 45.0
_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class _Shot:
    """One request as its client saw it (wall-clock times)."""

    sent: float
    done: float
    status: int
    retry_after: int | None
    typed: bool
    """The body is OpenAI's error object (a refusal) or a completion (a 200)."""

    @property
    def window(self) -> int | None:
        """The minute it was decided in, or None when it straddled a boundary."""
        first, last = math.floor(self.sent / 60), math.floor(self.done / 60)
        return first if first == last else None


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (or a drill stack of its own) plus a second edge."""

    def drill(on: DrillStack) -> DrillResult:
        with second_edge(on.stack) as other:
            return asyncio.run(_drill(on, [on.base_url, other], full))

    return on_kit(kit, drill)


async def _drill(kit: DrillStack, origins: list[str], full: bool) -> DrillResult:
    marker = uuid.uuid4().hex[:8]
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=_TIMEOUT_S) as http:
        admin = _Admin(http, kit)
        project = await admin.project(f"d07-{marker}")
        key_a = await admin.key(project, {"per_minute": PER_MINUTE, "per_day": PER_DAY})
        key_d = await admin.key(project, {"per_day": DAY_ONLY})
        key_free = await admin.key(project, None)
        budgeted = await admin.project(f"d07b-{marker}")
        key_b = await admin.key(budgeted, None)
        await admin.budget(budgeted, key_b)
        for key in (key_a, key_d, key_free):
            await _known(http, origins, key)
        await _recovered(http, origins, key_free, 200)  # seen unlimited by both edges

        unchecked_before = await _unchecked(http, origins)
        # A burst needs a few s of one minute (short), or starts 5 s before its end (full).
        await _wall(lambda s: 54.0 <= s < 55.5 if full else s < 52.0, 70.0)
        first = await _burst(http, origins, key_a, 3 * PER_MINUTE, marker)
        windows = [first]
        if full:
            # A refusal may name the day (both windows refused it, see _check_windows):
            # wait out the minute's refusals only.
            ready_at = max(s.done + (s.retry_after or 0) for s in first if _minute_retry(s))
            await _wall_until(min(ready_at, time.time() + 61))
            windows.append(await _burst(http, origins, key_a, 3 * PER_MINUTE, marker))
        day = await _burst(http, origins, key_d, 3 * DAY_ONLY, marker)
        unchecked = await _unchecked(http, origins) - unchecked_before
        problems += _check_windows(windows, full) + _check_day(day)
        if unchecked:  # the bursts' figures would count fail-open admissions, not the limiter
            problems.append(f"{unchecked} limit checks unanswered in time during the bursts")

        n = _FAULT_REQUESTS[full]
        billing_down = await _during(
            kit,
            "nats-billing",
            lambda: asyncio.gather(
                _burst(http, origins, key_b, n, marker), _burst(http, origins, key_free, 2, marker)
            ),
        )
        budget_refused, free_served = billing_down
        await _recovered(http, origins, key_b, 200)
        limiter_down = await _during(
            kit, "nats-edge", lambda: _burst(http, origins, key_a, n, marker)
        )
        await _recovered(http, origins, key_a, 429)
    problems += _check_faults(budget_refused, free_served, limiter_down)

    admitted = [sum(s.status == 200 for s in shots) for shots in windows]
    figure = (
        f"key A ({PER_MINUTE}/min, {PER_DAY}/day) admitted per minute: "
        f"{' then '.join(f'{a}/{len(w)}' for a, w in zip(admitted, windows, strict=True))}"
        f"{' (across a minute boundary)' if full else ''}; key D ({DAY_ONLY}/day) admitted "
        f"{sum(s.status == 200 for s in day)}/{len(day)}; limits unchecked (fail open) "
        f"during the bursts: {unchecked}; Retry-After true: "
        f"{sum(_true_retry(s) for shots in [*windows, day] for s in shots if s.status == 429)}"
        f"/{sum(s.status == 429 for shots in [*windows, day] for s in shots)}; billing "
        f"unreachable: budgeted typed 503 {sum(_is(s, 503) for s in budget_refused)}/"
        f"{len(budget_refused)}, unbudgeted admitted {sum(_is(s, 200) for s in free_served)}/"
        f"{len(free_served)}; limiter unreachable: full minute admitted (fail open) "
        f"{sum(_is(s, 200) for s in limiter_down)}/{len(limiter_down)}; hangs 0"
    )
    return DrillResult(
        name=NAME,
        load=f"{sum(map(len, [*windows, day, budget_refused, free_served, limiter_down]))} "
        f"requests over 2 edges, {_CONCURRENCY} concurrent",
        faults="billing's NATS link blackholed; the edges' NATS link blackholed",
        figure=figure,
        passed=not problems,
        detail="; ".join(problems[:5]),
    )


class _Admin:
    """The admin API calls the drill needs (operator token; a project key for its budget)."""

    def __init__(self, http: httpx.AsyncClient, kit: DrillStack) -> None:
        assert kit.stack.config.admin_token is not None
        self._http, self._base = http, kit.base_url
        self._operator = {"Authorization": f"Bearer {kit.stack.config.admin_token}"}

    async def project(self, name: str) -> str:
        resp = await self._http.post(
            f"{self._base}/admin/projects", json={"name": name}, headers=self._operator
        )
        resp.raise_for_status()
        return str(resp.json()["id"])

    async def key(self, project: str, limits: dict[str, int] | None) -> str:
        resp = await self._http.post(
            f"{self._base}/admin/projects/{project}/keys",
            json={
                "name": "d07",
                "scopes": ["chat", "admin"],
                "rate_limits": limits,
                "allowed_models": ["mock-chat"],
            },
            headers=self._operator,
        )
        resp.raise_for_status()
        return str(resp.json()["key"])

    async def budget(self, project: str, key: str) -> None:
        resp = await self._http.put(
            f"{self._base}/admin/projects/{project}/budget",
            json={"limit": "1000.00"},
            headers=_bearer(key),
        )
        resp.raise_for_status()


async def _unchecked(http: httpx.AsyncClient, origins: list[str]) -> int:
    """Limits the edges left unchecked so far (their counter did not answer in time),
    summed over ``origins`` (``switchyard_edge_ratelimit_unavailable_total``)."""
    total = 0.0
    for origin in origins:
        resp = await http.get(f"{origin}/metrics")
        resp.raise_for_status()
        for line in resp.text.splitlines():
            if line.startswith("switchyard_edge_ratelimit_unavailable_total"):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _known(http: httpx.AsyncClient, origins: list[str], key: str) -> None:
    """Wait until every edge knows ``key``: another model is refused 403 by its
    ``allowed_models``, before the limiter counts anything."""
    for origin in origins:
        deadline = time.monotonic() + _RECOVER_S
        while True:
            resp = await _post(http, origin, key, "probe", model="drill-chain")
            if resp is not None and resp.status_code == 403:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"d07: {origin} does not know the drill's key")
            await asyncio.sleep(0.2)


async def _post(
    http: httpx.AsyncClient, origin: str, key: str, text: str, model: str = "mock-chat"
) -> httpx.Response | None:
    """A chat request; None when it got no answer in ``_TIMEOUT_S`` (a hang)."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    try:
        return await http.post(f"{origin}/v1/chat/completions", json=body, headers=_bearer(key))
    except httpx.TimeoutException:
        return None


async def _shot(http: httpx.AsyncClient, origin: str, key: str, text: str) -> _Shot:
    sent = time.time()
    resp = await _post(http, origin, key, text)
    done = time.time()
    if resp is None:
        return _Shot(sent, done, 0, None, False)
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    typed = isinstance(body, dict) and (
        "choices" in body if resp.status_code == 200 else isinstance(body.get("error"), dict)
    )
    if resp.status_code == 429:
        typed = typed and body["error"].get("code") == "rate_limit_exceeded"
    retry = resp.headers.get("retry-after")
    return _Shot(sent, done, resp.status_code, int(retry) if retry else None, typed)


async def _burst(
    http: httpx.AsyncClient, origins: list[str], key: str, count: int, marker: str
) -> list[_Shot]:
    """``count`` requests, ``_CONCURRENCY`` at a time, alternating over ``origins``."""
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(i: int) -> _Shot:
        async with gate:
            return await _shot(http, origins[i % len(origins)], key, f"d07 {marker} {i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _during(kit: DrillStack, proxy: str, load: Callable[[], Awaitable[Any]]) -> Any:
    """``load()``'s result, run while ``proxy`` drops every byte both ways."""
    kit.proxies[proxy].set(blackhole="both")
    try:
        return await load()
    finally:
        kit.proxies[proxy].clear()


async def _recovered(http: httpx.AsyncClient, origins: list[str], key: str, status: int) -> None:
    """Wait until every edge answers ``key`` with ``status`` again after a fault."""
    for origin in origins:
        deadline = time.monotonic() + _RECOVER_S
        while True:
            resp = await _post(http, origin, key, "recovered?")
            if resp is not None and resp.status_code == status:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"d07: {origin} did not answer {status} after the fault")
            await asyncio.sleep(0.3)


async def _wall(ok: Callable[[float], bool], timeout_s: float) -> None:
    """Wait until ``ok(seconds into the current minute)`` holds (wall clock)."""
    deadline = time.monotonic() + timeout_s
    while not ok(time.time() % 60):
        if time.monotonic() > deadline:
            raise RuntimeError("d07: the wall clock never reached the wanted second")
        await asyncio.sleep(0.02)


async def _wall_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.time()))


def _minute_retry(shot: _Shot) -> bool:
    return shot.status == 429 and shot.retry_after is not None and shot.retry_after <= 60


def _true_retry(shot: _Shot) -> bool:
    """Whether a refusal's Retry-After is true: its minute (or, for a per-day refusal, its
    UTC day) ends within the stated wait, and not more than a second (the wait is rounded
    up to whole seconds) before the wait ends."""
    if shot.retry_after is None or shot.window is None:
        return False
    for period in (60, 86400):
        boundary = (math.floor(shot.sent / period) + 1) * period
        if shot.done + shot.retry_after >= boundary and shot.retry_after <= math.ceil(
            boundary - shot.sent
        ):
            return True
    return False


def _is(shot: _Shot, status: int) -> bool:
    return shot.status == status and shot.typed


def _check_windows(windows: list[list[_Shot]], full: bool) -> list[str]:
    problems = []
    seen: set[int] = set()
    for shots in windows:
        minutes = {s.window for s in shots}
        if len(minutes) != 1 or None in minutes:
            problems.append(f"a burst straddled a minute: {sorted(map(str, minutes))}")
            continue
        seen |= minutes  # type: ignore[arg-type]
        problems += _check_refusals(shots)
    # Not exact: with two limits on a key, a request's increment of one window may be seen
    # over the limit by another request before it is rolled back, which is then refused
    # though a serial order would have admitted it (architecture.md, Rate limits).
    admitted = [sum(s.status == 200 for s in shots) for shots in windows]
    if any(not 1 <= a <= PER_MINUTE for a in admitted) or sum(admitted) > PER_DAY:
        problems.append(
            f"key A admitted {admitted} per minute, want 1..{PER_MINUTE} each, "
            f"{PER_DAY} at most in all"
        )
    if full and len(seen) != 2:
        problems.append(f"the bursts did not land in two minutes: {sorted(seen)}")
    return problems


def _check_day(day: list[_Shot]) -> list[str]:
    admitted = sum(s.status == 200 for s in day)
    problems = [] if admitted == DAY_ONLY else [f"key D admitted {admitted}, want {DAY_ONLY}"]
    return problems + _check_refusals(day)


def _check_refusals(shots: list[_Shot]) -> list[str]:
    problems = []
    for s in shots:
        if s.status not in (200, 429) or not s.typed:
            problems.append(f"status {s.status} (typed {s.typed}), want 200 or a typed 429")
        elif s.status == 429 and not _true_retry(s):
            problems.append(f"Retry-After {s.retry_after} not true at {s.sent % 60:.1f} s")
    return problems


def _check_faults(
    budget_refused: list[_Shot], free_served: list[_Shot], limiter_down: list[_Shot]
) -> list[str]:
    problems = []
    if not all(_is(s, 503) for s in budget_refused):
        pairs = sorted({(s.status, s.typed) for s in budget_refused})
        problems.append(f"billing unreachable: budgeted project got {pairs}, want a typed 503")
    if not all(_is(s, 200) for s in free_served):
        got = sorted({s.status for s in free_served})
        problems.append(f"billing unreachable: unbudgeted project got {got}, want 200")
    if not all(_is(s, 200) for s in limiter_down):
        got = sorted({s.status for s in limiter_down})
        problems.append(f"limiter unreachable: got {got}, want 200 (fail open)")
    return problems
