"""The chunks' vector index: sqlite-vec on SQLite, pgvector on PostgreSQL, else none.

Why: without an index every query reads every chunk of the collection and
ranks it in Python. With one, ``nearest`` asks the database for the
``pool_size`` chunks nearest the query and ``retrieve.rank`` scores only
those and the full-text hits, by the same rule. A chunk outside both sets
scores at most ``VECTOR_WEIGHT`` times the cosine of the pool's last, which
is below the pool's every score, so as long as the pool is at least
``top_k`` the answer is the exhaustive one (exact KNN for sqlite-vec; for
pgvector's HNSW index up to its recall, widened with ``hnsw.ef_search``).

One table per embedding dimension (a vector column has a fixed width):

    SQLite      chunks_vec_<dim>  vec0(chunk_id text primary key,
                                       collection_id text partition key,
                                       embedding float[<dim>] distance_metric=cosine)
    PostgreSQL  chunks_vec_<dim>  (chunk_id text primary key, collection_id text,
                                   embedding vector(<dim>)), HNSW index, vector_cosine_ops

``chunks.vector`` (float32 blobs) stays the source of truth: index rows are
written and deleted with their chunks in the same transaction, and
``reconcile`` (migration 0003 and every start of rag) creates missing tables,
backfills missing rows and drops rows of deleted chunks, so a database
written while the index was unavailable is indexed once it is available.

Availability is per connection and logged once per process with its reason:
sqlite-vec needs a SQLite that loads extensions (``enable_load_extension``;
a Python built without it, like this machine's, is reached through SQLite's
own C API on the library ``_sqlite3`` links, see ``_load_with_c_api``);
pgvector needs ``CREATE EXTENSION vector`` (``make pg-deps``).
``RAG_VECTOR_INDEX=off`` (``disable``) forces the exhaustive path.
"""

from __future__ import annotations

import ctypes
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from ..embed import pack, unpack

__all__ = [
    "POOL_SIZE",
    "delete",
    "disable",
    "index_dimensions",
    "load_sqlite_vec",
    "nearest",
    "reconcile",
    "unavailable_reason",
    "write",
]

log = logging.getLogger(__name__)

#: Nearest chunks asked of the index per query (at least the query's top_k).
POOL_SIZE = 64

_SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION = 1005
_INFO_KEY = "rag.vector_index"
_disabled_reason: str | None = None
_logged: set[str] = set()


def disable(reason: str | None) -> None:
    """Use no vector index in this process, for ``reason`` (``RAG_VECTOR_INDEX=off``);
    None uses it again where available."""
    global _disabled_reason
    _disabled_reason = reason


def _table(dim: int) -> str:
    return f"chunks_vec_{int(dim)}"


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        log.warning("rag: %s", message)


def _load_with_c_api(conn: sqlite3.Connection, path: str) -> None:
    """Load an extension into a connection of a Python built without ``enable_load_extension``.

    The ``sqlite3.Connection`` object's first field after its object header is
    its ``sqlite3 *`` handle (CPython's ``pysqlite_Connection``); SQLite's C
    API enables extension loading for that handle only (``sqlite3_db_config``,
    not the SQL function) and loads the file. Refused unless the library
    found is the very one ``sqlite3`` reports (same version string).
    """
    lib = ctypes.CDLL("libsqlite3.so.0")
    lib.sqlite3_libversion.restype = ctypes.c_char_p
    if lib.sqlite3_libversion().decode() != sqlite3.sqlite_version:
        raise RuntimeError("the shared libsqlite3 is not the one the sqlite3 module uses")
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    lib.sqlite3_db_config.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.sqlite3_load_extension.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_char_p),
    ]
    error = ctypes.c_char_p()
    lib.sqlite3_db_config(handle, _SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, None)
    try:
        code = lib.sqlite3_load_extension(handle, path.encode(), None, ctypes.byref(error))
    finally:
        lib.sqlite3_db_config(handle, _SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, None)
    if code != 0:
        raise RuntimeError((error.value or b"sqlite3_load_extension failed").decode())


def load_sqlite_vec(conn: sqlite3.Connection, path: str | None = None) -> str | None:
    """Load sqlite-vec into ``conn``: None when loaded, else the reason it could not be."""
    try:
        import sqlite_vec

        path = path or sqlite_vec.loadable_path()
        if hasattr(conn, "enable_load_extension"):
            conn.enable_load_extension(True)
            try:
                conn.load_extension(path)
            finally:
                conn.enable_load_extension(False)
        else:
            _load_with_c_api(conn, path)
        conn.execute("SELECT vec_version()").fetchone()
    except (ImportError, OSError, RuntimeError, sqlite3.Error) as exc:
        return f"sqlite-vec not loaded ({exc}); vectors are ranked in Python"
    return None


def _sqlite3_of(dbapi_connection: Any) -> sqlite3.Connection:
    """The ``sqlite3.Connection`` under SQLAlchemy's adapters (sync pysqlite or aiosqlite)."""
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    inner = getattr(driver, "_conn", driver)  # aiosqlite.Connection keeps it in ``_conn``
    if not isinstance(inner, sqlite3.Connection):
        raise TypeError(f"not a sqlite3 connection: {type(inner).__name__}")
    return inner


def _probe(conn: Connection) -> str | None:
    """Why ``conn`` has no vector index (None when it has one); cached on the DBAPI connection."""
    if _disabled_reason is not None:
        return _disabled_reason
    info = conn.connection.info
    if _INFO_KEY not in info:
        if conn.dialect.name == "sqlite":
            info[_INFO_KEY] = load_sqlite_vec(_sqlite3_of(conn.connection.dbapi_connection))
        else:
            found = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
            info[_INFO_KEY] = (
                None
                if found.first() is not None
                else "the pgvector extension is not installed in this database (make pg-deps); "
                "vectors are ranked in Python"
            )
        if info[_INFO_KEY] is not None:
            _log_once(info[_INFO_KEY])
    reason: str | None = info[_INFO_KEY]
    return reason


def unavailable_reason(conn: Connection) -> str | None:
    """Public twin of ``_probe`` for migrations and tests."""
    return _probe(conn)


def index_dimensions(conn: Connection) -> list[int]:
    """Dimensions that have an index table."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'chunks_vec_%'")
        )
    else:
        rows = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'chunks_vec_%'")
        )
    dims = []
    for (name,) in rows:
        suffix = name.removeprefix("chunks_vec_")
        if suffix.isdigit():
            dims.append(int(suffix))
    return dims


def _create(conn: Connection, dim: int) -> None:
    table = _table(dim)
    if conn.dialect.name == "sqlite":
        conn.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0(chunk_id text primary key, "
                f"collection_id text partition key, embedding float[{dim}] distance_metric=cosine)"
            )
        )
    else:
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {table} (chunk_id text PRIMARY KEY, "
                f"collection_id text NOT NULL, embedding vector({dim}) NOT NULL)"
            )
        )
        conn.execute(
            text(f"CREATE INDEX IF NOT EXISTS ix_{table}_collection ON {table} (collection_id)")
        )
        conn.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS ix_{table}_hnsw ON {table} "
                "USING hnsw (embedding vector_cosine_ops)"
            )
        )


def _as_param(conn: Connection, vector: Sequence[float]) -> bytes | str:
    """A vector as the database takes it: float32 blob (sqlite-vec), text literal (pgvector)."""
    if conn.dialect.name == "sqlite":
        return pack(vector)
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _insert(conn: Connection, dim: int, rows: Sequence[tuple[str, str, Sequence[float]]]) -> None:
    if not rows:
        return
    value = ":embedding" if conn.dialect.name == "sqlite" else "CAST(:embedding AS vector)"
    statement = text(
        f"INSERT INTO {_table(dim)} (chunk_id, collection_id, embedding) "
        f"VALUES (:chunk_id, :collection_id, {value})"
    )
    conn.execute(
        statement,
        [{"chunk_id": c, "collection_id": k, "embedding": _as_param(conn, v)} for c, k, v in rows],
    )


def write_sync(conn: Connection, rows: Sequence[tuple[str, str, Sequence[float]]]) -> None:
    """Index new chunks ``(chunk_id, collection_id, unit vector)`` in the open transaction."""
    if not rows or _probe(conn) is not None:
        return
    by_dim: dict[int, list[tuple[str, str, Sequence[float]]]] = {}
    for row in rows:
        by_dim.setdefault(len(row[2]), []).append(row)
    for dim, group in by_dim.items():
        _create(conn, dim)
        _insert(conn, dim, group)


def delete_sync(conn: Connection, chunk_ids: Sequence[str]) -> None:
    """Drop the index rows of ``chunk_ids`` in the open transaction."""
    if not chunk_ids or _probe(conn) is not None:
        return
    for dim in index_dimensions(conn):
        for start in range(0, len(chunk_ids), 500):
            batch = list(chunk_ids[start : start + 500])
            marks = ", ".join(f":c{i}" for i in range(len(batch)))
            conn.execute(
                text(f"DELETE FROM {_table(dim)} WHERE chunk_id IN ({marks})"),
                {f"c{i}": value for i, value in enumerate(batch)},
            )


def nearest_sync(
    conn: Connection, collection_id: str, vector: Sequence[float], k: int
) -> list[str] | None:
    """Ids of the collection's ``k`` chunks nearest ``vector``; None without an index for it."""
    dim = len(vector)
    if _probe(conn) is not None or dim not in index_dimensions(conn):
        return None
    if conn.dialect.name == "sqlite":
        statement = text(
            f"SELECT chunk_id FROM {_table(dim)} WHERE embedding MATCH :embedding "
            "AND k = :k AND collection_id = :collection ORDER BY distance"
        )
    else:
        # The HNSW scan filters by collection after the graph walk: search wider than k, and
        # let pgvector >= 0.8 keep scanning until k rows pass the filter.
        conn.execute(
            text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(max(k, 100))}
        )
        conn.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))
        statement = text(
            f"SELECT chunk_id FROM {_table(dim)} WHERE collection_id = :collection "
            "ORDER BY embedding <=> CAST(:embedding AS vector) LIMIT :k"
        )
    rows = conn.execute(
        statement, {"embedding": _as_param(conn, vector), "k": k, "collection": collection_id}
    )
    return [str(chunk_id) for (chunk_id,) in rows]


def reconcile(conn: Connection) -> int:
    """Bring the index in step with ``chunks`` (tables, missing rows, rows of deleted chunks).

    Returns the rows backfilled; 0 without an index. Idempotent, one pass over
    ``chunks`` ids; run by migration 0003 and at every start of rag.
    """
    if _probe(conn) is not None:
        return 0
    size = "length" if conn.dialect.name == "sqlite" else "octet_length"
    dims = [
        int(d) for (d,) in conn.execute(text(f"SELECT DISTINCT {size}(vector) / 4 FROM chunks"))
    ]
    added = 0
    for dim in sorted(set(dims) | set(index_dimensions(conn))):
        table = _table(dim)
        _create(conn, dim)
        conn.execute(text(f"DELETE FROM {table} WHERE chunk_id NOT IN (SELECT id FROM chunks)"))
        missing = conn.execute(
            text(
                f"SELECT id, collection_id, vector FROM chunks WHERE {size}(vector) = :bytes "
                f"AND id NOT IN (SELECT chunk_id FROM {table})"
            ),
            {"bytes": dim * 4},
        ).all()
        _insert(conn, dim, [(c, k, unpack(bytes(v))) for c, k, v in missing])
        added += len(missing)
    if added:
        log.info("rag: vector index backfilled with %d chunks", added)
    return added


async def write(session: AsyncSession, rows: Sequence[tuple[str, str, Sequence[float]]]) -> None:
    """``write_sync`` on the session's connection."""
    conn: AsyncConnection = await session.connection()
    await conn.run_sync(write_sync, rows)


async def delete(session: AsyncSession, chunk_ids: Sequence[str]) -> None:
    """``delete_sync`` on the session's connection."""
    conn: AsyncConnection = await session.connection()
    await conn.run_sync(delete_sync, chunk_ids)


async def nearest(
    session: AsyncSession, collection_id: str, vector: Sequence[float], k: int
) -> list[str] | None:
    """``nearest_sync`` on the session's connection."""
    conn: AsyncConnection = await session.connection()
    return await conn.run_sync(nearest_sync, collection_id, vector, k)
