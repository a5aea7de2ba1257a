"""Citadel's v1 CSR API, wire-compatible with Istio's istio.v1.auth service.

Import the generated modules from here: `from protos.citadel.v1 import ca_pb2, ca_pb2_grpc`.
"""
