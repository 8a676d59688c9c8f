"""The admin API under ``/admin``: projects, their API keys, managed provider credentials and
Gateway API endpoints, and (``billing``) their budgets, credits, spend and usage.

Who may call, the error shape and how key changes reach every edge: see ``base``.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import billing, channels, credentials, endpoints, gateways, keys, projects

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"])
router.include_router(projects.router)
router.include_router(keys.router)
router.include_router(credentials.router)
router.include_router(endpoints.router)
router.include_router(gateways.router)
router.include_router(billing.router)
router.include_router(channels.router)
