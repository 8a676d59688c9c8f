"""Switchyard rag service."""
