"""Running the analysis: documents in, validated; every analyzer over them; sorted messages out.

`validate_all` is the intake shared by every front end: documents of kinds the mesh does not know
(Deployments, ConfigMaps, anything else in a manifest directory) are skipped, the rest are either
accepted resources or rejections carrying their field errors. `analyze` runs `ANALYZERS` over one
`Context` and returns their messages deduplicated and in a stable order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from galley.analysis import destinationrule, gateway, injection, mtls, schema, sidecar
from galley.analysis import virtualservice as vs
from galley.analysis.context import Context
from galley.analysis.messages import Message
from meshconfig import ConfigValidationError, Resource, UnknownKindError, validate_document

Analyzer = Callable[[Context], Iterable[Message]]

ANALYZERS: tuple[Analyzer, ...] = (
    schema.schema_errors,
    vs.gateways,
    vs.destination_hosts,
    vs.destination_subsets,
    vs.mesh_gateway_hosts,
    destinationrule.unknown_hosts,
    gateway.gateway_ports,
    sidecar.sidecar_selectors,
    mtls.mtls_conflicts,
    injection.namespace_injection,
)


def validate_all(
    documents: Iterable[tuple[Mapping[str, Any], str]],
) -> tuple[list[Resource], list[ConfigValidationError]]:
    """Validate (document, origin) pairs: accepted resources and rejections, unknown kinds skipped.

    A document without a string `apiVersion` and `kind` is not a Kubernetes object and is skipped
    like an unknown kind.
    """
    accepted: list[Resource] = []
    rejected: list[ConfigValidationError] = []
    for document, origin in documents:
        if not isinstance(document.get("apiVersion"), str) or not isinstance(
            document.get("kind"), str
        ):
            continue
        try:
            accepted.append(validate_document(document, origin))
        except UnknownKindError:
            continue
        except ConfigValidationError as error:
            rejected.append(error)
    return accepted, rejected


def analyze(
    resources: Iterable[Resource], rejected: Iterable[ConfigValidationError] = ()
) -> list[Message]:
    """Every message the analyzers find, each once, worst first.

    Of resources with the same kind, namespace and name, the last one given is analyzed.
    """
    context = Context.build(resources, rejected)
    found = {message for analyzer in ANALYZERS for message in analyzer(context)}
    return sorted(found, key=Message.sort_key)
