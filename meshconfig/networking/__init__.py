"""Spec models of the networking.istio.io kinds, served at v1, v1beta1 and v1alpha3.

The models accept exactly the fields of Istio's CRD schemas (a unit test walks the CRDs to
prove it) and add the semantic rules of istiod's validating webhook. Where we differ on purpose:

- Route weights: with more than one destination they must sum to 100, as older Istio releases
  required (current istiod only rejects a total of 0). Each weight is 0-100.
- Port numbers Istio treats as "unset" when 0 (match ports, destination ports) must be 1-65535.
- Rules that need the resource's namespace or name (a Gateway name being a DNS label, `exportTo`
  listing both `.` and the own namespace) are left to the code that knows them.
- Warnings istiod prints but accepts (deprecated fields, unused rules) are not reported.
- Regexes are compiled with Python's `re`, a stand-in for RE2.
"""

from meshconfig.kinds import Kind
from meshconfig.networking.destination_rule import DestinationRule
from meshconfig.networking.gateway import Gateway
from meshconfig.networking.service_entry import ServiceEntry
from meshconfig.networking.sidecar import Sidecar
from meshconfig.networking.virtual_service import VirtualService
from meshconfig.networking.workload_entry import WorkloadEntry, WorkloadGroup

GROUP = "networking.istio.io"
VERSIONS = ("v1", "v1beta1", "v1alpha3")

KINDS: tuple[Kind, ...] = (
    Kind(GROUP, "VirtualService", "virtualservices", VERSIONS, VirtualService),
    Kind(GROUP, "DestinationRule", "destinationrules", VERSIONS, DestinationRule),
    Kind(GROUP, "Gateway", "gateways", VERSIONS, Gateway),
    Kind(GROUP, "ServiceEntry", "serviceentries", VERSIONS, ServiceEntry, spec_required=True),
    Kind(GROUP, "WorkloadEntry", "workloadentries", VERSIONS, WorkloadEntry, spec_required=True),
    Kind(GROUP, "WorkloadGroup", "workloadgroups", VERSIONS, WorkloadGroup, spec_required=True),
    Kind(GROUP, "Sidecar", "sidecars", VERSIONS, Sidecar),
)

__all__ = [
    "KINDS",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "Sidecar",
    "VirtualService",
    "WorkloadEntry",
    "WorkloadGroup",
]
