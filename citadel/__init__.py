"""Citadel: the mesh CA that signs SPIFFE X.509 certificates for authenticated workloads."""
