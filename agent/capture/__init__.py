"""Transparent traffic capture: Istio's iptables rules that send a pod's TCP through Envoy.

`rules` builds the rules from istio-iptables' settings, `iptables` installs, checks and
removes them in a network namespace, `cli` is `mesh-agent iptables` (the istio-init role).
The CNI plugin (`agent.cni`) installs the same rules from a pod's network namespace.
"""
