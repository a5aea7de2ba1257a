"""Galley: ingestion, validation and distribution of Istio-format configuration."""
