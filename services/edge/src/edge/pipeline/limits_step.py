"""The rate-limit step of every surface (seed 001: auth -> **rate limit** -> budget -> ...).

Which limits a call is counted against, all read from the in-memory caches (no
database trip): its key's ``rate_limits`` (``KeyEntry``), its project's
(``ProjectView``) and, on the Gateway API, its endpoint's (``EndpointView``); each
is ``RateLimits`` (requests per minute, per day, tokens per minute) under its own
scope (``key:<id>``, ``project:<id>``, ``endpoint:<id>``), so a project limit is
shared by all its keys and an endpoint limit by all callers of the endpoint. The
counters live in JetStream (``edge.pipeline.ratelimit``), shared by every edge.

The step, for one call::

    step.check_model(key, model)                  # 403 model_not_allowed (allowed_models)
    admission = await step.admit(key, endpoint=e)  # 429 (requests; token windows checked)
    await step.reserve(admission, tokens=worst)     # 429 (tokens), when the body is known
    ...router call...
    await step.settle(admission, usage, error)      # tokens corrected to the real usage
    admission.headers()                             # x-ratelimit-* (and retry-after)

``admit`` counts the request (cost 1 on each request limit) and checks the token
windows at cost 0 (a window already over its amount refuses at once). ``reserve``
then counts the call's worst case on the token limits; when they refuse, the
request's own increments are taken back (``RateLimiter.release``), so a refused
request consumes nothing. ``/v1`` knows its body at once and does both in one
``admit(..., tokens=worst)``; the Gateway API admits right after auth and the
endpoint lookup and reserves once its prompt is built (history, template), since
only then is the worst case known.

**Settlement** (like budgets): with usage, the token windows are moved by
``used - reserved`` (prompt plus completion tokens); a call the router answered
with its own error used nothing (the router bills nothing then); a call cut short
without usage (timeout, router gone, client left) keeps its whole reservation.

A bearer-passthrough caller (no gateway key, no project) is not rate limited here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.common.v1 import types_pb2
from gateway_common.errors import (
    GatewayError,
    PermissionDenied,
    ProviderTimeout,
    ServiceUnavailable,
)

from ..auth import KeyEntry
from ..endpoints import EndpointView
from ..pricebook import PriceBook
from ..projects import ProjectCache
from .ratelimit import Decision, Limit, LimitKind, LimitState, RateLimiter, format_reset

__all__ = ["Admission", "LimitsStep", "ModelNotAllowed"]

log = logging.getLogger(__name__)

_MAX_MODEL_ECHO = 200


class ModelNotAllowed(PermissionDenied):
    """The key's ``allowed_models`` does not list the model asked for (403, names it)."""

    code = "model_not_allowed"


@dataclass(slots=True)
class Admission:
    """One call's rate-limit state, from ``admit`` to ``settle`` (see the module docstring).

    ``requests``: the decision of ``admit``; ``tokens``: that of ``reserve`` (None
    until then, or when no token limit applies).
    """

    limits: tuple[Limit, ...]
    requests: Decision
    tokens: Decision | None = None
    settled: bool = field(default=False)

    @property
    def token_limits(self) -> tuple[Limit, ...]:
        return tuple(x for x in self.limits if x.kind is LimitKind.TOKENS)

    def error(self) -> GatewayError | None:
        """The refusal to answer (429, or 503 for a fail-closed kind), None when admitted."""
        for decision in (self.requests, self.tokens):
            if decision is not None and (error := decision.error()) is not None:
                return error
        return None

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` of each kind checked (the tightest limit of each);
        on a refusal ``retry-after`` (whole seconds until it admits), or ``x-should-retry:
        false`` when waiting cannot help (the official SDKs honour both)."""
        out: dict[str, str] = {}
        for kind in LimitKind:
            state = self._tightest(kind)
            if state is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(state.limit.amount)
                out[f"x-ratelimit-remaining-{kind}"] = str(state.remaining)
                out[f"x-ratelimit-reset-{kind}"] = format_reset(state.reset_s)
        for decision in (self.requests, self.tokens):
            if decision is None or decision.refused_by is None:
                continue
            if decision.retry_after_s is not None:
                out["retry-after"] = str(decision.retry_after_s)
            else:  # larger than the limit itself: the OpenAI SDKs read this and do not retry
                out["x-should-retry"] = "false"
        return out

    def _tightest(self, kind: LimitKind) -> LimitState | None:
        if kind is LimitKind.TOKENS and self.tokens is not None:
            state = self.tokens.tightest(kind)
            if state is not None:
                return state
        return self.requests.tightest(kind)


_ADMITTED = Decision(allowed=True)


class LimitsStep:
    """Rate limits and ``allowed_models`` for every surface; one per edge, built in ``main``."""

    def __init__(self, limiter: RateLimiter, prices: PriceBook, projects: ProjectCache) -> None:
        self._limiter = limiter
        self._prices = prices
        self._projects = projects

    def allows(self, key: KeyEntry, model: str) -> bool:
        """Whether ``key`` may call ``model``.

        A key without ``allowed_models`` may call any model. A name matches when it is
        listed, or when it and a listed name resolve to the same catalog model (an
        alias, a provider-prefixed name).
        """
        allowed = key.allowed_models
        if allowed is None or model in allowed:
            return True
        public = self._prices.public_name(model)
        return public is not None and any(self._prices.public_name(a) == public for a in allowed)

    def check_model(self, key: KeyEntry, model: str) -> None:
        """``ModelNotAllowed`` (403, naming ``model``) unless the key may call ``model``."""
        if self.allows(key, model):
            return
        shown = model if len(model) <= _MAX_MODEL_ECHO else model[:_MAX_MODEL_ECHO] + "..."
        raise ModelNotAllowed(
            f"This API key is not allowed to use the model '{shown}'.", param="model"
        )

    def limits_of(self, key: KeyEntry, endpoint: EndpointView | None = None) -> tuple[Limit, ...]:
        """Every limit a call of ``key`` (through ``endpoint``) is counted against."""
        if key.passthrough:
            return ()
        found: list[Limit] = []
        if key.rate_limits is not None:
            found += key.rate_limits.limits(f"key:{key.key_id}")
        project = self._projects.get(key.project_id).rate_limits
        if project is not None:
            found += project.limits(f"project:{key.project_id}")
        if endpoint is not None and endpoint.rate_limits is not None:
            found += endpoint.rate_limits.limits(f"endpoint:{endpoint.endpoint_id}")
        return tuple(found)

    def counts_tokens(self, key: KeyEntry, endpoint: EndpointView | None = None) -> bool:
        """Whether a token limit applies to a call of ``key`` (worth estimating its worst case)."""
        return any(x.kind is LimitKind.TOKENS for x in self.limits_of(key, endpoint))

    def wants_tokens(self, admission: Admission) -> bool:
        """Whether ``reserve`` needs the call's worst case (a token limit applies)."""
        return bool(admission.token_limits) and admission.tokens is None

    async def admit(
        self, key: KeyEntry, *, endpoint: EndpointView | None = None, tokens: int | None = None
    ) -> Admission:
        """Count one request of ``key`` (through ``endpoint``); a refusal is in ``error()``.

        ``tokens``: the call's worst case when already known (reserved at once on the
        token limits, ``reserve`` then does nothing); None: token windows are only
        checked, ``reserve`` counts them later.
        """
        limits = self.limits_of(key, endpoint)
        if not limits:
            return Admission((), _ADMITTED)  # fresh: an Admission is mutable
        decision = await self._limiter.admit(limits, tokens=tokens or 0)
        admission = Admission(limits, decision)
        if tokens is not None and admission.token_limits:
            admission.tokens = decision
        return admission

    async def admit_only(self, limits: Sequence[Limit]) -> Admission:
        """Count one request against ``limits`` alone, not a key's (a channel widget's
        per-visitor limit, ``edge.api.routes.channel``); a refusal is in ``error()``."""
        if not limits:
            return Admission((), _ADMITTED)
        return Admission(tuple(limits), await self._limiter.admit(limits))

    async def reserve(self, admission: Admission, *, tokens: int) -> None:
        """Count the call's worst case ``tokens`` on its token limits; on a refusal (then
        in ``admission.error()``) the request's own increments are taken back."""
        if not self.wants_tokens(admission):
            return
        decision = await self._limiter.admit(admission.token_limits, tokens=tokens)
        admission.tokens = decision
        if not decision.allowed:
            await self._limiter.release(admission.requests)

    async def settle(
        self,
        admission: Admission,
        usage: types_pb2.Usage | None,
        error: BaseException | None = None,
    ) -> None:
        """Correct the token windows to the call's real usage (module docstring); once."""
        decision = admission.tokens
        if admission.settled or decision is None or decision.reservation is None:
            return
        admission.settled = True
        if usage is not None:
            used = max(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)
        elif isinstance(error, GatewayError) and not isinstance(
            error, ServiceUnavailable | ProviderTimeout
        ):
            used = 0
        else:
            return  # no usage known: the reservation stands
        await self._limiter.settle(decision.reservation, used)
