"""gateway_common: what several Switchyard services share.

Modules (import them by name; this package re-exports nothing heavy):

    settings    BaseServiceSettings (pydantic-settings), the operator contract's names
    errors      the GatewayError taxonomy and its gRPC/HTTP mappings
    catalog     the model catalog schema (router routes from it, billing prices from it)
    subjects    NATS stream, subject and durable names
    events      versioned JetStream event payloads
    nats        connect, stream declarations, health request/reply
    db          async engines, Alembic migrations per service
    grpc        interceptors, channel options, health service
    telemetry   logging, tracing, the request-id context variable
    runtime     process plumbing of the NATS-facing services (serve, migrate, pull loop)
    testing     real-infrastructure test support (nats-server, throwaway PostgreSQL, processes)
    openai      typed OpenAI wire models used where a body must be read
"""

__all__ = [
    "catalog",
    "db",
    "errors",
    "events",
    "grpc",
    "nats",
    "openai",
    "runtime",
    "settings",
    "subjects",
    "telemetry",
    "testing",
]
