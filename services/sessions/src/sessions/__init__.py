"""Switchyard sessions: conversation history by session id and stored Responses.

Modules: ``config`` (settings), ``store`` (tables and repository functions),
``handlers`` (stored-responses request/reply over NATS), ``main`` (composition
root). Process plumbing comes from ``gateway_common.runtime``.
"""
