"""Switchyard sessions: conversation history by session id and stored Responses.

Modules: ``config`` (settings), ``store`` (tables), ``main`` (composition
root). Process plumbing comes from ``gateway_common.runtime``.
"""
