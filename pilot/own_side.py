"""Which proxies can share one generated own side (inbound clusters, their own listeners).

Replicas of a workload differ in who they are (node id, IP, pod name, further instance IPs)
and usually in nothing their own side is made from: with traffic capture their inbound
listeners bind the wildcard address and their inbound clusters point at the application on
APP_ADDRESS. Generating an own side costs about 180 µs a proxy, so connecting 2000 proxies
from cold spent some 0.36 s of pilot's CPU making the same few sides again and again.

`sharing_key` is what a proxy's own side can depend on in one push context: every field of
the proxy except those identity fields, the ports of its service instances, and an identity
field only where the own side uses it:

- the IP where listeners are bound to it or connections sent to it: no traffic capture
  (`InterceptionMode.NONE`), an HTTP proxy listener, a Sidecar with ingress listeners (which
  bind to and forward to the IP unless told otherwise); elsewhere only whether it is IPv4 or
  IPv6;
- the pod and workload name, and which services the instances are of, where Mixer's
  attributes name the workload and the service (policy checks or telemetry reports on).

Proxies with equal keys get one generated side. The claim that nothing else tells their sides
apart is what `tests/unit/pilot/test_own_side.py` checks: across the features own sides are
made from, it generates the sides of proxies that differ only in what the key leaves out and
requires them to be byte-identical, so a generator that starts reading a left-out field fails
it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from typing import Any

from pilot.model import InterceptionMode, Proxy, ServiceInstance
from pilot.push_context import PushContext

_IDENTITY = frozenset({"id", "ip", "pod_name", "name", "instance_ips"})
_SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(Proxy) if f.name not in _IDENTITY)


def sharing_key(ctx: PushContext, proxy: Proxy, instances: tuple[ServiceInstance, ...]) -> Hashable:
    """Equal for two proxies of `ctx` whose own sides are equal; see the module docstring.
    `instances` are `ctx.instances_for(proxy)`."""
    fields = tuple(_hashable(getattr(proxy, name)) for name in _SHARED_FIELDS)
    uses_ip = (
        proxy.interception_mode is InterceptionMode.NONE
        or proxy.http_proxy_port is not None
        or bool(ctx.scope(ctx.view_for(proxy)).ingress)
    )
    served: tuple[Hashable, ...] = tuple((i.port, i.endpoint.port) for i in instances)
    names: Hashable = None
    if ctx.mesh.policy_checks or ctx.mesh.telemetry_reports:
        names = (proxy.name, proxy.pod_name)
        # The instances' services are the context's own objects: their identity stands for
        # their content for as long as the context (and so the key) lives.
        served += tuple(id(i.service) for i in instances)
    return (fields, served, proxy.ip if uses_ip else ":" in proxy.ip, names)


def _hashable(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return tuple(sorted(value.items()))
    return value  # type: ignore[no-any-return]
