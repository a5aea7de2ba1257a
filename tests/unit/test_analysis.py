"""Configuration analysis: each analyzer on small inputs, then on Istio's bookinfo samples."""

from __future__ import annotations

import textwrap

from galley.analysis import Level, Message, analyze, validate_all
from meshconfig import load_documents
from tests.support.shared import BOOKINFO_NETWORKING


def run(*texts: str, origin: str = "test.yaml") -> list[Message]:
    documents = [
        (document, origin)
        for text in texts
        for document in load_documents(textwrap.dedent(text), origin)
    ]
    accepted, rejected = validate_all(documents)
    return analyze(accepted, rejected)


def found(messages: list[Message], code: str | None = None) -> list[tuple[str, str, str]]:
    return [(m.code, m.resource, m.text) for m in messages if code is None or m.code == code]


def service(name: str, *ports: int, namespace: str = "default", target: int | None = None) -> str:
    listed = ", ".join(
        f"{{port: {port}, name: p{port}"
        + (f", targetPort: {target}" if target is not None else "")
        + "}"
        for port in ports
    )
    return f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          selector: {{app: {name}}}
          ports: [{listed}]
        """


def pod(name: str, labels: str, namespace: str = "default") -> str:
    return f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}
        spec:
          containers: [{{name: app, image: app}}]
        """


def virtual_service(name: str, body: str, namespace: str = "default") -> str:
    head = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n"
    )
    return head + textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", "  ")


def destination_rule(host: str, *subsets: str, tls: str | None = None, name: str = "") -> str:
    listed = ", ".join(f"{{name: {s}, labels: {{version: {s}}}}}" for s in subsets)
    policy = f"trafficPolicy: {{tls: {{mode: {tls}}}}}" if tls else ""
    return f"""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: {name or host}, namespace: default}}
        spec:
          host: "{host}"
          subsets: [{listed}]
          {policy}
        """


def peer_authentication(name: str, mode: str, namespace: str = "default", app: str = "") -> str:
    selector = f"selector: {{matchLabels: {{app: {app}}}}}" if app else ""
    return f"""
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          mtls: {{mode: {mode}}}
          {selector}
        """


ROUTE_TO_REVIEWS = """
    hosts: [reviews]
    http:
    - route:
      - destination: {host: reviews, subset: v1}
    """


# IST0106 SchemaValidationError


def test_a_resource_failing_validation_is_reported_with_its_field_path() -> None:
    broken = virtual_service("reviews", "hosts: [reviews]\nhttp: [{route: [{destination: {}}]}]")
    assert found(run(broken)) == [
        (
            "IST0106",
            "VirtualService default/reviews",
            "Schema validation error: spec.http[0].route[0].destination.host: Field required",
        )
    ]
    [message] = run(broken)
    assert message.level is Level.ERROR and message.origin == "test.yaml"


def test_valid_resources_and_unknown_kinds_give_no_schema_errors() -> None:
    deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {bad: 1}"
    not_an_object = "replicas: 3"
    messages = run(
        deployment, not_an_object, virtual_service("reviews", ROUTE_TO_REVIEWS), service("reviews")
    )
    assert found(messages, "IST0106") == []


# IST0101 gateway


def test_a_virtual_service_bound_to_a_missing_gateway() -> None:
    body = "hosts: [web.example.com]\ngateways: [missing]\n" + _ROUTE
    assert found(run(virtual_service("web", body), service("web"))) == [
        ("IST0101", "VirtualService default/web", 'Referenced gateway not found: "missing"')
    ]


def test_gateways_found_by_short_name_and_by_namespace_and_mesh_needs_none() -> None:
    gateway = """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: edge, namespace: istio-system}
        spec:
          selector: {istio: ingressgateway}
          servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
        """
    local = gateway.replace("istio-system", "default")
    body = "hosts: [web.example.com]\ngateways: [edge, istio-system/edge, mesh]\n" + _ROUTE
    assert found(run(gateway, local, virtual_service("web", body), service("web"))) == []


_ROUTE = "http: [{route: [{destination: {host: web}}]}]"


# IST0101 destination host, host:port and IST0112


def test_a_destination_host_no_service_has() -> None:
    mirror = """
        hosts: [reviews]
        http:
        - route: [{destination: {host: reviews}}]
          mirror: {host: shadow}
        """
    messages = run(virtual_service("reviews", mirror), service("ratings"))
    assert found(messages, "IST0101") == [
        ("IST0101", "VirtualService default/reviews", 'Referenced host not found: "reviews"'),
        ("IST0101", "VirtualService default/reviews", 'Referenced mirror host not found: "shadow"'),
    ]


def test_destination_hosts_known_from_services_and_service_entries() -> None:
    body = """
        hosts: [reviews]
        http:
        - route:
          - {destination: {host: reviews}, weight: 50}
          - {destination: {host: ratings.other.svc.cluster.local}, weight: 25}
          - {destination: {host: api.example.com}, weight: 25}
        """
    external = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: example, namespace: default}
        spec:
          hosts: ['*.example.com']
          ports: [{number: 443, name: https, protocol: HTTPS}]
          resolution: NONE
        """
    messages = run(
        virtual_service("reviews", body),
        service("reviews", 9080),
        service("ratings", 9080, namespace="other"),
        external,
    )
    assert found(messages) == []


def test_a_service_exported_only_to_its_own_namespace_is_not_found_from_another() -> None:
    hidden = service("ratings", 9080, namespace="other").replace(
        "namespace: other}", "namespace: other, annotations: {networking.istio.io/exportTo: .}}"
    )
    target = "ratings.other.svc.cluster.local"
    body = f"hosts: [reviews]\nhttp: [{{route: [{{destination: {{host: {target}}}}}]}}]"
    messages = run(virtual_service("reviews", body), hidden)
    assert [text for _, _, text in found(messages, "IST0101")] == [
        'Referenced host not found: "ratings.other.svc.cluster.local"'
    ]


def test_destination_ports_must_exist_and_are_required_when_the_service_has_several() -> None:
    body = """
        hosts: [reviews]
        http:
        - route: [{destination: {host: reviews}}]
        tcp:
        - route: [{destination: {host: reviews, port: {number: 9999}}}]
        """
    messages = run(virtual_service("reviews", body), service("reviews", 9080, 9443))
    assert found(messages) == [
        (
            "IST0101",
            "VirtualService default/reviews",
            'Referenced host:port not found: "reviews:9999"',
        ),
        (
            "IST0112",
            "VirtualService default/reviews",
            'This VirtualService routes to a service "reviews" that exposes several ports '
            "[9080 9443]. The destination must name a port to say which one.",
        ),
    ]
    fixed = body.replace("{host: reviews}", "{host: reviews, port: {number: 9080}}").replace(
        "9999", "9443"
    )
    assert found(run(virtual_service("reviews", fixed), service("reviews", 9080, 9443))) == []


# IST0101 host+subset


def test_a_subset_no_destination_rule_defines() -> None:
    body = """
        hosts: [reviews]
        http:
        - route: [{destination: {host: reviews, subset: v3}}]
          mirror: {host: reviews, subset: v9}
        """
    messages = run(
        virtual_service("reviews", body), service("reviews"), destination_rule("reviews")
    )
    assert found(messages, "IST0101") == [
        (
            "IST0101",
            "VirtualService default/reviews",
            'Referenced host+subset in destinationrule not found: "reviews+v3"',
        ),
        (
            "IST0101",
            "VirtualService default/reviews",
            'Referenced mirror+subset in destinationrule not found: "reviews+v9"',
        ),
    ]


def test_subsets_match_across_short_and_fully_qualified_hosts() -> None:
    body = "hosts: [reviews]\nhttp: [{route: [{destination: {host: reviews, subset: v1}}]}]"
    rule = destination_rule("reviews.default.svc.cluster.local", "v1", name="reviews")
    assert found(run(virtual_service("reviews", body), service("reviews"), rule)) == []


# IST0109 ConflictingMeshGatewayVirtualServiceHosts


def test_virtual_services_bound_to_the_mesh_claiming_the_same_host() -> None:
    first = virtual_service("reviews-a", ROUTE_TO_REVIEWS)
    second = virtual_service(
        "reviews-b",
        ROUTE_TO_REVIEWS.replace("hosts: [reviews]", "hosts: [reviews.default.svc.cluster.local]"),
    )
    messages = run(first, second, service("reviews"), destination_rule("reviews", "v1"))
    text = (
        "The VirtualServices default/reviews-a,default/reviews-b associated with mesh gateway "
        "define the same host reviews.default.svc.cluster.local, which leaves the routing "
        "undefined. Merge the conflicting VirtualServices into a single resource."
    )
    assert found(messages) == [
        ("IST0109", "VirtualService default/reviews-a", text),
        ("IST0109", "VirtualService default/reviews-b", text),
    ]


def test_the_same_host_on_a_gateway_or_in_separate_export_scopes_does_not_conflict() -> None:
    hosts = "hosts: [reviews]"
    gateway_only = ROUTE_TO_REVIEWS.replace(hosts, f"gateways: [istio-system/edge]\n    {hosts}")
    exported = ROUTE_TO_REVIEWS.replace(hosts, f"exportTo: ['.']\n    {hosts}")
    messages = run(
        virtual_service("reviews-a", ROUTE_TO_REVIEWS),
        virtual_service("reviews-b", exported),
        virtual_service("reviews-c", gateway_only),
        service("reviews"),
        destination_rule("reviews", "v1"),
    )
    assert found(messages, "IST0109") == []


# IST0174 UnknownDestinationRuleHost


def test_a_destination_rule_for_a_host_no_service_has() -> None:
    messages = run(destination_rule("reveiws", "v1"), service("reviews"))
    assert found(messages) == [
        (
            "IST0174",
            "DestinationRule default/reveiws",
            "The host reveiws defined in the DestinationRule does not match any services in "
            "the mesh.",
        )
    ]
    assert messages[0].level is Level.WARNING


def test_destination_rules_for_known_and_wildcard_hosts() -> None:
    wildcard = destination_rule("*.default.svc.cluster.local", name="all")
    assert found(run(destination_rule("reviews", "v1"), wildcard, service("reviews"))) == []


# IST0104 GatewayPortNotOnWorkload and the gateway selector


INGRESS = """
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: edge, namespace: default}
    spec:
      selector: {istio: ingressgateway}
      servers:
      - {port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}
      - {port: {number: 8443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: PASSTHROUGH}}
    """


def ingress_service(*ports: int, target: int | None = None) -> str:
    return service("ingress", *ports, namespace="istio-system", target=target).replace(
        "{app: ingress}", "{istio: ingressgateway}"
    )


def test_a_gateway_port_the_selected_workloads_do_not_expose() -> None:
    gateway_pod = pod("ingress-1", "istio: ingressgateway", namespace="istio-system")
    messages = run(INGRESS, gateway_pod, ingress_service(80, target=8080))
    assert found(messages) == [
        (
            "IST0104",
            "Gateway default/edge",
            "The gateway refers to a port that is not exposed on the workload "
            "(pod selector istio=ingressgateway; port 8443)",
        )
    ]


def test_gateway_ports_exposed_by_service_entries_for_workload_entries() -> None:
    entry = """
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: ingress-1, namespace: istio-system}
        spec: {address: 127.0.0.10, labels: {istio: ingressgateway}}
        """
    registry = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: ingress, namespace: istio-system}
        spec:
          hosts: [ingress.istio-system.svc.cluster.local]
          location: MESH_INTERNAL
          resolution: STATIC
          ports:
          - {number: 8080, name: http, protocol: HTTP}
          - {number: 8443, name: https, protocol: HTTPS}
          workloadSelector: {labels: {istio: ingressgateway}}
        """
    assert found(run(INGRESS, entry, registry)) == []


def test_a_gateway_selector_matching_no_workload_only_when_workloads_are_known() -> None:
    assert found(run(INGRESS)) == []
    messages = run(INGRESS, pod("reviews-1", "app: reviews"), service("reviews"))
    assert found(messages) == [
        (
            "IST0101",
            "Gateway default/edge",
            'Referenced selector not found: "istio=ingressgateway"',
        )
    ]


# IST0110 ConflictingSidecarWorkloadSelectors, IST0111 MultipleSidecarsWithoutWorkloadSelectors


def sidecar(name: str, selector: str = "") -> str:
    chosen = f"workloadSelector: {{labels: {{{selector}}}}}" if selector else ""
    return f"""
        apiVersion: networking.istio.io/v1
        kind: Sidecar
        metadata: {{name: {name}, namespace: default}}
        spec:
          egress: [{{hosts: ['./*']}}]
          {chosen}
        """


def test_sidecars_selecting_the_same_workload() -> None:
    messages = run(
        sidecar("by-app", "app: reviews"),
        sidecar("by-version", "version: v1"),
        pod("reviews-v1", "app: reviews, version: v1"),
    )
    text = (
        'The Sidecars [by-app by-version] in namespace "default" select the same workload '
        '"reviews-v1", which leaves its configuration undefined.'
    )
    assert found(messages) == [
        ("IST0110", "Sidecar default/by-app", text),
        ("IST0110", "Sidecar default/by-version", text),
    ]


def test_sidecars_selecting_different_workloads_and_one_namespace_default() -> None:
    messages = run(
        sidecar("default"),
        sidecar("reviews", "app: reviews"),
        sidecar("ratings", "app: ratings"),
        pod("reviews-v1", "app: reviews"),
        pod("ratings-v1", "app: ratings"),
    )
    assert found(messages) == []


def test_several_sidecars_without_selectors_and_a_selector_matching_nothing() -> None:
    messages = run(sidecar("one"), sidecar("two"), sidecar("lost", "app: gone"), pod("x", "app: x"))
    text = (
        'The Sidecars [one two] in namespace "default" have no workload selector, which leaves '
        "the namespace's default undefined."
    )
    assert found(messages) == [
        ("IST0101", "Sidecar default/lost", 'Referenced selector not found: "app=gone"'),
        ("IST0111", "Sidecar default/one", text),
        ("IST0111", "Sidecar default/two", text),
    ]


# IST0113 MTLSPolicyConflict


def test_plain_text_clients_against_a_strict_namespace() -> None:
    messages = run(
        service("reviews"),
        destination_rule("reviews", tls="DISABLE"),
        peer_authentication("default", "STRICT"),
    )
    assert found(messages) == [
        (
            "IST0113",
            "DestinationRule default/reviews",
            "A DestinationRule and a PeerAuthentication disagree about mTLS for host "
            'reviews.default.svc.cluster.local: DestinationRule "default/reviews" says mTLS '
            'must be false, but PeerAuthentication "default/default" sets STRICT.',
        )
    ]


def test_mutual_tls_clients_against_a_mesh_that_disables_it_even_without_services() -> None:
    messages = run(
        destination_rule("*.local", tls="ISTIO_MUTUAL", name="mesh-wide"),
        destination_rule("ratings.prod.svc.cluster.local", tls="ISTIO_MUTUAL", name="ratings"),
        peer_authentication("default", "DISABLE", namespace="istio-system"),
    )
    assert [(code, resource) for code, resource, _ in found(messages, "IST0113")] == [
        ("IST0113", "DestinationRule default/ratings")
    ]


def test_agreeing_modes_and_the_most_specific_peer_authentication() -> None:
    messages = run(
        service("reviews"),
        service("ratings"),
        destination_rule("reviews", tls="DISABLE"),
        destination_rule("ratings", tls="ISTIO_MUTUAL"),
        peer_authentication("default", "STRICT"),
        peer_authentication("reviews-open", "PERMISSIVE", app="reviews"),
        peer_authentication("ratings-unset", "UNSET", app="ratings"),
    )
    assert found(messages) == []


# IST0102 NamespaceNotInjected


def namespace(name: str, labels: str = "") -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}"


def test_a_namespace_without_injection_labels() -> None:
    messages = run(namespace("bookinfo"))
    assert found(messages) == [
        (
            "IST0102",
            "Namespace bookinfo",
            "The namespace is not enabled for Istio injection. Run 'kubectl label namespace "
            "bookinfo istio-injection=enabled' to enable it, or 'kubectl label namespace bookinfo "
            "istio-injection=disabled' to mark it explicitly as not needing injection.",
        )
    ]
    assert messages[0].level is Level.INFO


def test_injected_opted_out_and_system_namespaces() -> None:
    messages = run(
        namespace("a", "istio-injection: enabled"),
        namespace("b", "istio-injection: disabled"),
        namespace("c", "istio.io/rev: canary"),
        namespace("kube-system"),
        namespace("istio-system"),
    )
    assert found(messages) == []


# The runner


def test_messages_are_deduplicated_and_sorted_worst_first() -> None:
    twice = """
        hosts: [reviews]
        http:
        - route: [{destination: {host: reviews, subset: v3}}]
        - route: [{destination: {host: reviews, subset: v3}}]
        """
    messages = run(
        namespace("zoo"),
        destination_rule("unknown"),
        virtual_service("reviews", twice),
        service("reviews"),
    )
    assert [(m.level, m.code) for m in messages] == [
        (Level.ERROR, "IST0101"),
        (Level.WARNING, "IST0174"),
        (Level.INFO, "IST0102"),
    ]
    assert str(messages[0]) == (
        "Error [IST0101] (VirtualService default/reviews test.yaml) "
        'Referenced host+subset in destinationrule not found: "reviews+v3"'
    )


def test_the_last_of_resources_with_the_same_name_is_analyzed() -> None:
    v3 = virtual_service("reviews", ROUTE_TO_REVIEWS.replace("v1", "v3"))
    v1 = virtual_service("reviews", ROUTE_TO_REVIEWS)
    rule = destination_rule("reviews", "v1")
    assert found(run(v3, v1, rule, service("reviews"))) == []
    assert len(found(run(v1, v3, rule, service("reviews")))) == 1


# Istio's bookinfo samples with bookinfo-shaped Kubernetes Services

BOOKINFO_SERVICES = [
    service(name, 9080) for name in ("productpage", "reviews", "ratings", "details")
]


def bookinfo(*files: str) -> list[Message]:
    texts = {name: (BOOKINFO_NETWORKING / name).read_text() for name in files}
    documents = [
        (document, name) for name, text in texts.items() for document in load_documents(text, name)
    ]
    services = [(d, "services.yaml") for s in BOOKINFO_SERVICES for d in load_documents(s)]
    accepted, rejected = validate_all([*services, *documents])
    return analyze(accepted, rejected)


def test_bookinfo_routing_to_reviews_v3_without_its_destination_rule() -> None:
    [message] = bookinfo("virtual-service-reviews-v3.yaml")
    assert str(message) == (
        "Error [IST0101] (VirtualService default/reviews virtual-service-reviews-v3.yaml) "
        'Referenced host+subset in destinationrule not found: "reviews+v3"'
    )


def test_bookinfo_with_its_destination_rules_and_gateway_is_clean() -> None:
    assert (
        bookinfo(
            "bookinfo-gateway.yaml",
            "destination-rule-all.yaml",
            "virtual-service-all-v1.yaml",
            "virtual-service-reviews-v3.yaml",
        )
        == []
    )


def test_bookinfo_mutual_tls_rules_against_a_namespace_that_disables_mtls() -> None:
    disabled = [(d, "pa.yaml") for d in load_documents(peer_authentication("default", "DISABLE"))]
    services = [(d, "services.yaml") for s in BOOKINFO_SERVICES for d in load_documents(s)]
    rules = BOOKINFO_NETWORKING / "destination-rule-all-mtls.yaml"
    documents = [(d, rules.name) for d in load_documents(rules.read_text())]
    accepted, rejected = validate_all([*services, *disabled, *documents])
    messages = analyze(accepted, rejected)
    assert {(m.code, m.resource) for m in messages} == {
        ("IST0113", f"DestinationRule default/{name}")
        for name in ("productpage", "reviews", "ratings", "details")
    }
