"""Alembic environment of the edge: its own tables only, its own version table."""

from sqlmodel import SQLModel

from edge.store import models
from gateway_common.db import run_alembic_env

_EDGE_TABLES = {
    models.Project.__tablename__,
    models.ApiKey.__tablename__,
    models.ProviderCredential.__tablename__,
    models.Endpoint.__tablename__,
    models.ChannelKey.__tablename__,
}

# SQLModel.metadata is shared by every service in the process; hand Alembic a
# copy restricted to the edge's tables so it never touches anyone else's.
_metadata = SQLModel.metadata.__class__()
for _table in SQLModel.metadata.sorted_tables:
    if _table.name in _EDGE_TABLES:
        _table.to_metadata(_metadata)

run_alembic_env(_metadata)
