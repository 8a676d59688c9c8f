"""Alembic environment for rag's tables; run by ``gateway_common.db.migrate``."""

from gateway_common.db import run_alembic_env
from rag.store.models import METADATA

run_alembic_env(METADATA)
