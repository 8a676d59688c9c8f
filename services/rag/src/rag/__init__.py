"""Switchyard rag: knowledge collections (ingest, chunk, embed, store, retrieve).

Modules: ``config`` (settings), ``store`` (tables), ``main`` (composition
root). Process plumbing comes from ``gateway_common.runtime``.
"""
