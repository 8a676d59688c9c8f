"""Typed OpenAI wire models, parsed only where a body must be read or checked."""
