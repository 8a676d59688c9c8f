"""gateway_common: what several Switchyard services share.

Modules (import them by name; this package re-exports nothing heavy):

    settings    BaseServiceSettings (pydantic-settings), the operator contract's names
    errors      the GatewayError taxonomy and its gRPC/HTTP mappings
    catalog     the model catalog schema (router routes from it, billing prices from it)
    pricing     usage event -> SKU line items at the catalog's dated prices (exact decimals)
    subjects    NATS stream, subject and durable names
    events      versioned JetStream event payloads
    nats        connect, stream declarations, health request/reply
    netguard    refuses provider base URLs that point into private or metadata networks
    db          async engines, Alembic migrations per service
    lean        entry points: import nats-py without aiohttp (its WebSocket-only dependency)
    migrate_proc  db.migrate / db.wait_for_head in a child process (services never import Alembic)
    grpc        interceptors, channel options, health service
    telemetry   logging, tracing, the request-id context variable
    runtime     process plumbing of the NATS-facing services (serve, migrate, pull loop)
    testing     real-infrastructure test support (nats-server, throwaway PostgreSQL, processes)
    openai      typed OpenAI wire models used where a body must be read
    responses_store  request/reply payloads between the edge and sessions for stored Responses
    billing_api      request/reply payloads of billing: budget leases, budgets, credits, reports
    sessions_history request/reply payloads between the edge and sessions for session history
    rag_api          request/reply payloads between the edge and rag for retrieval
    messages         NatsMessage, the base of those request/reply payloads
"""

__all__ = [
    "billing_api",
    "catalog",
    "db",
    "errors",
    "events",
    "grpc",
    "lean",
    "migrate_proc",
    "nats",
    "netguard",
    "openai",
    "pricing",
    "responses_store",
    "runtime",
    "sessions_history",
    "settings",
    "subjects",
    "telemetry",
    "testing",
]
