"""Mixer's gRPC API, versioned below so a new version can live beside the old one."""
