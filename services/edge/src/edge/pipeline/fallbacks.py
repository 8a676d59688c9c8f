"""The provider-call step: the endpoint's model, then each of its ``fallbacks`` in order.

The router fails over between a model's deployments on its own (``router.failover``);
``CompleteRequest`` names one model, so fallbacks across models are tried here, one
``Upstream`` call per model, each through ``Proxy.forward`` (its own budget admission,
priced for that model, and its own usage event). The next model is tried when an
attempt failed as a provider failure:

    ProviderError                     502 / 504 after the router's failover
    an error carrying ``attempts``    every deployment failed (429 when all were rate limited)
    ``model_not_found``               the catalog no longer has that model

Anything else (a budget refusal, a bad request, a stream failing after its first
chunk, which is in-band) ends the step at once, unchanged. When every model failed:
``ModelsFailed``, 502 ``all_providers_failed``, its ``attempts`` every attempt of
every model in order (``failures`` says which model each belongs to). An endpoint
without fallbacks gets the router's error unchanged (the surface answers a provider
failure 502; a model the catalog does not know stays the router's 404). A success
reports the attempts of the models that failed before it (``prior_attempts``),
which the surface adds to the attempts it shows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from gateway.common.v1 import types_pb2
from gateway_common.errors import GatewayError, ProviderError

__all__ = ["ModelsFailed", "attempt_count", "call_with_fallbacks"]

T = TypeVar("T")


def _provider_failed(err: GatewayError) -> bool:
    # A fallback the caller's key may not call (``model_not_allowed``, raised before any
    # provider call) is skipped like a model that failed: it is listed, never called.
    return (
        isinstance(err, ProviderError)
        or bool(err.attempts)
        or err.code in ("model_not_found", "model_not_allowed")
    )


def attempt_count(err: GatewayError) -> int:
    """How many attempts a failed model call made (one when the router did not list them)."""
    return len(err.attempts) or 1


class ModelsFailed(ProviderError):
    """Every model of the endpoint failed (502); ``failures`` keeps ``(model, error)`` in order."""

    code = "all_providers_failed"

    def __init__(self, failures: Sequence[tuple[str, GatewayError]]) -> None:
        self.failures = tuple(failures)
        super().__init__(
            "Every model failed: "
            + "; ".join(f"{model}: {err.message}" for model, err in self.failures)
        )
        attempts: list[types_pb2.AttemptError] = []
        for _, err in self.failures:
            attempts.extend(err.attempts)
        self.attempts = tuple(attempts)


async def call_with_fallbacks(
    models: Sequence[str], attempt: Callable[[str], Awaitable[T]]
) -> tuple[T, str, int]:
    """``(result, model that answered, attempts of the models before it)``, or ``ModelsFailed``."""
    failures: list[tuple[str, GatewayError]] = []
    for model in models:
        try:
            result = await attempt(model)
        except GatewayError as err:
            if not _provider_failed(err):
                raise
            failures.append((model, err))
            continue
        return result, model, sum(attempt_count(err) for _, err in failures)
    if len(failures) == 1:
        raise failures[0][1]  # no fallbacks: the router's own error, as /v1 gets it
    raise ModelsFailed(failures)
