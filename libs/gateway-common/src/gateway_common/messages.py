"""The base of every request/reply payload over core NATS: frozen, strict, bytes out."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict

__all__ = ["NatsMessage"]


class NatsMessage(BaseModel):
    """A payload of a request/reply contract: immutable, and unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        """Serialize for a NATS payload."""
        return orjson.dumps(self.model_dump(mode="json"))
