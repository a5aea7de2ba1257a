"""Mixer's compiled-in templates and adapters: the tables config is checked against.

A template is the shape of the data an instance hands to a handler: its fields (proto field
names, snake_case), each with the type its expression must have, and its `Variety` (when Mixer
uses its instances: check, quota, report, attribute generation) and, for an attribute
generator, its typed outputs (`$out.<field>` in attribute bindings). `TEMPLATES` lists Istio 1.4's
compiled-in templates; an instance of a template not listed is an out-of-process one, whose
expressions are compiled with whatever type they have. `ADAPTER_TEMPLATES` lists which
templates each common compiled-in adapter supports, so a rule sending an adapter instances it
cannot take is a config error. Tables only: immutable, no behaviour.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from meshconfig.policy.attributes import ValueType


class Variety(enum.Enum):
    """When Mixer uses a template's instances."""

    CHECK = "check"
    QUOTA = "quota"
    REPORT = "report"
    ATTRIBUTE_GENERATOR = "attribute_generator"


@dataclass(frozen=True, slots=True)
class MapOf:
    """A template field that is a map of string keys to values of `value` (None: any type)."""

    value: ValueType | None


# A template field: a type, None (istio.policy.v1beta1.Value: any type), a map or a message.
FieldType = ValueType | None | MapOf | Mapping[str, Any]

S, I64, B = ValueType.STRING, ValueType.INT64, ValueType.BOOL
TS, IP = ValueType.TIMESTAMP, ValueType.IP_ADDRESS
_ANY_MAP = MapOf(None)
# What a STRING field takes: text, or a value with a text form (Istio's bookinfo listentry
# sample gives `value: source.ip | ip("0.0.0.0")`), converted to its text.
TEXT_TYPES: Final = frozenset(
    {S, ValueType.IP_ADDRESS, ValueType.DNS_NAME, ValueType.EMAIL_ADDRESS, ValueType.URI}
)


@dataclass(frozen=True, slots=True)
class Template:
    """`outputs`: what an attribute generator's adapter returns (its OutputTemplate), each
    output field typed: an instance's `attributeBindings` read them as `$out.<field>`."""

    variety: Variety
    fields: Mapping[str, FieldType]
    outputs: Mapping[str, ValueType] = field(default_factory=lambda: MappingProxyType({}))


OUTPUT_PREFIX: Final = "$out."

# The kubernetes template's OutputTemplate (Istio 1.4's mixer/adapter/kubernetesenv/template):
# the source's and destination's pod and workload.
_KUBERNETES_OUTPUTS: Final[Mapping[str, ValueType]] = MappingProxyType(
    {
        f"{side}_{name}": kind
        for side in ("source", "destination")
        for name, kind in (
            ("pod_uid", ValueType.STRING),
            ("pod_ip", ValueType.IP_ADDRESS),
            ("pod_name", ValueType.STRING),
            ("labels", ValueType.STRING_MAP),
            ("namespace", ValueType.STRING),
            ("service_account_name", ValueType.STRING),
            ("host_ip", ValueType.IP_ADDRESS),
            ("workload_uid", ValueType.STRING),
            ("workload_name", ValueType.STRING),
            ("workload_namespace", ValueType.STRING),
            ("owner", ValueType.STRING),
            *((("container_name", ValueType.STRING),) if side == "destination" else ()),
        )
    }
)


# Istio 1.4's compiled-in templates and their fields (proto field names).
TEMPLATES: Final[Mapping[str, Template]] = MappingProxyType(
    {
        "checknothing": Template(Variety.CHECK, {}),
        "listentry": Template(Variety.CHECK, {"value": S}),
        "apikey": Template(
            Variety.CHECK,
            {"api": S, "api_version": S, "api_operation": S, "api_key": S, "timestamp": TS},
        ),
        "authorization": Template(
            Variety.CHECK,
            {
                "subject": {"user": S, "groups": S, "properties": _ANY_MAP},
                "action": {
                    "namespace": S,
                    "service": S,
                    "method": S,
                    "path": S,
                    "properties": _ANY_MAP,
                },
            },
        ),
        "quota": Template(Variety.QUOTA, {"dimensions": _ANY_MAP}),
        "reportnothing": Template(Variety.REPORT, {}),
        "metric": Template(
            Variety.REPORT,
            {
                "value": None,
                "dimensions": _ANY_MAP,
                "monitored_resource_type": S,
                "monitored_resource_dimensions": _ANY_MAP,
            },
        ),
        "logentry": Template(
            Variety.REPORT,
            {
                "variables": _ANY_MAP,
                "timestamp": TS,
                "severity": S,
                "monitored_resource_type": S,
                "monitored_resource_dimensions": _ANY_MAP,
            },
        ),
        "tracespan": Template(
            Variety.REPORT,
            {
                **dict.fromkeys(("trace_id", "span_id", "parent_span_id", "span_name"), S),
                **dict.fromkeys(("start_time", "end_time"), TS),
                "span_tags": _ANY_MAP,
                "http_status_code": I64,
                **dict.fromkeys(("client_span", "rewrite_client_span_id"), B),
                **dict.fromkeys(("source_name", "destination_name", "api_protocol"), S),
                **dict.fromkeys(("source_ip", "destination_ip"), IP),
                **dict.fromkeys(
                    ("request_size", "request_total_size", "response_size", "response_total_size"),
                    I64,
                ),
            },
        ),
        "edge": Template(
            Variety.REPORT,
            {
                "timestamp": TS,
                **dict.fromkeys(
                    (
                        f"{side}_{part}"
                        for side in ("source", "destination")
                        for part in ("workload_namespace", "workload_name", "owner", "uid")
                    ),
                    S,
                ),
                **dict.fromkeys(
                    (
                        "destination_service_namespace",
                        "destination_service_name",
                        "context_protocol",
                        "api_protocol",
                    ),
                    S,
                ),
            },
        ),
        "kubernetes": Template(
            Variety.ATTRIBUTE_GENERATOR,
            {
                **dict.fromkeys(("source_uid", "destination_uid", "origin_uid"), S),
                **dict.fromkeys(("source_ip", "destination_ip", "origin_ip"), IP),
                "destination_port": I64,
            },
            _KUBERNETES_OUTPUTS,
        ),
    }
)

# The templates each of Istio 1.4's common compiled-in adapters supports. A handler of an
# adapter listed here that gets an instance of another template is a config error; adapters
# not listed are not checked (Mixer's own adapter registry decides at run time).
ADAPTER_TEMPLATES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "denier": frozenset({"checknothing", "listentry", "quota"}),
        "listchecker": frozenset({"listentry"}),
        "memquota": frozenset({"quota"}),
        "redisquota": frozenset({"quota"}),
        "servicegraph": frozenset({"metric"}),  # this project's, not Istio's
        "prometheus": frozenset({"metric"}),
        "statsd": frozenset({"metric"}),
        "stdio": frozenset({"logentry", "metric"}),
        "fluentd": frozenset({"logentry"}),
        "kubernetesenv": frozenset({"kubernetes"}),
        "noop": frozenset(TEMPLATES) - {"kubernetes", "apikey", "edge"},
    }
)
