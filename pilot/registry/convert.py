"""Validated ServiceEntry and WorkloadEntry specs -> pilot's service model.

`meshconfig` has already checked each spec as Istio would (schema, ranges, enums, the rules
between fields), whatever delivered it (a directory or galley). What is left here is the
conversion, and refusing what Istio accepts but this mesh cannot serve.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshconfig.networking.service_entry import ServiceEntry
from meshconfig.networking.workload_entry import WorkloadEntry
from pilot.model import (
    DISABLED_TLS_MODE,
    ISTIO_TLS_MODE,
    POLICY_CHECK_ANNOTATION,
    TLS_MODE_LABEL,
    Location,
    Protocol,
    Resolution,
    Service,
    ServicePort,
    WorkloadInstance,
)
from pilot.registry.errors import ConfigError, Source


def service_entry(
    spec: ServiceEntry, source: Source, annotations: Mapping[str, str] | None = None
) -> tuple[Service, ...]:
    """One `Service` per host of a ServiceEntry, all sharing its ports, addresses and endpoints
    (and what its `annotations` say about policy checks)."""
    check = (annotations or {}).get(POLICY_CHECK_ANNOTATION, "enable")
    if check not in ("enable", "disable"):
        raise ConfigError(
            source,
            f"metadata.annotations[{POLICY_CHECK_ANNOTATION}]",
            f"must be enable or disable, not {check!r}",
        )
    if spec.resolution == "DYNAMIC_DNS":
        raise ConfigError(source, "spec.resolution", "DYNAMIC_DNS is not supported by this mesh")
    for index, host in enumerate(spec.hosts):
        if host in spec.hosts[:index]:
            raise ConfigError(source, f"spec.hosts[{index}]", f"host {host!r} is listed twice")
    ports = tuple(
        ServicePort(
            name=port.name,
            number=port.number,
            protocol=Protocol.for_port(port.protocol, port.name),
            target_port=port.target_port,
        )
        for port in spec.ports or ()
    )
    selector = spec.workload_selector
    endpoints = tuple(
        _workload(endpoint, f"spec.endpoints[{index}]", "", source)
        for index, endpoint in enumerate(spec.endpoints or ())
    )
    return tuple(
        Service(
            hostname=host,
            namespace=source.namespace,
            ports=ports,
            addresses=tuple(spec.addresses or ()),
            resolution=Resolution(spec.resolution or Resolution.NONE),
            location=Location(spec.location or Location.MESH_EXTERNAL),
            workload_selector=None if selector is None else dict(selector.labels or {}),
            endpoints=endpoints,
            policy_checks=check == "enable",
        )
        for host in spec.hosts
    )


def workload_entry(spec: WorkloadEntry, source: Source) -> WorkloadInstance:
    return _workload(spec, "spec", source.name, source)


def _workload(spec: WorkloadEntry, path: str, name: str, source: Source) -> WorkloadInstance:
    """A WorkloadEntry spec, or an endpoint inside a ServiceEntry (the same shape)."""
    if not spec.address:
        # Istio reaches an address-less workload through its network's gateway; we have none.
        raise ConfigError(
            source, f"{path}.address", "is required (network gateways are not supported)"
        )
    if spec.is_unix:
        raise ConfigError(source, f"{path}.address", "unix domain sockets are not supported")
    return WorkloadInstance(
        name=name,
        namespace=source.namespace,
        address=spec.address,
        labels=spec.labels or {},
        ports=spec.ports or {},
        service_account=spec.service_account or "",
        locality=spec.locality or "",
        # Istio treats an unset or zero weight as 1; Envoy rejects zero.
        weight=spec.weight or 1,
        network=spec.network or "",
        # Istio's rule for entries: an explicit tlsMode label, else mutual TLS when the
        # workload has an identity (a service account) to present.
        tls_mode=(spec.labels or {}).get(TLS_MODE_LABEL)
        or (ISTIO_TLS_MODE if spec.service_account else DISABLED_TLS_MODE),
    )
