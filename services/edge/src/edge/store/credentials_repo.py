"""Repository functions over ``provider_credentials``: rows hold only sealed keys.

Sealing and opening are the caller's (``edge.credentials.CredentialCipher``);
these functions never see a plaintext key. Same conventions as ``repo``:
keyword-only, explicit session, commit on write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import ProviderCredential

__all__ = [
    "delete_credential",
    "get_credential",
    "get_credential_for_provider",
    "list_credentials",
    "save_credential",
]


async def save_credential(*, session: AsyncSession, row: ProviderCredential) -> ProviderCredential:
    """Store ``row``, replacing the project's existing credential for the same provider.

    The replaced row keeps its id and creation time, so references to it stay valid.
    """
    existing = await get_credential_for_provider(
        session=session, project_id=row.project_id, provider=row.provider
    )
    if existing is not None:
        for field in ("base_url", "key_id", "ciphertext", "fingerprint", "last4"):
            setattr(existing, field, getattr(row, field))
        existing.updated_at = datetime.now(UTC)
        row = existing
    session.add(row)
    await session.commit()
    return row


async def list_credentials(
    *, session: AsyncSession, project_id: str | None = None
) -> Sequence[ProviderCredential]:
    """Every credential (of ``project_id`` when given), by provider."""
    query = select(ProviderCredential).order_by(col(ProviderCredential.provider))
    if project_id is not None:
        query = query.where(ProviderCredential.project_id == project_id)
    return (await session.exec(query)).all()


async def get_credential(
    *, session: AsyncSession, project_id: str, credential_id: str
) -> ProviderCredential | None:
    """Credential ``credential_id`` if it belongs to ``project_id``."""
    row = await session.get(ProviderCredential, credential_id)
    return row if row is not None and row.project_id == project_id else None


async def get_credential_for_provider(
    *, session: AsyncSession, project_id: str, provider: str
) -> ProviderCredential | None:
    """The project's credential for ``provider``, if any."""
    query = select(ProviderCredential).where(
        ProviderCredential.project_id == project_id, ProviderCredential.provider == provider
    )
    return (await session.exec(query)).first()


async def delete_credential(*, session: AsyncSession, row: ProviderCredential) -> None:
    """Delete ``row``."""
    await session.delete(row)
    await session.commit()
