"""The rate-limit step (``edge.pipeline.limits_step``) on a real nats-server: which limits a call
counts against, ``allowed_models``, requests-then-tokens with the release of a refused call,
settlement, and the headers; plus the worst-case token bound and the admin-side validators."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from pydantic import ValidationError

from edge.auth import KeyEntry
from edge.credentials import CredentialCipher
from edge.endpoints import EndpointView
from edge.pipeline.limits_step import LimitsStep, ModelNotAllowed
from edge.pipeline.ratelimit import LimitKind, LimitReached, RateLimiter, RateLimits
from edge.pricebook import PriceBook
from edge.projects import ProjectCache, ProjectView
from edge.store.models import ApiKeyCreate, ProjectBase
from gateway.common.v1 import types_pb2
from gateway.router.v1 import router_pb2
from gateway_common.errors import ProviderRejected, ProviderTimeout
from gateway_common.nats import connect
from gateway_common.testing import nats_server

pytestmark = pytest.mark.timeout(60)

CHAT = router_pb2.OPERATION_CHAT_COMPLETIONS
CATALOG = """\
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  chat:
    aliases: [chat-latest]
    deployments: [{provider: fake, model: c}]
    prices: {input: "0.000001", output: "0.000002"}
    context_window: 1000
    max_output_tokens: 300
  other:
    deployments: [{provider: fake, model: o}]
    prices: {input: "0.000001", output: "0.000002"}
"""


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats-limits-step")) as url:
        yield url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect(nats_url, name="limits-step-test")
    yield client
    await client.close()


@pytest.fixture
def prices(tmp_path: Path) -> PriceBook:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return PriceBook(path, default_max_output_tokens=50)


@pytest.fixture
def projects() -> ProjectCache:
    return ProjectCache(CredentialCipher(b"k" * 32, []))


@pytest.fixture
async def step(nc: Client, prices: PriceBook, projects: ProjectCache) -> LimitsStep:
    limiter = RateLimiter(nc)
    await limiter.start()
    return LimitsStep(limiter, prices, projects)


def _key(**fields: object) -> KeyEntry:
    return KeyEntry(uuid.uuid4().hex, uuid.uuid4().hex, frozenset({"chat"}), **fields)  # type: ignore[arg-type]


def _usage(prompt: int, completion: int) -> types_pb2.Usage:
    return types_pb2.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def test_allowed_models_match_names_and_aliases(step: LimitsStep) -> None:
    step.check_model(_key(), "anything")  # no list: every model
    key = _key(allowed_models=frozenset({"chat"}))
    step.check_model(key, "chat")
    step.check_model(key, "chat-latest")  # an alias of a listed model
    step.check_model(key, "fake:chat")  # provider-prefixed
    with pytest.raises(ModelNotAllowed) as caught:
        step.check_model(key, "other")
    assert caught.value.http_status == 403 and "'other'" in caught.value.message
    assert caught.value.code == "model_not_allowed" and caught.value.param == "model"


def test_limits_come_from_key_project_and_endpoint(
    step: LimitsStep, projects: ProjectCache
) -> None:
    key = _key(rate_limits=RateLimits(per_minute=5))
    projects.put(key.project_id, ProjectView(rate_limits=RateLimits(per_day=100)))
    endpoint = EndpointView("e1", "slug", "chat", rate_limits=RateLimits(tokens_per_minute=900))
    scopes = {(x.scope, x.kind, x.window) for x in step.limits_of(key, endpoint)}
    assert scopes == {
        (f"key:{key.key_id}", LimitKind.REQUESTS, "minute"),
        (f"project:{key.project_id}", LimitKind.REQUESTS, "day"),
        ("endpoint:e1", LimitKind.TOKENS, "minute"),
    }
    assert step.counts_tokens(key, endpoint) and not step.counts_tokens(key)
    assert step.limits_of(_key()) == ()


async def test_requests_then_tokens_and_a_token_refusal_consumes_nothing(
    step: LimitsStep,
) -> None:
    key = _key(rate_limits=RateLimits(per_minute=10, tokens_per_minute=1000))
    first = await step.admit(key)
    assert first.error() is None and step.wants_tokens(first)
    assert first.headers()["x-ratelimit-remaining-requests"] == "9"
    await step.reserve(first, tokens=600)
    assert first.error() is None and not step.wants_tokens(first)
    assert first.headers()["x-ratelimit-remaining-tokens"] == "400"

    second = await step.admit(key)
    await step.reserve(second, tokens=600)  # 1200 > 1000: refused, the request taken back
    error = second.error()
    assert isinstance(error, LimitReached) and error.error_type == "tokens"
    assert error.retry_after is not None and "retry-after" in second.headers()
    third = await step.admit(key)
    assert third.headers()["x-ratelimit-remaining-requests"] == "8"  # second consumed nothing

    # Settled to the usage: 600 reserved, 100 used, so 500 come back.
    await step.settle(first, _usage(60, 40))
    await step.settle(first, _usage(600, 400))  # once only
    await step.reserve(third, tokens=800)
    assert third.error() is None
    assert third.headers()["x-ratelimit-remaining-tokens"] == "100"


async def test_settlement_without_usage(step: LimitsStep) -> None:
    key = _key(rate_limits=RateLimits(tokens_per_minute=1000))
    rejected = await step.admit(key, tokens=400)
    await step.settle(rejected, None, ProviderRejected("no"))  # the router billed nothing: 0
    cut = await step.admit(key, tokens=400)
    await step.settle(cut, None, ProviderTimeout("slow"))  # unknown: the reservation stands
    probe = await step.admit(key, tokens=1)
    assert probe.headers()["x-ratelimit-remaining-tokens"] == str(1000 - 400 - 1)


async def test_a_request_larger_than_a_token_limit_is_told_not_to_retry(
    step: LimitsStep,
) -> None:
    key = _key(rate_limits=RateLimits(tokens_per_minute=100))
    admission = await step.admit(key, tokens=101)
    error = admission.error()
    assert isinstance(error, LimitReached) and error.retry_after is None
    assert "Request too large" in error.message
    headers = admission.headers()
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers


def test_worst_case_tokens(prices: PriceBook) -> None:
    body = b'{"model":"chat","messages":[{"role":"user","content":"hi"}]}'
    worst = prices.worst_case_tokens
    assert worst(CHAT, "chat", body, max_output_tokens=20, choices=2) == len(body) + 40
    assert worst(CHAT, "chat", body, max_output_tokens=None, choices=1) == len(body) + 300
    assert worst(CHAT, "unknown", body, max_output_tokens=None, choices=1) == len(body) + 50
    big = b"x" * 5000
    assert worst(CHAT, "chat", big, max_output_tokens=10, choices=1) == 1000 + 10
    emb = router_pb2.OPERATION_EMBEDDINGS
    assert worst(emb, "chat", body, max_output_tokens=None, choices=1) == len(body)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"per_minute": 0}, "per_minute"),
        ({"per_minute": "5"}, "per_minute"),
        ({"per_hour": 5}, "per_hour"),
        ({"tokens_per_minute": -1}, "tokens_per_minute"),
    ],
)
def test_stored_rate_limits_are_checked_naming_the_field(value: object, field: str) -> None:
    for model in (ApiKeyCreate, ProjectBase):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({"name": "n", "rate_limits": value})
        assert caught.value.errors()[0]["loc"] == ("rate_limits", field)
    stored = ApiKeyCreate(name="n", rate_limits={"per_minute": 5, "per_day": None})
    assert stored.rate_limits == {"per_minute": 5}


def test_allowed_models_are_checked() -> None:
    assert ApiKeyCreate(name="n", allowed_models=["a", " a", "b"]).allowed_models == ["a", "b"]
    for bad in ([], [""], "chat", [1]):
        with pytest.raises(ValidationError) as caught:
            ApiKeyCreate(name="n", allowed_models=bad)
        assert caught.value.errors()[0]["loc"] == ("allowed_models",)
