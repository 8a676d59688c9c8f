"""Switchyard billing service."""
