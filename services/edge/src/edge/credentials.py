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
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def _aad(project_id: str, provider: str) -> bytes:
    return _AAD_PREFIX + project_id.encode() + b"\x00" + provider.encode()


def fingerprint(api_key: str) -> str:
    """``sha256:`` + the first 16 hex digits of SHA-256(key): enough to tell keys apart."""
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


class CredentialCipher:
    """Seals under the current secret; opens under the current or any previous one."""

    def __init__(self, secret: bytes, previous: Iterable[bytes] = ()) -> None:
        self._keys: dict[str, AESGCM] = {}
        self.current_key_id = self._add(secret)
        for old in previous:
            self._add(old)

    def _add(self, secret: bytes) -> str:
        key_id = _hkdf(secret, _ID_INFO, 4).hex()
        self._keys.setdefault(key_id, AESGCM(_hkdf(secret, _KEY_INFO, 32)))
        return key_id

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
