"""Istio ServiceEntry and WorkloadEntry specs -> model values, validated as Istio does.

This is the part of the registry that outlives the file reader: whatever delivers the resources
(a directory today, Galley later) hands their specs here. Validation follows Istio's CRD schema
and its admission rules, so a spec accepted here would be accepted by Istio and vice versa.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Final, TypeVar

from pilot.model import (
    Location,
    Protocol,
    Resolution,
    Service,
    ServicePort,
    WorkloadInstance,
    is_ip,
)
from pilot.registry.errors import Source
from pilot.registry.fields import MAX_UINT32, Fields

_DNS_LABEL: Final = r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?"
_HOSTNAME: Final = re.compile(rf"(\*\.)?{_DNS_LABEL}(\.{_DNS_LABEL})*")
_DNS_RESOLUTIONS: Final = frozenset({Resolution.DNS, Resolution.DNS_ROUND_ROBIN})


def service_entry(spec: object, source: Source) -> tuple[Service, ...]:
    """One `Service` per host of a ServiceEntry, all sharing its ports, addresses and endpoints."""
    fields = Fields(source)
    spec = fields.mapping(spec, "spec")
    resolution = _enum(fields, Resolution, spec.get("resolution"), "spec.resolution", "NONE")
    location = _enum(fields, Location, spec.get("location"), "spec.location", "MESH_EXTERNAL")
    hosts = _hosts(fields, spec, resolution)
    addresses = _addresses(fields, spec, resolution)
    ports = _ports(fields, spec)
    selector = _selector(fields, spec)
    endpoints = _endpoints(fields, spec, resolution, ports, source.namespace)
    if selector is not None and "endpoints" in spec:
        raise fields.error("spec", "only one of workloadSelector or endpoints can be set")
    return tuple(
        Service(
            hostname=host,
            namespace=source.namespace,
            ports=ports,
            addresses=addresses,
            resolution=resolution,
            location=location,
            workload_selector=selector,
            endpoints=endpoints,
        )
        for host in hosts
    )


def workload_entry(spec: object, source: Source) -> WorkloadInstance:
    fields = Fields(source)
    return _workload(fields, fields.mapping(spec, "spec"), "spec", source.name, source.namespace)


_Enum = TypeVar("_Enum", Resolution, Location)


def _enum(fields: Fields, kind: type[_Enum], value: object, path: str, default: str) -> _Enum:
    text = default if value is None else fields.string(value, path)
    if text == "DYNAMIC_DNS":
        raise fields.error(path, "DYNAMIC_DNS is not supported by this mesh")
    try:
        return kind(text)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise fields.error(path, f"{text!r} is not one of {choices}") from None


def _hosts(fields: Fields, spec: Mapping[str, object], resolution: Resolution) -> list[str]:
    if spec.get("hosts") is None:
        raise fields.error("spec.hosts", "is required")
    hosts = fields.sequence(spec["hosts"], "spec.hosts")
    if not hosts:
        raise fields.error("spec.hosts", "must list at least one host")
    result = []
    for i, item in enumerate(hosts):
        path = f"spec.hosts[{i}]"
        host = fields.string(item, path)
        if host == "*":
            raise fields.error(path, "hostname cannot be the wildcard '*'")
        if not _HOSTNAME.fullmatch(host):
            raise fields.error(path, f"{host!r} is not a valid DNS name")
        if host.startswith("*.") and resolution in _DNS_RESOLUTIONS:
            raise fields.error(path, f"wildcard host {host!r} cannot use {resolution} resolution")
        if host in result:
            raise fields.error(path, f"host {host!r} is listed twice")
        result.append(host)
    return result


def _addresses(
    fields: Fields, spec: Mapping[str, object], resolution: Resolution
) -> tuple[str, ...]:
    if spec.get("addresses") is None:
        return ()
    result = []
    for i, item in enumerate(fields.sequence(spec["addresses"], "spec.addresses")):
        path = f"spec.addresses[{i}]"
        address = fields.string(item, path)
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise fields.error(path, f"{address!r} is not an IP address or CIDR range") from None
        if "/" in address and resolution not in (Resolution.NONE, Resolution.STATIC):
            raise fields.error(path, "CIDR ranges are allowed only for NONE or STATIC resolution")
        result.append(address)
    return tuple(result)


def _ports(fields: Fields, spec: Mapping[str, object]) -> tuple[ServicePort, ...]:
    if spec.get("ports") is None:
        return ()
    ports: list[ServicePort] = []
    for i, item in enumerate(fields.sequence(spec["ports"], "spec.ports")):
        path = f"spec.ports[{i}]"
        port = fields.mapping(item, path)
        for required in ("number", "name"):
            if port.get(required) is None:
                raise fields.error(f"{path}.{required}", "is required")
        number = fields.port(port["number"], f"{path}.number")
        name = fields.string(port["name"], f"{path}.name")
        if not name:
            raise fields.error(f"{path}.name", "must not be empty")
        target = port.get("targetPort")
        protocol = fields.optional_string(port, "protocol", path)
        for other in ports:
            if other.name == name:
                raise fields.error(f"{path}.name", f"port name {name!r} is used twice")
            if other.number == number:
                raise fields.error(f"{path}.number", f"port number {number} is used twice")
        ports.append(
            ServicePort(
                name=name,
                number=number,
                protocol=Protocol.for_port(protocol, name),
                target_port=None if target is None else fields.port(target, f"{path}.targetPort"),
            )
        )
    return tuple(ports)


def _selector(fields: Fields, spec: Mapping[str, object]) -> dict[str, str] | None:
    if spec.get("workloadSelector") is None:
        return None
    selector = fields.mapping(spec["workloadSelector"], "spec.workloadSelector")
    labels = fields.string_map(selector.get("labels"), "spec.workloadSelector.labels")
    for key, value in labels.items():
        if "*" in value:
            raise fields.error(
                f"spec.workloadSelector.labels.{key}", "wildcards are not supported in selectors"
            )
    return labels


def _endpoints(
    fields: Fields,
    spec: Mapping[str, object],
    resolution: Resolution,
    ports: tuple[ServicePort, ...],
    namespace: str,
) -> tuple[WorkloadInstance, ...]:
    if spec.get("endpoints") is None:
        return ()
    items = fields.sequence(spec["endpoints"], "spec.endpoints")
    if resolution is Resolution.NONE and items:
        raise fields.error("spec.endpoints", "NONE resolution cannot list endpoints")
    if resolution is Resolution.DNS_ROUND_ROBIN and len(items) > 1:
        raise fields.error("spec.endpoints", "DNS_ROUND_ROBIN resolution allows one endpoint")
    port_names = {p.name for p in ports}
    result = []
    for i, item in enumerate(items):
        path = f"spec.endpoints[{i}]"
        workload = _workload(fields, fields.mapping(item, path), path, "", namespace)
        if resolution is Resolution.STATIC and not is_ip(workload.address):
            raise fields.error(
                f"{path}.address", f"{workload.address!r} is not an IP (resolution is STATIC)"
            )
        for name in workload.ports:
            if name not in port_names:
                raise fields.error(f"{path}.ports.{name}", "names no port of this ServiceEntry")
        result.append(workload)
    return tuple(result)


def _workload(
    fields: Fields, spec: Mapping[str, object], path: str, name: str, namespace: str
) -> WorkloadInstance:
    """A WorkloadEntry spec, or an endpoint inside a ServiceEntry (the same shape)."""
    address = fields.optional_string(spec, "address", path)
    if not address:
        raise fields.error(f"{path}.address", "is required")
    if address.startswith("unix://"):
        raise fields.error(f"{path}.address", "unix domain sockets are not supported")
    if not is_ip(address) and not _HOSTNAME.fullmatch(address):
        raise fields.error(f"{path}.address", f"{address!r} is not an IP address or DNS name")
    raw_weight = spec.get("weight")
    # Istio treats an unset or zero weight as 1; Envoy rejects zero.
    weight = (
        0 if raw_weight is None else fields.integer(raw_weight, f"{path}.weight", 0, MAX_UINT32)
    )
    return WorkloadInstance(
        name=name,
        namespace=namespace,
        address=address,
        labels=fields.string_map(spec.get("labels"), f"{path}.labels"),
        ports=fields.port_map(spec.get("ports"), f"{path}.ports"),
        service_account=fields.optional_string(spec, "serviceAccount", path),
        locality=fields.optional_string(spec, "locality", path),
        weight=weight or 1,
        network=fields.optional_string(spec, "network", path),
    )
