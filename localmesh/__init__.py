"""The local mesh: pilot, one sidecar per workload and demo applications, as processes on one host.

Every workload ("pod") gets its own loopback address, so every sidecar keeps Istio's standard
ports. The application behind a sidecar listens on a private loopback address of its own that
only its sidecar forwards to, and reaches other services through its sidecar's HTTP proxy port.
With root, `--capture` (`capture`, `netns`, `capture_config`) gives every pod a network
namespace of its own instead, with iptables capture and an application that knows no proxy.
"""
