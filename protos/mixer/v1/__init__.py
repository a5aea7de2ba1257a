"""Mixer's v1 API, wire-compatible with Istio's istio.mixer.v1 (Check, Report, attributes).

Import the generated modules from here:
`from protos.mixer.v1 import attributes_pb2, mixer_pb2, mixer_pb2_grpc`.
"""
