"""``EdgeState``: everything the lifespan builds, held on ``app.state.edge``.

Routes never touch it directly; ``api/deps.py`` hands out its parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from .api.proxy import Proxy
from .auth import KeyCache
from .budget import BudgetGate
from .channels import ChannelCache
from .config import EdgeSettings
from .drain import Drain
from .endpoints import EndpointCache
from .gateways import GatewayCache, Retriever
from .metrics import EdgeMetrics
from .passthrough import Passthrough
from .pipeline.limits_step import LimitsStep
from .pricebook import PriceBook
from .projects import ProjectCache
from .rag_client import RagClient
from .router_client import RouterClient
from .sessions_client import SessionsClient

__all__ = ["EdgeState"]


@dataclass(frozen=True, slots=True)
class EdgeState:
    """The live objects of one running edge app."""

    settings: EdgeSettings
    metrics: EdgeMetrics
    nats: Client
    engine: AsyncEngine
    keys: KeyCache
    projects: ProjectCache
    endpoints: EndpointCache
    catalog: PriceBook
    router: RouterClient
    budget: BudgetGate
    passthrough: Passthrough
    sessions: SessionsClient
    proxy: Proxy
    limits: LimitsStep
    drain: Drain
    #: Channels (seed 003) by key hash and project (``edge.channels``).
    channels: ChannelCache
    #: Knowledge collections and retrieval in the rag service (``edge.rag_client``).
    rag: RagClient
    #: Seed 002's gateways by project, id and ``name:short`` (``edge.gateways``).
    gateways: GatewayCache
    #: Retrieval for gateways with a collection (``RagRetriever`` over ``rag``; None: none,
    #: so a gateway with a collection answers as its ``on_rag_failure`` says).
    retriever: Retriever | None = None
