"""Galley's configuration distribution messages."""
