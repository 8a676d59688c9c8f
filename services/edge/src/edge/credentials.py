"""Managed provider credentials: sealed at rest with AES-256-GCM, openable only by the edge.

Keys. Each secret (``GATEWAY_SECRET_KEY``, plus any retired ones in
``GATEWAY_PREVIOUS_SECRET_KEYS``) yields, through HKDF-SHA256 with distinct
``info`` labels, a 256-bit AES key and a public 8-hex-digit key id. The id is
stored beside every ciphertext, so a row says which key opens it.

Sealing. ``nonce (12 random bytes) || AES-GCM(key, nonce, plaintext, aad)``
where the associated data binds the ciphertext to its project and provider:
a sealed key copied into another project's row does not open.

Rotation. Set the new ``GATEWAY_SECRET_KEY``, list the old one in
``GATEWAY_PREVIOUS_SECRET_KEYS``, run ``rewrap`` (admin API or CLI): every
row sealed under another key id is opened and sealed again under the current
key. Then the old secret can be dropped. (API-key hashes are HMACs under the
current secret only; rotating it means re-issuing API keys.)

A plaintext key exists only inside ``seal`` and in what ``open`` returns;
neither logs, and ``SealedCredential``'s repr shows no bytes.

The keys are derived on first use, and ``cryptography`` (8 MiB) is imported
then: an edge whose projects hold no managed credential never loads it
(``gateway_common.lean``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CredentialCipher",
    "CredentialUnreadable",
    "SealedCredential",
    "fingerprint",
]

_NONCE_LEN = 12
_KEY_INFO = b"switchyard/provider-credentials/aes-256-gcm/v1"
_ID_INFO = b"switchyard/provider-credentials/key-id/v1"
_AAD_PREFIX = b"switchyard.provider-credential.v1\x00"


class CredentialUnreadable(Exception):
    """A sealed credential cannot be opened: unknown key id, or tampered/misbound ciphertext."""


@dataclass(frozen=True, slots=True)
class SealedCredential:
    """What is stored: the id of the sealing key and ``nonce || ciphertext || tag``."""

    key_id: str
    blob: bytes = field(repr=False)


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    # On first use, not at start (gateway_common.lean; see the module docstring).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def _aad(project_id: str, provider: str) -> bytes:
    return _AAD_PREFIX + project_id.encode() + b"\x00" + provider.encode()


def fingerprint(api_key: str) -> str:
    """``sha256:`` + the first 16 hex digits of SHA-256(key): enough to tell keys apart."""
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


class CredentialCipher:
    """Seals under the current secret; opens under the current or any previous one."""

    def __init__(self, secret: bytes, previous: Iterable[bytes] = ()) -> None:
        self._secrets = (secret, *previous)
        self._derived: tuple[str, dict[str, AESGCM]] | None = None

    @property
    def current_key_id(self) -> str:
        """The key id of the current secret (what ``seal`` writes)."""
        return self._derive()[0]

    @property
    def _keys(self) -> dict[str, AESGCM]:
        return self._derive()[1]

    def _derive(self) -> tuple[str, dict[str, AESGCM]]:
        """(current key id, key id -> AES key) of every secret, derived on the first call."""
        if self._derived is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            keys: dict[str, AESGCM] = {}
            for secret in self._secrets:
                keys.setdefault(
                    _hkdf(secret, _ID_INFO, 4).hex(), AESGCM(_hkdf(secret, _KEY_INFO, 32))
                )
            self._derived = (next(iter(keys)), keys)
        return self._derived

    def seal(self, api_key: str, *, project_id: str, provider: str) -> SealedCredential:
        """``api_key`` sealed under the current key, bound to ``project_id`` and ``provider``."""
        nonce = os.urandom(_NONCE_LEN)
        aead = self._keys[self.current_key_id]
        blob = nonce + aead.encrypt(nonce, api_key.encode(), _aad(project_id, provider))
        return SealedCredential(self.current_key_id, blob)

    def open(self, sealed: SealedCredential, *, project_id: str, provider: str) -> str:
        """The plaintext key; ``CredentialUnreadable`` if no known key opens it as bound."""
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise CredentialUnreadable(f"no secret with key id {sealed.key_id} is configured")
        from cryptography.exceptions import InvalidTag  # imported with the keys (_derive)

        nonce, ciphertext = sealed.blob[:_NONCE_LEN], sealed.blob[_NONCE_LEN:]
        try:
            plaintext = aead.decrypt(nonce, ciphertext, _aad(project_id, provider))
        except InvalidTag:
            raise CredentialUnreadable("ciphertext does not authenticate") from None
        return plaintext.decode()

    def rewrap(
        self, sealed: SealedCredential, *, project_id: str, provider: str
    ) -> SealedCredential | None:
        """``sealed`` re-sealed under the current key, or ``None`` if it already is."""
        if sealed.key_id == self.current_key_id:
            return None
        plaintext = self.open(sealed, project_id=project_id, provider=provider)
        return self.seal(plaintext, project_id=project_id, provider=provider)
