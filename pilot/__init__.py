"""Pilot: service discovery and xDS for Envoy sidecars and gateways.

Pilot keeps a service model (services, ports, workload instances, proxies), rebuilds an
immutable push context on debounced changes, generates Envoy configuration per proxy view and
serves it over ADS (state of the world and delta) on 15010, with monitoring on 15014.
"""
