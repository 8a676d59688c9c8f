"""``edge.projects``: which surfaces' answers carry ``generation_context`` for a project,
and which managed credentials a call opens."""

from __future__ import annotations

from typing import Any

import pytest

from edge.credentials import CredentialCipher
from edge.projects import ManagedCredential, ProjectCache, ProjectView, SealedProviderKey
from gateway_common.errors import InvalidRequest


@pytest.mark.parametrize(
    ("settings", "openai", "messages"),
    [
        ({}, True, False),
        ({"generation_context": False}, False, False),
        ({"messages_generation_context": True}, True, True),
        ({"generation_context": False, "messages_generation_context": True}, False, True),
        ({"messages_generation_context": "yes"}, True, False),
    ],
)
def test_generation_context_is_set_per_surface(
    settings: dict[str, Any], openai: bool, messages: bool
) -> None:
    cache = ProjectCache(CredentialCipher(b"secret"))
    cache.put("p", ProjectView.build(settings, ()))
    assert cache.call_options("p").include_generation_context is openai
    assert cache.call_options("p", "messages").include_generation_context is messages


def test_an_unknown_project_gets_the_defaults() -> None:
    cache = ProjectCache(CredentialCipher(b"secret"))
    assert cache.call_options("nope").include_generation_context is True
    assert cache.call_options("nope", "messages").include_generation_context is False


def test_a_gateways_credential_id_opens_only_that_credential() -> None:
    cipher = CredentialCipher(b"secret")
    creds = [
        SealedProviderKey(
            cid, provider, cipher.seal(key, project_id="p", provider=provider), url or None
        )
        for cid, provider, key, url in (
            ("c1", "openai", "sk-one", ""),
            ("c2", "fake", "sk-two", "https://own.example/v1"),
        )
    ]
    cache = ProjectCache(cipher)
    cache.put("p", ProjectView.build({}, creds))
    assert len(cache.call_options("p").credentials) == 2
    assert cache.call_options("p", credential_id="c2").credentials == (
        ManagedCredential("fake", "sk-two", "https://own.example/v1"),
    )
    with pytest.raises(InvalidRequest) as refused:
        cache.call_options("p", credential_id="gone")
    assert refused.value.code == "credential_not_found"
