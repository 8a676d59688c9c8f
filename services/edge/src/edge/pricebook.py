"""The catalog's prices at the edge: a call's worst-case cost before it runs, its real cost after.

The edge reads the same catalog file as the router and billing
(``GATEWAY_CATALOG_PATH``) and re-reads it when its modification time
changes (checked at most every ``check_interval_s``, and at once for a model
the loaded copy lacks). A file that fails to parse is logged and ignored.

**The worst case** of a call, priced with ``PriceIndex.worst_case`` (every
prompt token at the dearer input price, every completion token at the
dearer output price), is bounded by:

    prompt tokens      the request body's length in bytes, capped at the model's
                       context window. A tokenizer token spans at least one byte of
                       UTF-8 text (byte-level BPE; SentencePiece with byte fallback),
                       JSON escapes only lengthen the text, and each message's JSON
                       framing (``{"role":"user","content":""}``, 28 bytes) exceeds the
                       handful of template tokens a chat format adds per message.
                       Media parts (images, audio, files) cost tokens unrelated to their
                       bytes: a body with any is counted at the full context window.
    completion tokens  embeddings: none. Otherwise ``max_completion_tokens`` /
                       ``max_tokens`` (``max_output_tokens`` for Responses) times ``n``,
                       or, when the request sets none, the catalog's
                       ``max_output_tokens`` per choice, else its ``context_window``,
                       else ``default_max_output_tokens``.

So a request that sets its max tokens can never cost more than it reserved.
One that does not is bounded by the model's maximum output; only when the
catalog states neither maximum nor context window is the bound a configured
guess, which a provider could exceed.

**The real cost** is the call's usage (as the router reported it) priced
with ``gateway_common.pricing``, the same arithmetic billing applies.

**The context window** (``PriceBook.window``, for ``edge.context_window``): a
model's ``context_window`` and the tokenizer that counts its prompts
(``gateway_common.tokens.tokenizer_for``: the catalog's ``tokenizer``, else
tiktoken's model table for OpenAI deployments, else None: the estimate).

**Bearer passthrough** (``edge.passthrough``) asks the same copy of the
catalog whether a model may take a caller's provider key as its bearer:
``passthrough_possible`` (any provider opted in with ``byok_passthrough``)
and ``passthrough_only`` (the model is served by such providers only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2
from gateway_common.catalog import Catalog, CatalogFile, split_provider
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.pricing import PriceIndex, exact_sum, price_usage
from gateway_common.tokens import TokenizerName, tokenizer_for

__all__ = ["Estimate", "PriceBook", "Window"]

_OPERATIONS = {
    router_pb2.OPERATION_CHAT_COMPLETIONS: "chat.completions",
    router_pb2.OPERATION_EMBEDDINGS: "embeddings",
    router_pb2.OPERATION_RESPONSES: "responses",
}
#: JSON keys of content parts whose token cost is not bounded by their bytes.
_MEDIA_MARKERS = (b'"image_url"', b'"input_image"', b'"input_audio"', b'"input_file"', b'"file"')


@dataclass(frozen=True, slots=True)
class Estimate:
    """A call's worst-case ``amount``, and what its real usage is priced as.

    ``amount = prompt_amount + per_output_token * output_tokens`` exactly, where
    ``output_tokens`` is the completion cap reserved per choice (0 for
    embeddings) and ``per_output_token`` the worst case of one more token of
    that cap (every choice's). ``output_unset``: the request set no cap, so
    the model's whole output was reserved.
    """

    model: str  # the public catalog name
    operation: str  # as usage events name it
    amount: Decimal
    prompt_amount: Decimal = Decimal(0)
    per_output_token: Decimal = Decimal(0)
    output_tokens: int = 0
    output_unset: bool = False

    def max_output_within(self, budget: Decimal) -> int | None:
        """The largest per-choice completion cap (>= 1) whose worst case fits ``budget``,
        or None when not even one token fits."""
        if self.per_output_token <= 0 or budget < self.prompt_amount:
            return None
        fits = int((budget - self.prompt_amount) // self.per_output_token)
        return fits if fits >= 1 else None


@dataclass(frozen=True, slots=True)
class Window:
    """A model's context window (tokens; 0: unknown) and its prompts' tokenizer (None: estimate)."""

    model: str  # the public catalog name
    context_window: int
    tokenizer: TokenizerName | None


@dataclass(frozen=True, slots=True)
class _Model:
    public: str
    context_window: int
    max_output_tokens: int
    providers: frozenset[str]  # of its deployments
    passthrough_only: bool  # every deployment is on a ``byok_passthrough`` provider
    window: Window
    reasoning: bool = False  # the catalog lists the ``reasoning`` capability


class _Snapshot:
    """One loaded catalog: prices, and per name (public, alias, provider-prefixed) its limits."""

    def __init__(self, catalog: Catalog) -> None:
        self.index = PriceIndex(catalog)
        self.providers = frozenset(catalog.providers)
        self.passthrough = frozenset(
            name for name, provider in catalog.providers.items() if provider.byok_passthrough
        )
        self.anthropic = frozenset(
            name for name, provider in catalog.providers.items() if provider.kind == "anthropic"
        )
        self.models: dict[str, _Model] = {}
        for public, entry in catalog.models.items():
            providers = frozenset(dep.provider for dep in entry.deployments)
            tokenizer = tokenizer_for(
                entry.tokenizer,
                public,
                ((catalog.providers[dep.provider].kind, dep.model) for dep in entry.deployments),
            )
            limits = _Model(
                public,
                entry.context_window,
                entry.max_output_tokens,
                providers,
                providers <= self.passthrough,
                Window(public, entry.context_window, tokenizer),
                "reasoning" in entry.capabilities,
            )
            for name in (public, *entry.aliases):
                self.models[name] = limits

    def resolve(self, name: str) -> _Model | None:
        """As the router resolves: a whole name first, then ``provider:name`` / ``@provider/name``."""
        found = self.models.get(name)
        if found is not None:
            return found
        prefixed = split_provider(name)
        if prefixed is not None and prefixed[0] in self.providers:
            return self.models.get(prefixed[1])
        return None

    def anthropic_only(self, name: str) -> bool:
        """Whether every deployment the router may choose for ``name`` is of kind ``anthropic``
        (as ``passthrough_only`` reads names)."""
        found = self.models.get(name)
        if found is not None:
            return bool(found.providers) and found.providers <= self.anthropic
        prefixed = split_provider(name)
        if prefixed is None or prefixed[0] not in self.anthropic:
            return False
        found = self.models.get(prefixed[1])
        return found is not None and prefixed[0] in found.providers

    def passthrough_only(self, name: str) -> bool:
        """Whether every deployment the router may choose for ``name`` is on a passthrough
        provider: a whole name's model has only such deployments, or a prefix forces one."""
        found = self.models.get(name)
        if found is not None:
            return found.passthrough_only
        prefixed = split_provider(name)
        if prefixed is None or prefixed[0] not in self.passthrough:
            return False
        found = self.models.get(prefixed[1])
        return found is not None and prefixed[0] in found.providers


class PriceBook:
    """Estimates and prices calls from the catalog file (see the module docstring).

    Construction reads the file and raises ``CatalogError`` if it is unusable:
    the edge cannot admit against a budget without prices.
    """

    def __init__(
        self,
        path: Path,
        *,
        default_max_output_tokens: int,
        check_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default_output = default_max_output_tokens
        self._file = CatalogFile(path, _Snapshot, check_interval_s=check_interval_s, clock=clock)

    def estimate(
        self,
        op: router_pb2.Operation.ValueType,
        model: str,
        body: bytes,
        *,
        max_output_tokens: int | None,
        choices: int,
    ) -> Estimate | None:
        """The worst case of one call, or None when the catalog does not know ``model``.

        ``max_output_tokens`` is the request's own cap per choice (None: unset).
        """
        snapshot = self._current(model)
        found = snapshot.resolve(model)
        if found is None:
            return None
        prompt = len(body)
        if found.context_window and (
            prompt > found.context_window or any(m in body for m in _MEDIA_MARKERS)
        ):
            prompt = found.context_window
        operation = _OPERATIONS.get(op, "chat.completions")
        choices = 0 if operation == "embeddings" else max(choices, 1)
        per_choice = 0
        if choices:
            per_choice = (
                max_output_tokens
                or found.max_output_tokens
                or found.context_window
                or self._default_output
            )
        now = datetime.now(UTC)
        prompt_amount = snapshot.index.worst_case(
            found.public, now, prompt_tokens=prompt, max_completion_tokens=0
        )
        per_token = snapshot.index.worst_case(
            found.public, now, prompt_tokens=0, max_completion_tokens=choices
        )
        amount = snapshot.index.worst_case(
            found.public, now, prompt_tokens=prompt, max_completion_tokens=per_choice * choices
        )
        return Estimate(
            found.public,
            operation,
            amount,
            prompt_amount=prompt_amount,
            per_output_token=per_token,
            output_tokens=per_choice,
            output_unset=bool(choices) and max_output_tokens is None,
        )

    def output_limit(self, model: str) -> int | None:
        """The most a call to ``model`` can answer: its catalog ``max_output_tokens``, else its
        ``context_window``; None when the catalog states neither or does not know ``model``."""
        found = self._current(model).resolve(model)
        if found is None:
            return None
        return found.max_output_tokens or found.context_window or None

    def window(self, model: str) -> Window | None:
        """``model``'s context window and tokenizer, or None when the catalog does not know it."""
        found = self._current(model).resolve(model)
        return None if found is None else found.window

    def limits(self, model: str) -> tuple[int, int] | None:
        """``(context_window, max_output_tokens)`` of ``model`` as the catalog states them (0:
        not stated), or None when the catalog does not know it. Session history is fitted
        into the window (``edge.pipeline.history``)."""
        found = self._current(model).resolve(model)
        return None if found is None else (found.context_window, found.max_output_tokens)

    def worst_case_tokens(
        self,
        op: router_pb2.Operation.ValueType,
        model: str,
        body: bytes,
        *,
        max_output_tokens: int | None,
        choices: int,
    ) -> int:
        """The most tokens one call may use, as ``estimate`` bounds them (module docstring):
        prompt bound plus completion cap times ``n``; for a model the catalog does not know,
        the body's length plus ``default_max_output_tokens`` per choice (rate limits of
        tokens reserve this at admission)."""
        found = self._current(model).resolve(model)
        prompt = len(body)
        if (
            found is not None
            and found.context_window
            and (prompt > found.context_window or any(m in body for m in _MEDIA_MARKERS))
        ):
            prompt = found.context_window
        if _OPERATIONS.get(op, "chat.completions") == "embeddings":
            return prompt
        per_choice = max_output_tokens
        if not per_choice:
            per_choice = (
                (found.max_output_tokens or found.context_window) if found is not None else 0
            ) or self._default_output
        return prompt + per_choice * max(choices, 1)

    def public_name(self, model: str) -> str | None:
        """The catalog's public name of ``model`` (a name, alias or provider-prefixed name)."""
        found = self._current(model).resolve(model)
        return None if found is None else found.public

    def knows(self, model: str) -> bool:
        """Whether the catalog resolves ``model`` (a name, alias or provider-prefixed name)."""
        return self._current(model).resolve(model) is not None

    def unpinned_public_name(self, model: str) -> str | None:
        """The public name of the catalog model ``model`` names or aliases; None for an
        unknown or a provider-prefixed name (which pins a route of its own)."""
        found = self._current(model).models.get(model)
        return None if found is None else found.public

    def passthrough_possible(self) -> bool:
        """Whether any provider of the catalog takes a caller's key as the bearer."""
        return bool(self._file.current().passthrough)

    def passthrough_only(self, model: str) -> bool:
        """Whether a call to ``model`` can reach passthrough providers only (see ``_Snapshot``).

        Never forces a re-read of the file: an unauthenticated caller must not be
        able to make the edge stat the catalog at will.
        """
        return self._file.current().passthrough_only(model)

    def anthropic_only(self, model: str) -> bool:
        """Whether a call to ``model`` can reach Anthropic-kind providers only: the Messages
        surface then keeps Anthropic's own fields (``edge.anthropic.inbound``)."""
        return self._current(model).anthropic_only(model)

    def reasons(self, model: str) -> bool:
        """Whether ``model`` takes ``reasoning_effort`` (the catalog's ``reasoning`` capability)."""
        found = self._current(model).resolve(model)
        return found is not None and found.reasoning

    def cost(self, estimate: Estimate, usage: types_pb2.Usage) -> Decimal:
        """What ``usage`` of the estimated call costs, as billing will price it.

        Raises ``gateway_common.pricing.PricingError`` for usage that cannot be
        priced (the caller then keeps the whole reservation).
        """
        event = UsageRecorded(
            request_id="",
            project_id="",
            operation=estimate.operation,  # type: ignore[arg-type]
            model=estimate.model,
            provider="",
            deployment="",
            usage=TokenUsage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
        )
        prices = self._file.current().index.prices_at(estimate.model, event.occurred_at)
        return exact_sum(item.amount for item in price_usage(event, prices))

    def _current(self, model: str) -> _Snapshot:
        """The loaded snapshot, re-read at once if it does not know ``model``."""
        snapshot = self._file.current()
        if snapshot.resolve(model) is None:
            snapshot = self._file.current(force=True)
        return snapshot
