"""servicegraph: builds `mixer.service_graph` from metric instances, for `/debug/graph`.

It takes Istio's standard `requestduration` metric instance (mixer/telemetry.yaml) rather
than the `edge` template: an edge instance has the workloads but no response code, latency or
mTLS, and requestduration has all of them in Istio's dimension names:
`source_workload(_namespace)`, `destination_workload(_namespace)`, `response_code`,
`connection_security_policy` (`mutual_tls`) and the latency as its value. A rule sends it:

    actions: [{handler: servicegraph, instances: [requestduration]}]

Istio's sidecars reported each request twice (reporter source and destination); only the
destination's report is counted (`reporter` other than "source"), since only it knows
whether the connection was mutual TLS. Template: metric. No params; no tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from mixer import service_graph
from mixer.adapters.base import PARAMS_CONFIG, Environment, Handler, Instance, parse_params
from mixer.adapters.prometheus import number
from mixer.service_graph import ServiceGraph, Workload


class ServiceGraphParams(BaseModel):
    model_config = PARAMS_CONFIG


class ServiceGraphHandler(Handler):
    def __init__(self, graph: ServiceGraph) -> None:
        self._graph = graph

    def report(self, instances: Sequence[Instance]) -> None:
        for instance in instances:
            dims: Mapping[str, Any] = instance.fields.get("dimensions") or {}
            if dims.get("reporter") == "source":
                continue
            self._graph.record(
                _workload(dims, "source"),
                _workload(dims, "destination"),
                int(dims.get("response_code", 200)),
                number(instance.fields.get("value", 0), milliseconds=False),
                dims.get("connection_security_policy") == "mutual_tls",
            )


def _workload(dims: Mapping[str, Any], side: str) -> Workload:
    return Workload(
        str(dims.get(f"{side}_workload_namespace", "unknown")),
        str(dims.get(f"{side}_workload", "unknown")),
    )


class ServiceGraphAdapter:
    name: ClassVar[str] = "servicegraph"
    templates: ClassVar[frozenset[str]] = frozenset({"metric"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        parse_params(ServiceGraphParams, params)
        return ServiceGraphHandler(service_graph.graph(env.shared))


ADAPTER = ServiceGraphAdapter()
