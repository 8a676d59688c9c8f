"""Bearer passthrough: a caller's own provider key as the bearer, on opted-in providers only.

Seed 004's ``OpenAI(base_url=<gateway>, api_key="sk-proj-...")``: the gateway
forwards the key to the provider. A catalog provider opts in with
``byok_passthrough: true``; nothing else ever takes a provider key as the bearer.

Authentication is a FastAPI dependency and runs before the body (so the model)
is read, hence two steps:

    pending   ``api/deps`` found no gateway key with the bearer's hash (``UnknownKey``;
              a revoked or expired key stays 401). ``Passthrough.pending`` makes it a
              pending passthrough principal only if the catalog has a passthrough
              provider at all, the bearer is not shaped like a gateway key (``sk-sy-``:
              a deleted or mistyped gateway key is never sent to a provider), it is one
              token of visible ASCII of at most ``MAX_PROVIDER_KEY`` characters, and the
              request has no ``X-Provider-Key`` (which says the bearer was meant as a
              gateway key). Otherwise the 401 stands.
    confirm   ``Proxy.read`` once the body is parsed, and ``Proxy.forward`` again just
              before the router call: the model must be served by passthrough providers
              only (``PriceBook.passthrough_only``: every deployment, or the one a
              provider prefix forces). Otherwise, and for a body that does not parse,
              the answer is the unknown key's 401, so an unauthenticated caller learns
              nothing else.

The principal of a passthrough call is project ``PASSTHROUGH_PROJECT``, no key
id, scopes chat, embeddings and responses (never admin; ``/v1/models``, the
stored-response routes and ``/admin`` authenticate gateway keys only). Its call
carries the bearer as ``CompleteRequest.provider_key`` (the router keeps a BYOK
call on one provider and bills it ``byok: true``), no managed credentials, and
skips budget admission: the caller spends its own provider account. The bearer
lives in the principal (hidden from repr) and the router call, nowhere else.

The Responses API keeps no state for a caller without a project:
``previous_response_id`` and ``store: true`` are refused with 400, and an
absent ``store`` means false (``responses_request``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from gateway_common.errors import InvalidRequest
from gateway_common.openai import ResponsesRequest

from .auth import KEY_PREFIX, KeyEntry, UnknownKey
from .pricebook import PriceBook

__all__ = [
    "MAX_PROVIDER_KEY",
    "PASSTHROUGH_PROJECT",
    "PROVIDER_KEY_HEADER",
    "PROVIDER_KEY_SHAPE",
    "Passthrough",
    "responses_request",
]

#: The synthetic project passthrough calls are billed to.
PASSTHROUGH_PROJECT: Final = "byok-passthrough"
PROVIDER_KEY_HEADER: Final = "x-provider-key"
MAX_PROVIDER_KEY: Final = 4096
#: A provider key becomes an upstream header: one token of visible ASCII, bounded.
PROVIDER_KEY_SHAPE: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_PROVIDER_KEY}}}")
_SCOPES: Final = frozenset({"chat", "embeddings", "responses"})
_UNSUPPORTED: Final = "passthrough_unsupported"


class Passthrough:
    """Admits a provider key as the bearer, in the two steps of the module docstring."""

    def __init__(self, catalog: PriceBook) -> None:
        self._catalog = catalog

    def pending(self, token: str, headers: Mapping[str, str]) -> KeyEntry | None:
        """The pending principal of an unknown ``token``, or None when it cannot be one."""
        if (
            token.startswith(KEY_PREFIX)
            or PROVIDER_KEY_HEADER in headers
            or not PROVIDER_KEY_SHAPE.fullmatch(token)
            or not self._catalog.passthrough_possible()
        ):
            return None
        return KeyEntry(
            key_id="", project_id=PASSTHROUGH_PROJECT, scopes=_SCOPES, provider_key=token
        )

    def confirm(self, key: KeyEntry, model: str) -> None:
        """Nothing for a gateway key or a passthrough call to ``model``; ``UnknownKey`` else."""
        if key.provider_key is not None and not self._catalog.passthrough_only(model):
            raise UnknownKey.of(key.provider_key)


def responses_request(body: ResponsesRequest) -> ResponsesRequest:
    """``body`` of a passthrough call, never stored; 400 if it needs the gateway's state."""
    if body.previous_response_id is not None:
        raise InvalidRequest(
            "previous_response_id needs a gateway API key: the gateway keeps no responses "
            "for calls authenticated with a provider key.",
            param="previous_response_id",
            code=_UNSUPPORTED,
        )
    if "store" in body.model_fields_set and body.store:
        raise InvalidRequest(
            "store: true needs a gateway API key: the gateway keeps no responses for calls "
            "authenticated with a provider key. Omit store or set it to false.",
            param="store",
            code=_UNSUPPORTED,
        )
    return body.model_copy(update={"store": False})
