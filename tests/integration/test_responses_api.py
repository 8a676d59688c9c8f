"""The Responses API through the official SDK, with chains owned by the gateway.

Every request reaches the fake provider as a chat completion; what it received
(``/_fake/requests``) shows whether the whole history was sent, and its
deterministic reply (``expected_reply``) shows the answer came from that body.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from typing import Any

import httpx
import nats
import openai
import orjson
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from edge.auth import ALL_SCOPES, hash_api_key
from edge.config import DEV_SECRET_KEY
from edge.store import ApiKeyCreate, repo
from gateway_common import db, subjects
from gateway_common.db import sync_url
from gateway_common.settings import BaseServiceSettings
from tests.integration.helpers import expected_reply, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _token() -> str:
    return uuid.uuid4().hex[:10]


def _chat_request_with(fake_provider_url: str, text: str) -> dict[str, Any]:
    """The body of the chat request whose last user message is ``text``."""
    log = httpx.get(f"{fake_provider_url}/_fake/requests", timeout=10).json()["requests"]
    for entry in reversed(log):
        body = entry.get("body")
        if entry["path"].endswith("/chat/completions") and isinstance(body, dict):
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            if users and users[-1]["content"] == text:
                return dict(body)
    raise AssertionError(f"no chat request ending with {text!r} reached the provider")


def test_create_then_follow_up_immediately_sends_the_whole_history(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    first_q, second_q = f"What's 2 + 5? {_token()}", f"Now multiply by 2 {_token()}"
    first = openai_client.responses.create(
        model="mock-reasoning", instructions="Answer briefly.", input=first_q
    )
    first_body = _chat_request_with(fake_provider_url, first_q)
    assert first.output_text == expected_reply(first_body)
    assert first_body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": first_q},
    ]
    assert first.id.startswith("resp_") and first.status == "completed"
    assert first.usage is not None and first.usage.output_tokens_details.reasoning_tokens > 0

    second = openai_client.responses.create(
        model="mock-reasoning",
        instructions="Reply only in short phrases.",
        previous_response_id=first.id,
        input=second_q,
    )
    second_body = _chat_request_with(fake_provider_url, second_q)
    assert second_body["messages"] == [
        {"role": "system", "content": "Reply only in short phrases."},
        {"role": "user", "content": first_q},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": second_q},
    ]
    assert second.output_text == expected_reply(second_body)
    assert second.previous_response_id == first.id

    third_q = f"And add one {_token()}"
    third = openai_client.responses.create(
        model="mock-reasoning", previous_response_id=second.id, input=third_q
    )
    third_body = _chat_request_with(fake_provider_url, third_q)
    assert [m["content"] for m in third_body["messages"]] == [
        first_q,
        first.output_text,
        second_q,
        second.output_text,
        third_q,
    ]
    assert third.output_text == expected_reply(third_body)


def test_retrieve_input_items_and_delete(openai_client: openai.OpenAI) -> None:
    question = f"Remember me {_token()}"
    created = openai_client.responses.create(
        model="mock-reasoning", input=question, metadata={"case": "retrieve"}
    )
    retrieved = openai_client.responses.retrieve(created.id)
    assert (retrieved.id, retrieved.output_text) == (created.id, created.output_text)
    assert retrieved.metadata == {"case": "retrieve"}

    follow_up = openai_client.responses.create(
        model="mock-reasoning", previous_response_id=created.id, input="Next"
    )
    items = list(openai_client.responses.input_items.list(follow_up.id, order="asc"))
    texts = [item.content[0].text for item in items]  # type: ignore[union-attr]
    assert texts == [question, created.output_text, "Next"]
    assert all(item.id for item in items)

    deleted = openai_client.responses.delete(created.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.responses.create(
            model="mock-reasoning", previous_response_id=created.id, input="Again"
        )
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    # The follow-up stored its own copy of the chain: it still continues.
    openai_client.responses.create(
        model="mock-reasoning", previous_response_id=follow_up.id, input="Still here"
    )


def test_store_false_is_not_chainable(openai_client: openai.OpenAI) -> None:
    created = openai_client.responses.create(model="mock-reasoning", input="Hi", store=False)
    assert created.output_text
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)


def test_a_model_without_the_responses_api_is_refused(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(model="mock-chat", input="Hi")
    assert "does not support the Responses API" in caught.value.message


def test_unknown_previous_response_id_is_not_found(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.responses.create(
            model="mock-reasoning", previous_response_id="resp_doesnotexist", input="Hi"
        )
    assert "resp_doesnotexist" in caught.value.message


async def _second_project_key(stack: Stack) -> str:
    """A key of a fresh project, created in the edge's tables and announced to the edge."""
    key = "sk-sy-other-" + secrets.token_urlsafe(16)
    secret = os.environ.get("GATEWAY_SECRET_KEY", DEV_SECRET_KEY).encode()
    url = BaseServiceSettings(database_url=stack.database_url("edge")).resolved_database_url()
    engine = db.create_engine(url)
    try:
        async with db.make_sessionmaker(engine)() as session:
            project = await repo.ensure_project(session=session, name=f"other-{_token()}")
            row = await repo.create_api_key(
                session=session,
                project_id=project.id,
                data=ApiKeyCreate(name="other", scopes=list(ALL_SCOPES)),
                key=key,
                key_hash=hash_api_key(secret, key),
            )
    finally:
        await engine.dispose()
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.publish(subjects.KEYS_CHANGED, orjson.dumps({"key_id": row.id}))
        await nc.flush()
    finally:
        await nc.close()
    return key


def test_another_projects_response_is_invisible(
    stack: Stack, openai_client: openai.OpenAI, base_url: str
) -> None:
    mine = openai_client.responses.create(model="mock-reasoning", input=f"secret {_token()}")
    other_key = asyncio.run(_second_project_key(stack))
    headers = {"authorization": f"Bearer {other_key}"}
    poll(
        lambda: (
            httpx.get(f"{base_url}/v1/models", headers=headers, timeout=10).status_code == 200
            or None
        )
    )
    other = openai.OpenAI(base_url=f"{base_url}/v1", api_key=other_key, max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError) as caught:
            other.responses.create(
                model="mock-reasoning", previous_response_id=mine.id, input="leak it"
            )
        assert mine.output_text not in caught.value.response.text
        for method, path in (
            ("GET", f"/v1/responses/{mine.id}"),
            ("GET", f"/v1/responses/{mine.id}/input_items"),
            ("DELETE", f"/v1/responses/{mine.id}"),
        ):
            resp = httpx.request(method, f"{base_url}{path}", headers=headers, timeout=10)
            assert resp.status_code == 404, (method, path, resp.text)
            assert mine.output_text not in resp.text
    finally:
        other.close()
    assert openai_client.responses.retrieve(mine.id).id == mine.id


def test_stream_yields_deltas_and_a_chainable_completed_response(
    openai_client: openai.OpenAI, fake_provider_url: str
) -> None:
    question = f"Stream this please {_token()}"
    with openai_client.responses.stream(model="mock-reasoning", input=question) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == len(final.output_text.split())
    assert final.output_text == expected_reply(_chat_request_with(fake_provider_url, question))

    follow_q = f"And then {_token()}"
    events = list(
        openai_client.responses.create(
            model="mock-reasoning", previous_response_id=final.id, input=follow_q, stream=True
        )
    )
    completed = events[-1]
    assert completed.type == "response.completed"
    body = _chat_request_with(fake_provider_url, follow_q)
    assert [m["content"] for m in body["messages"]] == [question, final.output_text, follow_q]
    assert completed.response.output_text == expected_reply(body)  # type: ignore[union-attr]


def test_a_response_is_billed_as_responses(stack: Stack, base_url: str, api_key: str) -> None:
    resp = httpx.post(
        f"{base_url}/v1/responses",
        json={"model": "mock-reasoning", "input": f"bill {_token()}"},
        headers={"authorization": f"Bearer {api_key}"},
        timeout=20,
    )
    assert resp.status_code == 200, resp.text
    request_id = resp.headers["x-request-id"]
    usage = resp.json()["usage"]
    engine = sa.create_engine(sync_url(stack.database_url("billing")))

    def entry() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT * FROM ledger_entries WHERE request_id = :r"), {"r": request_id}
            ).first()

    try:
        row = poll(entry)
    finally:
        engine.dispose()
    assert (row.operation, row.model) == ("responses", "mock-reasoning")
    assert (row.prompt_tokens, row.completion_tokens, row.reasoning_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
        usage["output_tokens_details"]["reasoning_tokens"],
    )
