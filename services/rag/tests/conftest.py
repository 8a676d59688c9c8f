"""rag test fixtures: a real nats-server and SQLite/PostgreSQL databases (see storage_fixtures)."""

from gateway_common.testing import storage_fixtures

nats_url, postgres_url, db_url = storage_fixtures("rag")
