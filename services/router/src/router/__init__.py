"""Switchyard router service."""
