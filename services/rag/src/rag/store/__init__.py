"""Rag storage: table models (``models``)."""
