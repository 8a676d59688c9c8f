"""NATS names in one place: streams, subjects, durable consumers, request/reply.

Events (JetStream, durable, at-least-once; consumers are idempotent on the
event id, which is also the ``Nats-Msg-Id`` so the stream de-duplicates
re-publishes within its duplicate window):

    stream USAGE        subjects usage.>        durable consumer "billing-ledger"
    stream TRANSCRIPTS  subjects session.>      durable consumer "sessions-history"

Rate-limit counters (JetStream counter streams, ``allow_msg_counter``: each
``Nats-Incr`` publish is one atomic add answered with the new total; one subject
per scope, kind and clock-aligned window; no consumers):

    stream RATELIMIT_MINUTE  subjects ratelimit.minute.>  (kept 3 min)
    stream RATELIMIT_DAY     subjects ratelimit.day.>     (kept 25 h)

Request/reply (core NATS, with deadlines):

    health.<service>    each service answers {"service", "status"}
    keys.changed.v1     broadcast: an API key changed; edges refresh their cache
    credentials.changed.v1  broadcast {"project_id"}: a project's managed credentials
                        changed; edges reload that project's sealed credentials
    projects.changed.v1 broadcast {"project_id"}: a project was created, changed or
                        deleted; edges reload its settings (anything else: all projects)
    endpoints.changed.v1  broadcast {"project_id"}: a project's Gateway API endpoints
                        changed; edges reload that project's endpoints (anything else: all)
    console.logout.v1   broadcast {"sid"}: a console session signed out (its row is in the
                        edge's console_logouts); every edge refuses its cookie at once
    billing.budgets.changed.v1  broadcast ``billing_api.BudgetsChanged``: billing committed
                        a budget or credits change of an account; every edge drops what it
                        cached for that account (leases, "unlimited", refusals). Core NATS:
                        a missed message is bounded by the lease TTL

    sessions.responses.put.v1     store a Response (reply sent after the commit)
    sessions.responses.get.v1     one stored Response of a project
    sessions.responses.delete.v1  delete one stored Response of a project
                                  (payloads: gateway_common.responses_store; queue group
                                  "sessions", so replicas share the work)
    sessions.history.open.v1      start or resume a conversation session, read its turns
    sessions.history.append.v1    append turns to a session (reply sent after the commit)
    sessions.history.get.v1       the turns of one session of a project and scope
                                  (payloads: gateway_common.sessions_history; queue
                                  group "sessions")

    rag.query.v1                  the best chunks of one collection of a project for a query
    rag.collections.{create,list,get,delete}.v1   a project's knowledge collections
    rag.documents.{add,list,get,delete}.v1        their documents (add queues ingestion)
                                  (payloads: gateway_common.rag_api; queue group "rag")

    billing.budget.lease.v1       grant a budget lease to an edge (admission without a DB trip)
    billing.budget.release.v1     close a lease, reporting what was spent under it
    billing.budget.set.v1         set or delete a monthly budget (project or key)
    billing.credits.topup.v1      add prepaid credits (idempotent by the client's topup id)
    billing.spend.get.v1          spend, budgets and credits of a project (and key)
    billing.usage.query.v1        usage and cost grouped by key, model, day or endpoint
    billing.request.get.v1        one request's ledger entries and line items
                                  (payloads: gateway_common.billing_api; queue group
                                  "billing")
"""

from __future__ import annotations

__all__ = [
    "BILLING_BUDGETS_CHANGED",
    "BILLING_BUDGET_LEASE",
    "BILLING_BUDGET_RELEASE",
    "BILLING_BUDGET_SET",
    "BILLING_CREDITS_TOPUP",
    "BILLING_DURABLE",
    "BILLING_QUEUE",
    "BILLING_REQUEST_GET",
    "BILLING_SPEND_GET",
    "BILLING_USAGE_QUERY",
    "CONSOLE_LOGOUT",
    "CREDENTIALS_CHANGED",
    "ENDPOINTS_CHANGED",
    "GATEWAYS_CHANGED",
    "HEALTH_PREFIX",
    "HISTORY_APPEND",
    "HISTORY_GET",
    "HISTORY_OPEN",
    "KEYS_CHANGED",
    "PROJECTS_CHANGED",
    "RAG_COLLECTION_CREATE",
    "RAG_COLLECTION_DELETE",
    "RAG_COLLECTION_GET",
    "RAG_COLLECTION_LIST",
    "RAG_DOCUMENT_ADD",
    "RAG_DOCUMENT_DELETE",
    "RAG_DOCUMENT_GET",
    "RAG_DOCUMENT_LIST",
    "RAG_QUERY",
    "RAG_QUEUE",
    "RATELIMIT_DAY_PREFIX",
    "RATELIMIT_DAY_STREAM",
    "RATELIMIT_MINUTE_PREFIX",
    "RATELIMIT_MINUTE_STREAM",
    "RESPONSES_DELETE",
    "RESPONSES_GET",
    "RESPONSES_PUT",
    "SESSIONS_DURABLE",
    "SESSIONS_QUEUE",
    "SESSION_TURN_APPENDED",
    "TRANSCRIPTS_STREAM",
    "TRANSCRIPTS_SUBJECTS",
    "USAGE_RECORDED",
    "USAGE_STREAM",
    "USAGE_SUBJECTS",
    "health_subject",
]

USAGE_STREAM = "USAGE"
USAGE_SUBJECTS = ["usage.>"]
USAGE_RECORDED = "usage.recorded.v1"
BILLING_DURABLE = "billing-ledger"

BILLING_BUDGET_LEASE = "billing.budget.lease.v1"
BILLING_BUDGET_RELEASE = "billing.budget.release.v1"
BILLING_BUDGET_SET = "billing.budget.set.v1"
BILLING_BUDGETS_CHANGED = "billing.budgets.changed.v1"
BILLING_CREDITS_TOPUP = "billing.credits.topup.v1"
BILLING_SPEND_GET = "billing.spend.get.v1"
BILLING_USAGE_QUERY = "billing.usage.query.v1"
BILLING_REQUEST_GET = "billing.request.get.v1"
BILLING_QUEUE = "billing"

RATELIMIT_MINUTE_STREAM = "RATELIMIT_MINUTE"
RATELIMIT_MINUTE_PREFIX = "ratelimit.minute"
RATELIMIT_DAY_STREAM = "RATELIMIT_DAY"
RATELIMIT_DAY_PREFIX = "ratelimit.day"

TRANSCRIPTS_STREAM = "TRANSCRIPTS"
TRANSCRIPTS_SUBJECTS = ["session.>"]
SESSION_TURN_APPENDED = "session.turn.appended.v1"
SESSIONS_DURABLE = "sessions-history"

RESPONSES_PUT = "sessions.responses.put.v1"
RESPONSES_GET = "sessions.responses.get.v1"
RESPONSES_DELETE = "sessions.responses.delete.v1"
HISTORY_OPEN = "sessions.history.open.v1"
HISTORY_APPEND = "sessions.history.append.v1"
HISTORY_GET = "sessions.history.get.v1"
SESSIONS_QUEUE = "sessions"

RAG_QUERY = "rag.query.v1"
RAG_COLLECTION_CREATE = "rag.collections.create.v1"
RAG_COLLECTION_LIST = "rag.collections.list.v1"
RAG_COLLECTION_GET = "rag.collections.get.v1"
RAG_COLLECTION_DELETE = "rag.collections.delete.v1"
RAG_DOCUMENT_ADD = "rag.documents.add.v1"
RAG_DOCUMENT_LIST = "rag.documents.list.v1"
RAG_DOCUMENT_GET = "rag.documents.get.v1"
RAG_DOCUMENT_DELETE = "rag.documents.delete.v1"
RAG_QUEUE = "rag"

HEALTH_PREFIX = "health"
KEYS_CHANGED = "keys.changed.v1"
CREDENTIALS_CHANGED = "credentials.changed.v1"
PROJECTS_CHANGED = "projects.changed.v1"
ENDPOINTS_CHANGED = "endpoints.changed.v1"
#: A project's seed-002 gateways changed: ``{"project_id"}`` (``edge.gatewaysync``).
GATEWAYS_CHANGED = "gateways.changed.v1"
#: A console session signed out: ``{"sid"}`` (``edge.consolesync``).
CONSOLE_LOGOUT = "console.logout.v1"


def health_subject(service: str) -> str:
    """The request/reply subject on which ``service`` answers health checks."""
    return f"{HEALTH_PREFIX}.{service}"
