"""DestinationRule: what happens to traffic after routing picked a service (policies, subsets).

Pilot turns these into Envoy cluster settings: load balancing, connection pools, outlier
detection, client TLS, and the label subsets that VirtualService routes name. The connection
pool settings are also used by Sidecar's inbound listeners, so they live here and are shared.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from meshconfig.base import (
    CheckedModel,
    Count,
    Duration,
    Int32,
    IntPercent,
    Percent,
    Problem,
    UInt32,
)
from meshconfig.networking.checks import (
    Timeout,
    export_to_problems,
    fqdn_error,
    is_dns_label,
    is_ip,
    label_errors,
    wildcard_domain_error,
)
from meshconfig.networking.common import PortSelector
from meshconfig.selector import WorkloadSelector


class TcpKeepalive(CheckedModel):
    probes: UInt32 | None = None
    time: Timeout | None = None
    interval: Timeout | None = None


class TCPSettings(CheckedModel):
    max_connections: Count | None = None
    connect_timeout: Timeout | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Timeout | None = None
    idle_timeout: Timeout | None = None


class HTTP2KeepAlive(CheckedModel):
    interval: Timeout | None = None
    timeout: Timeout | None = None


class HTTPSettings(CheckedModel):
    http1_max_pending_requests: Count | None = None
    http2_max_requests: Count | None = None
    max_requests_per_connection: Count | None = None
    max_retries: Count | None = None
    idle_timeout: Timeout | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: Count | None = None
    http2_keep_alive: HTTP2KeepAlive | None = None

    def problems(self) -> Iterator[Problem]:
        if self.h2_upgrade_policy == "UPGRADE" and self.use_client_protocol:
            yield ("useClientProtocol",), "must not be true when h2UpgradePolicy is UPGRADE"


class ConnectionPoolSettings(CheckedModel):
    """Limits on connections and requests to each upstream host."""

    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None

    def problems(self) -> Iterator[Problem]:
        if self.tcp is None and self.http is None:
            yield (), "a connection pool needs tcp or http settings"


class Cookie(CheckedModel):
    name: str
    value: str | None = None


class HTTPCookie(CheckedModel):
    name: str
    path: str | None = None
    ttl: Duration | None = None
    attributes: list[Cookie] | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.name:
            yield ("name",), "a hash cookie needs a name"


class RingHash(CheckedModel):
    minimum_ring_size: Annotated[int, Field(ge=0)] | None = None


class MagLev(CheckedModel):
    table_size: Annotated[int, Field(ge=0)] | None = None

    def problems(self) -> Iterator[Problem]:
        size = self.table_size or 0
        if size == 0:
            yield ("tableSize",), "tableSize must be set for maglev"
        elif size >= 5000011:
            yield ("tableSize",), "tableSize must be less than 5000011"
        elif not _is_prime(size):
            yield ("tableSize",), f"tableSize {size} is not a prime number"


def _is_prime(number: int) -> bool:
    if number < 4:
        return number > 0
    if number % 2 == 0:
        return False
    return all(number % factor for factor in range(3, math.isqrt(number) + 1, 2))


class ConsistentHashLB(CheckedModel):
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: Annotated[int, Field(ge=0)] | None = None

    def problems(self) -> Iterator[Problem]:
        keys = self.set_fields(
            "http_header_name", "http_cookie", "use_source_ip", "http_query_parameter_name"
        )
        if len(keys) > 1:
            yield (keys[1],), f"only one hash key may be set, got {', '.join(keys)}"
        yield from self.only_one_of("ring_hash", "maglev")
        if self.minimum_ring_size and (self.ring_hash is not None or self.maglev is not None):
            yield ("minimumRingSize",), "cannot be used together with ringHash or maglev"


class BackendUtilization(CheckedModel):
    weight_update_period: Duration | None = None
    weight_expiration_period: Duration | None = None
    weight_stabilization_period: Duration | None = None
    error_utilization_penalty_percent: UInt32 | None = None
    metric_names_for_computing_utilization: list[str] | None = None


class Distribute(CheckedModel):
    from_: str | None = Field(None, alias="from")
    to: dict[str, UInt32] | None = None


class Failover(CheckedModel):
    from_: str | None = Field(None, alias="from")
    to: str | None = None

    def problems(self) -> Iterator[Problem]:
        source, target = self.from_ or "", self.to or ""
        if source == target:
            yield ("to",), "failover must go to a different region"
        if "/" in source or "/" in target:
            yield (), "failover names regions only (no zone or sub-zone)"
        if "*" in source or "*" in target:
            yield (), "failover regions must not contain '*'"


_TOPOLOGY_LABELS = frozenset(
    {"topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"}
)


class _LocalityFailover(CheckedModel):
    """Fields that locality- and zone-aware load balancing share."""

    enabled: bool | None = None
    failover: list[Failover] | None = None
    failover_priority: list[str] | None = None

    def problems(self) -> Iterator[Problem]:
        if self.failover:
            for index, label in enumerate(self.failover_priority or []):
                if label in _TOPOLOGY_LABELS:
                    yield (
                        ("failoverPriority", index),
                        f"topology label {label!r} cannot be combined with failover",
                    )


class LocalityLoadBalancerSetting(_LocalityFailover):
    distribute: list[Distribute] | None = None

    def problems(self) -> Iterator[Problem]:
        if self.distribute and self.failover:
            yield ("failover",), "cannot be used together with distribute"
        yield from super().problems()
        sources = []
        for index, rule in enumerate(self.distribute or []):
            sources.append(rule.from_ or "")
            weights = rule.to or {}
            if any(not 1 <= weight <= 100 for weight in weights.values()):
                yield ("distribute", index, "to"), "locality weights must be in the range 1-100"
            elif sum(weights.values()) != 100:
                total = sum(weights.values())
                yield ("distribute", index, "to"), f"weights must sum to 100, got {total}"
            invalid = _localities_error(list(weights))
            if invalid:
                yield ("distribute", index, "to"), invalid
        invalid = _localities_error(sources)
        if invalid:
            yield ("distribute",), invalid


def _localities_error(localities: list[str]) -> str | None:
    """Localities are region[/zone[/subzone]], may end in `*`, and must not overlap."""
    seen: list[tuple[str, ...]] = []
    for locality in localities:
        if locality.count("*") > 1 or ("*" in locality and not locality.endswith("*")):
            return f"locality {locality!r} may only end with a single '*'"
        parts = tuple(locality.split("/", 2))
        if any(part == "" for part in parts):
            return f"locality {locality!r} has an empty region, zone or sub-zone"
        parts = tuple(part for part in parts if part != "*")
        for other in seen:
            if parts[: len(other)] == other or other[: len(parts)] == parts:
                return f"locality {locality!r} overlaps an earlier one"
        seen.append(parts)
    return None


class ZoneAwareLoadBalancerSetting(_LocalityFailover):
    min_cluster_size: Annotated[int, Field(ge=1, le=4294967295)] | None = None


class WarmupConfiguration(CheckedModel):
    duration: Timeout
    minimum_percent: Percent | None = None
    aggression: Annotated[float, Field(ge=0)] | None = None


class LoadBalancerSettings(CheckedModel):
    """How requests are spread across the hosts of a service."""

    simple: (
        Literal[
            "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"
        ]
        | None
    ) = None
    consistent_hash: ConsistentHashLB | None = None
    backend_utilization: BackendUtilization | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = None
    warmup_duration_secs: Timeout | None = None
    warmup: WarmupConfiguration | None = None

    def problems(self) -> Iterator[Problem]:
        yield from self.only_one_of("simple", "consistent_hash", "backend_utilization")


class OutlierDetection(CheckedModel):
    consecutive_errors: Int32 | None = None
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = Field(None, alias="consecutive5xxErrors")
    interval: Timeout | None = None
    base_ejection_time: Timeout | None = None
    max_ejection_percent: IntPercent | None = None
    min_health_percent: IntPercent | None = None
    outlier_detection_http_error_codes: list[Annotated[int, Field(ge=100, le=599)]] | None = None

    def problems(self) -> Iterator[Problem]:
        if self.consecutive_local_origin_failures and not self.split_external_local_origin_errors:
            yield (
                ("consecutiveLocalOriginFailures",),
                "needs splitExternalLocalOriginErrors: true",
            )


class ClientTLSSettings(CheckedModel):
    """TLS that the sidecar originates towards the upstream."""

    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None

    def problems(self) -> Iterator[Problem]:
        if self.insecure_skip_verify and self.mode in {"SIMPLE", "MUTUAL"}:
            verifying = {
                "caCertificates": self.ca_certificates,
                "subjectAltNames": self.subject_alt_names,
            }
            if self.mode == "SIMPLE":
                verifying["credentialName"] = self.credential_name
            for alias, value in verifying.items():
                if value:
                    yield (alias,), "cannot be set when insecureSkipVerify is true"
        if self.mode in {"SIMPLE", "MUTUAL"} and self.credential_name:
            for alias, value in (
                ("clientCertificate", self.client_certificate),
                ("privateKey", self.private_key),
                ("caCertificates", self.ca_certificates),
                ("caCrl", self.ca_crl),
            ):
                if value:
                    yield (alias,), "cannot be set together with credentialName"
        elif self.mode == "MUTUAL":
            if not self.client_certificate:
                yield ("clientCertificate",), "is required for MUTUAL mode"
            if not self.private_key:
                yield ("privateKey",), "is required for MUTUAL mode"


class PortTrafficPolicy(CheckedModel):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None

    def problems(self) -> Iterator[Problem]:
        if self.port is None:
            yield ("port",), "is required"
        policies = (self.load_balancer, self.connection_pool, self.outlier_detection, self.tls)
        if all(policy is None for policy in policies):
            yield (), "a port traffic policy needs at least one setting besides port"


class TunnelSettings(CheckedModel):
    protocol: str | None = None
    target_host: str
    target_port: UInt32

    def problems(self) -> Iterator[Problem]:
        if self.protocol not in {None, "", "CONNECT", "POST"}:
            yield ("protocol",), "tunnel protocol must be CONNECT or POST"
        if fqdn_error(self.target_host) and not is_ip(self.target_host):
            yield ("targetHost",), f"{self.target_host!r} is neither a DNS name nor an IP address"
        if not 1 <= self.target_port <= 65535:
            yield ("targetPort",), f"port {self.target_port} is not in the range 1-65535"


class ProxyProtocol(CheckedModel):
    version: Literal["V1", "V2"] | None = None


class RetryBudget(CheckedModel):
    percent: Percent | None = None
    min_retry_concurrency: UInt32 | None = None
    budget_interval: Duration | None = None


class TrafficPolicy(CheckedModel):
    """Policies applied to all ports of a service (or a subset), with per-port overrides."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: Annotated[list[PortTrafficPolicy], Field(max_length=4096)] | None = None
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None

    def problems(self) -> Iterator[Problem]:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            yield (), "a traffic policy needs at least one setting"
        if self.tunnel is not None and self.proxy_protocol is not None:
            yield ("proxyProtocol",), "cannot be used together with tunnel"


class Subset(CheckedModel):
    """A named group of a service's endpoints, picked by labels."""

    name: str
    labels: dict[str, str] | None = None
    traffic_policy: TrafficPolicy | None = None

    def problems(self) -> Iterator[Problem]:
        if not is_dns_label(self.name):
            yield ("name",), f"invalid subset name {self.name!r} (must be a DNS-1123 label)"
        for key, reason in label_errors(self.labels or {}):
            yield ("labels", key), reason


class DestinationRule(CheckedModel):
    """The spec of networking.istio.io DestinationRule."""

    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None
    workload_selector: WorkloadSelector | None = None

    def problems(self) -> Iterator[Problem]:
        invalid = wildcard_domain_error(self.host)
        if invalid:
            yield ("host",), invalid
        seen: set[str] = set()
        for index, subset in enumerate(self.subsets or []):
            if subset.name in seen:
                yield ("subsets", index, "name"), f"duplicate subset name {subset.name!r}"
            seen.add(subset.name)
        yield from export_to_problems(self.export_to or [], allow_nobody=False)
