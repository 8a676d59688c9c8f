"""Alembic environment for billing's tables; run by ``gateway_common.db.migrate``."""

from billing.store.models import METADATA
from gateway_common.db import run_alembic_env

run_alembic_env(METADATA)
