"""Shared core of the mesh services.

Holds only what several services need: the generic xDS server (state of the world and
delta), gRPC set-up, the monitoring HTTP server, logging, and locating the Envoy binary.
Nothing in here knows about Istio's service model; that belongs to the services.
"""
