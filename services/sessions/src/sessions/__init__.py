"""Switchyard sessions service."""
