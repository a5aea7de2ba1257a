"""Broken networking configuration is rejected, and the message names the field to fix.

Every case starts from a valid document (a bookinfo sample read from ../shared/istio, or a
small document of the kinds bookinfo has none of), breaks one thing, and expects the exact
field path and a fragment of the reason. A last test checks that every CEL rule in Istio's CRDs
(other than the "duration >= 1ms" rule, which the schema test checks by type) has a case here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import yaml

from meshconfig import ConfigValidationError, load_documents, validate_document
from tests.support.shared import BOOKINFO_NETWORKING, CRDS

SAMPLES = BOOKINFO_NETWORKING
CRDS = CRDS
GROUP = "networking.istio.io"
DELETE = object()


def _sample(file: str, kind: str, name: str) -> Callable[[], dict[str, Any]]:
    def load() -> dict[str, Any]:
        for document in load_documents((SAMPLES / file).read_text(), file):
            if document["kind"] == kind and document["metadata"]["name"] == name:
                return copy.deepcopy(dict(document))
        raise LookupError(f"{kind} {name} not in {file}")

    return load


def _own(kind: str, spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/v1",
            "kind": kind,
            "metadata": {"name": "example", "namespace": "bookinfo"},
            "spec": copy.deepcopy(spec),
        }

    return make


STATIC_ENDPOINTS = {
    "hosts": ["details.bookinfo.svc.cluster.local"],
    "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
    "resolution": "STATIC",
    "endpoints": [{"address": "127.0.1.5", "ports": {"http": 9080}}],
}

BASES: dict[str, Callable[[], dict[str, Any]]] = {
    "reviews-90-10": _sample("virtual-service-reviews-90-10.yaml", "VirtualService", "reviews"),
    "jason": _sample("virtual-service-reviews-jason-v2-v3.yaml", "VirtualService", "reviews"),
    "delay": _sample("virtual-service-ratings-test-delay.yaml", "VirtualService", "ratings"),
    "abort": _sample("virtual-service-ratings-test-abort.yaml", "VirtualService", "ratings"),
    "bookinfo-vs": _sample("bookinfo-gateway.yaml", "VirtualService", "bookinfo"),
    "bookinfo-gw": _sample("bookinfo-gateway.yaml", "Gateway", "bookinfo-gateway"),
    "reviews-dr": _sample("destination-rule-all.yaml", "DestinationRule", "reviews"),
    "random-dr": _sample("destination-rule-reviews.yaml", "DestinationRule", "reviews"),
    "google-dr": _sample(
        "egress-rule-google-apis.yaml", "DestinationRule", "originate-tls-for-googleapis"
    ),
    "google-se": _sample("egress-rule-google-apis.yaml", "ServiceEntry", "googleapis"),
    "static-se": _own("ServiceEntry", STATIC_ENDPOINTS),
    "we": _own(
        "WorkloadEntry",
        {"address": "127.0.1.5", "ports": {"http": 9080}, "labels": {"app": "details"}},
    ),
    "wg": _own(
        "WorkloadGroup",
        {
            "metadata": {"labels": {"app": "details"}},
            "template": {"ports": {"http": 9080}, "serviceAccount": "bookinfo-details"},
            "probe": {"httpGet": {"path": "/health", "port": 9080}},
        },
    ),
    "sidecar": _own(
        "Sidecar",
        {
            "workloadSelector": {"labels": {"app": "productpage"}},
            "ingress": [
                {
                    "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                    "defaultEndpoint": "127.0.0.1:9080",
                }
            ],
            "egress": [{"hosts": ["./*", "istio-system/*"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    ),
}

SECOND_DESTINATION = {"destination": {"host": "reviews", "subset": "v2"}, "weight": 50}
SERVER_COPY = {"port": {"number": 8081, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}


class Case(NamedTuple):
    id: str
    base: str
    edits: dict[str, Any]  # dotted path under spec -> new value (or DELETE)
    path: str  # expected field path in the error
    reason: str  # expected fragment of the reason


CASES = [
    # --- VirtualService -------------------------------------------------------------------
    Case("vs-weight-type", "reviews-90-10", {"http.0.route.0.weight": "90"},
         "spec.http[0].route[0].weight", "valid integer"),
    Case("vs-unknown-field", "reviews-90-10", {"http.0.retry": {"attempts": 3}},
         "spec.http[0].retry", "Extra inputs are not permitted"),
    Case("vs-weights-sum", "reviews-90-10", {"http.0.route.1.weight": 0},
         "spec.http[0].route", "weights must sum to 100, got 90"),
    Case("vs-weights-missing", "reviews-90-10", {"http.0.route.1.weight": DELETE},
         "spec.http[0].route", "weights must sum to 100, got 90"),
    Case("vs-weight-range", "reviews-90-10", {"http.0.route.0.weight": 150},
         "spec.http[0].route[0].weight", "less than or equal to 100"),
    Case("vs-missing-destination", "reviews-90-10", {"http.0.route.0.destination": DELETE},
         "spec.http[0].route[0].destination", "Field required"),
    Case("vs-missing-host", "reviews-90-10", {"http.0.route.0.destination.host": DELETE},
         "spec.http[0].route[0].destination.host", "Field required"),
    Case("vs-destination-star", "reviews-90-10", {"http.0.route.0.destination.host": "*"},
         "spec.http[0].route[0].destination.host", "cannot be '*'"),
    Case("vs-bad-host", "reviews-90-10", {"http.0.route.0.destination.host": "re views"},
         "spec.http[0].route[0].destination.host", "invalid label"),
    Case("vs-bad-subset", "reviews-90-10", {"http.0.route.0.destination.subset": "v_1"},
         "spec.http[0].route[0].destination.subset", "invalid subset name"),
    Case("vs-port-range", "reviews-90-10", {"http.0.route.0.destination.port": {"number": 70000}},
         "spec.http[0].route[0].destination.port.number", "less than or equal to 65535"),
    Case("vs-tcp-weights", "reviews-90-10",
         {"tcp": [{"route": [SECOND_DESTINATION, SECOND_DESTINATION, SECOND_DESTINATION]}]},
         "spec.tcp[0].route", "weights must sum to 100, got 150"),
    Case("vs-tcp-no-route", "reviews-90-10", {"tcp": [{"match": [{"port": 3306}]}]},
         "spec.tcp[0].route", "at least one destination"),
    Case("vs-bad-regex", "jason", {"http.0.match.0.headers.end-user": {"regex": "(jason"}},
         "spec.http[0].match[0].headers.end-user.regex", "invalid regex"),
    Case("vs-bad-uri-regex", "jason", {"http.0.match.0.uri": {"regex": "[a-"}},
         "spec.http[0].match[0].uri.regex", "invalid regex"),
    Case("vs-string-match-oneof", "jason",
         {"http.0.match.0.headers.end-user": {"exact": "jason", "prefix": "ja"}},
         "spec.http[0].match[0].headers.end-user", "only one of exact, prefix or regex"),
    Case("vs-empty-prefix", "jason", {"http.0.match.0.headers.end-user": {"prefix": ""}},
         "spec.http[0].match[0].headers.end-user.prefix", "must not be empty"),
    Case("vs-header-name", "jason", {"http.0.match.0.headers": {"end user": {"exact": "jason"}}},
         "spec.http[0].match[0].headers.end user", "not a valid header name"),
    Case("vs-jwt-claim-in-mesh", "jason",
         {"http.0.match.0.headers": {"@request.auth.claims.group": {"exact": "admin"}}},
         "spec.http[0].match[0].headers.@request.auth.claims.group", "only supported on gateways"),
    Case("vs-match-port", "jason", {"http.0.match.0.port": 0},
         "spec.http[0].match[0].port", "greater than or equal to 1"),
    Case("vs-source-labels", "jason", {"http.0.match.0.sourceLabels": {"app": "a b"}},
         "spec.http[0].match[0].sourceLabels.app", "invalid label value"),
    Case("vs-bad-duration", "delay", {"http.0.fault.delay.fixedDelay": "7 seconds"},
         "spec.http[0].fault.delay.fixedDelay", "invalid duration"),
    Case("vs-zero-duration", "delay", {"http.0.fault.delay.fixedDelay": "0s"},
         "spec.http[0].fault.delay.fixedDelay", "at least 1ms"),
    Case("vs-duration-precision", "delay", {"http.0.fault.delay.fixedDelay": "1.5ms"},
         "spec.http[0].fault.delay.fixedDelay", "millisecond precision"),
    Case("vs-timeout-type", "delay", {"http.1.timeout": 7},
         "spec.http[1].timeout", "valid string"),
    Case("vs-delay-oneof", "delay", {"http.0.fault.delay.exponentialDelay": "1s"},
         "spec.http[0].fault.delay.exponentialDelay", "only one of fixedDelay or exponentialDelay"),
    Case("vs-fault-percentage", "abort", {"http.0.fault.abort.percentage.value": 150},
         "spec.http[0].fault.abort.percentage.value", "less than or equal to 100"),
    Case("vs-abort-status", "abort", {"http.0.fault.abort.httpStatus": 700},
         "spec.http[0].fault.abort.httpStatus", "200-599"),
    Case("vs-abort-oneof", "abort", {"http.0.fault.abort.grpcStatus": "UNAVAILABLE"},
         "spec.http[0].fault.abort.grpcStatus", "only one of httpStatus or grpcStatus"),
    Case("vs-grpc-status", "abort",
         {"http.0.fault.abort.httpStatus": DELETE, "http.0.fault.abort.grpcStatus": "BROKEN"},
         "spec.http[0].fault.abort.grpcStatus", "not a gRPC status"),
    Case("vs-empty-fault", "abort", {"http.0.fault": {}},
         "spec.http[0].fault", "a delay, an abort, or both"),
    Case("vs-redirect-with-route", "reviews-90-10", {"http.0.redirect": {"uri": "/v1"}},
         "spec.http[0].redirect", "cannot be used together with route"),
    Case("vs-delegate-with-route", "reviews-90-10", {"http.0.delegate": {"name": "reviews-v1"}},
         "spec.http[0].delegate", "cannot be used together with route"),
    Case("vs-direct-response-with-fault", "abort",
         {"http.0.route": DELETE, "http.0.directResponse": {"status": 503}},
         "spec.http[0].directResponse", "cannot be used together with fault"),
    Case("vs-direct-response-status", "reviews-90-10",
         {"http.0.route": DELETE, "http.0.directResponse": {"status": 99}},
         "spec.http[0].directResponse.status", "200-599"),
    Case("vs-no-action", "reviews-90-10", {"http.0.route": DELETE},
         "spec.http[0]", "one of route, redirect, directResponse or delegate is required"),
    Case("vs-redirect-enum", "reviews-90-10",
         {"http.0.route": DELETE, "http.0.redirect": {"derivePort": "FROM_NOWHERE"}},
         "spec.http[0].redirect.derivePort", "Input should be 'FROM_PROTOCOL_DEFAULT'"),
    Case("vs-redirect-code", "reviews-90-10",
         {"http.0.route": DELETE, "http.0.redirect": {"uri": "/", "redirectCode": 200}},
         "spec.http[0].redirect.redirectCode", "not a 3xx redirect code"),
    Case("vs-rewrite-both", "reviews-90-10",
         {"http.0.rewrite": {"uri": "/a", "uriRegexRewrite": {"match": "^/b", "rewrite": "/c"}}},
         "spec.http[0].rewrite.uriRegexRewrite", "only one of uri or uriRegexRewrite"),
    Case("vs-rewrite-regex", "reviews-90-10",
         {"http.0.rewrite": {"uriRegexRewrite": {"match": "(", "rewrite": "/c"}}},
         "spec.http[0].rewrite.uriRegexRewrite.match", "invalid regex"),
    Case("vs-mirror-and-mirrors", "reviews-90-10",
         {"http.0.mirror": {"host": "shadow"}, "http.0.mirrors": [{"destination": {"host": "x"}}]},
         "spec.http[0].mirrors", "cannot be used together with mirror"),
    Case("vs-mirror-percent", "reviews-90-10", {"http.0.mirror_percent": 101},
         "spec.http[0].mirror_percent", "less than or equal to 100"),
    Case("vs-retry-on", "reviews-90-10",
         {"http.0.retries": {"attempts": 3, "retryOn": "5xx,sometimes"}},
         "spec.http[0].retries.retryOn", "'sometimes' is not a valid retryOn policy"),
    Case("vs-cors-method", "reviews-90-10", {"http.0.corsPolicy": {"allowMethods": ["FETCH"]}},
         "spec.http[0].corsPolicy.allowMethods[0]", "not a supported HTTP method"),
    Case("vs-header-set-host", "reviews-90-10",
         {"http.0.headers": {"response": {"set": {"Host": "x"}}}},
         "spec.http[0].headers.response.set.Host", "Host header cannot be changed"),
    Case("vs-mesh-wildcard-host", "reviews-90-10", {"hosts": ["*"]},
         "spec.hosts[0]", "only allowed when bound to gateways"),
    Case("vs-duplicate-hosts", "reviews-90-10", {"hosts": ["*.example.com", "a.example.com"]},
         "spec.hosts[0]", "overlap"),
    Case("vs-gateway-name", "bookinfo-vs", {"gateways": ["bookinfo_gateway"]},
         "spec.gateways[0]", "invalid label"),
    Case("vs-gateway-namespace", "bookinfo-vs", {"gateways": ["Bad_ns/bookinfo-gateway"]},
         "spec.gateways[0]", "invalid namespace"),
    Case("vs-no-routes", "reviews-90-10", {"http": DELETE},
         "spec", "at least one of http, tcp or tls"),
    Case("vs-delegate-with-tcp", "reviews-90-10",
         {"hosts": DELETE, "tcp": [{"route": [{"destination": {"host": "db"}}]}]},
         "spec.tcp", "delegate VirtualService"),
    Case("vs-tls-sni", "reviews-90-10",
         {"tls": [{"match": [{"sniHosts": ["other.example.com"]}],
                   "route": [{"destination": {"host": "reviews"}}]}]},
         "spec.tls[0].match[0].sniHosts[0]", "not covered by the hosts"),
    Case("vs-tls-match-required", "reviews-90-10",
         {"tls": [{"route": [{"destination": {"host": "reviews"}}]}]},
         "spec.tls[0].match", "Field required"),
    Case("vs-export-to", "reviews-90-10", {"exportTo": [".", "."]},
         "spec.exportTo[1]", "duplicate entry"),
    Case("vs-hosts-type", "reviews-90-10", {"hosts": "reviews"},
         "spec.hosts", "valid list"),
    # --- DestinationRule --------------------------------------------------------------------
    Case("dr-bad-enum", "reviews-dr", {"trafficPolicy.loadBalancer.simple": "FASTEST"},
         "spec.trafficPolicy.loadBalancer.simple", "Input should be 'UNSPECIFIED'"),
    Case("dr-missing-host", "reviews-dr", {"host": DELETE}, "spec.host", "Field required"),
    Case("dr-bad-host", "reviews-dr", {"host": "reviews..bookinfo"}, "spec.host", "invalid label"),
    Case("dr-duplicate-subset", "reviews-dr", {"subsets.2.name": "v1"},
         "spec.subsets[2].name", "duplicate subset name 'v1'"),
    Case("dr-subset-name-required", "reviews-dr", {"subsets.0.name": DELETE},
         "spec.subsets[0].name", "Field required"),
    Case("dr-subset-name-label", "reviews-dr", {"subsets.0.name": "v1.0"},
         "spec.subsets[0].name", "DNS-1123 label"),
    Case("dr-label-type", "reviews-dr", {"subsets.0.labels.version": 1},
         "spec.subsets[0].labels.version", "valid string"),
    Case("dr-label-value", "reviews-dr", {"subsets.0.labels.version": "v 1"},
         "spec.subsets[0].labels.version", "invalid label value"),
    Case("dr-empty-policy", "reviews-dr", {"trafficPolicy": {}},
         "spec.trafficPolicy", "at least one setting"),
    Case("dr-lb-oneof", "random-dr",
         {"trafficPolicy.loadBalancer.consistentHash": {"useSourceIp": True}},
         "spec.trafficPolicy.loadBalancer.consistentHash", "only one of simple or consistentHash"),
    Case("dr-hash-key-oneof", "reviews-dr",
         {"trafficPolicy.loadBalancer": {"consistentHash": {"useSourceIp": True,
                                                            "httpHeaderName": "x-user"}}},
         "spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp", "only one hash key"),
    Case("dr-maglev-prime", "reviews-dr",
         {"trafficPolicy.loadBalancer": {"consistentHash": {"httpHeaderName": "x-user",
                                                            "maglev": {"tableSize": 1000}}}},
         "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "not a prime"),
    Case("dr-locality-sum", "reviews-dr",
         {"trafficPolicy.loadBalancer.localityLbSetting": {
             "distribute": [{"from": "us-west/*", "to": {"us-west/*": 60, "us-east/*": 30}}]}},
         "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
         "weights must sum to 100, got 90"),
    Case("dr-locality-exclusive", "reviews-dr",
         {"trafficPolicy.loadBalancer.localityLbSetting": {
             "distribute": [{"from": "us-west/*", "to": {"us-west/*": 100}}],
             "failover": [{"from": "us-west", "to": "us-east"}]}},
         "spec.trafficPolicy.loadBalancer.localityLbSetting.failover", "together with distribute"),
    Case("dr-outlier-percent", "reviews-dr",
         {"trafficPolicy.outlierDetection": {"maxEjectionPercent": 101}},
         "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "less than or equal to 100"),
    Case("dr-outlier-duration", "reviews-dr",
         {"trafficPolicy.outlierDetection": {"baseEjectionTime": "500us"}},
         "spec.trafficPolicy.outlierDetection.baseEjectionTime", "at least 1ms"),
    Case("dr-error-code", "reviews-dr",
         {"trafficPolicy.outlierDetection": {"outlierDetectionHttpErrorCodes": [503, 99]}},
         "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[1]",
         "greater than or equal to 100"),
    Case("dr-pool-negative", "reviews-dr",
         {"trafficPolicy.connectionPool": {"tcp": {"maxConnections": -1}}},
         "spec.trafficPolicy.connectionPool.tcp.maxConnections", "greater than or equal to 0"),
    Case("dr-pool-empty", "reviews-dr", {"trafficPolicy.connectionPool": {}},
         "spec.trafficPolicy.connectionPool", "tcp or http settings"),
    Case("dr-tls-enum", "google-dr", {"trafficPolicy.portLevelSettings.0.tls.mode": "STRICT"},
         "spec.trafficPolicy.portLevelSettings[0].tls.mode", "Input should be 'DISABLE'"),
    Case("dr-port-level-port", "google-dr", {"trafficPolicy.portLevelSettings.0.port": DELETE},
         "spec.trafficPolicy.portLevelSettings[0].port", "is required"),
    Case("dr-mutual-certs", "reviews-dr", {"trafficPolicy.tls": {"mode": "MUTUAL"}},
         "spec.trafficPolicy.tls.clientCertificate", "is required for MUTUAL mode"),
    Case("dr-tunnel-port", "reviews-dr",
         {"trafficPolicy.tunnel": {"targetHost": "proxy.example.com", "targetPort": 0}},
         "spec.trafficPolicy.tunnel.targetPort", "1-65535"),
    Case("dr-selector-wildcard-value", "reviews-dr",
         {"workloadSelector": {"matchLabels": {"app": "*"}}},
         "spec.workloadSelector.matchLabels.app", "wildcards are not supported"),
    Case("dr-selector-wildcard-key", "reviews-dr",
         {"workloadSelector": {"matchLabels": {"app*": "x"}}},
         "spec.workloadSelector.matchLabels.app*", "wildcards are not supported"),
    Case("dr-selector-empty-key", "reviews-dr",
         {"workloadSelector": {"matchLabels": {"": "x"}}},
         "spec.workloadSelector.matchLabels.", "must not be empty"),
    # --- Gateway ----------------------------------------------------------------------------
    Case("gw-protocol", "bookinfo-gw", {"servers.0.port.protocol": "FTP"},
         "spec.servers[0].port.protocol", "unsupported protocol 'FTP'"),
    Case("gw-port-zero", "bookinfo-gw", {"servers.0.port.number": 0},
         "spec.servers[0].port.number", "1-65535"),
    Case("gw-port-range", "bookinfo-gw", {"servers.0.port.number": 70000},
         "spec.servers[0].port.number", "1-65535"),
    Case("gw-port-name-required", "bookinfo-gw", {"servers.0.port.name": DELETE},
         "spec.servers[0].port.name", "Field required"),
    Case("gw-no-hosts", "bookinfo-gw", {"servers.0.hosts": []},
         "spec.servers[0].hosts", "at least one host"),
    Case("gw-short-host", "bookinfo-gw", {"servers.0.hosts": ["productpage"]},
         "spec.servers[0].hosts[0]", "short name"),
    Case("gw-partial-wildcard", "bookinfo-gw", {"servers.0.hosts": ["bookinfo/*example.com"]},
         "spec.servers[0].hosts[0]", "partial wildcard"),
    Case("gw-duplicate-port-name", "bookinfo-gw", {"servers.1": SERVER_COPY},
         "spec.servers[1].port.name", "duplicate port name 'http'"),
    Case("gw-https-needs-tls", "bookinfo-gw", {"servers.0.port.protocol": "HTTPS"},
         "spec.servers[0].tls", "is required for HTTPS ports"),
    Case("gw-simple-needs-cert", "bookinfo-gw",
         {"servers.0.port.protocol": "HTTPS", "servers.0.tls": {"mode": "SIMPLE"}},
         "spec.servers[0].tls.serverCertificate", "is required in SIMPLE mode"),
    Case("gw-tls-on-tcp", "bookinfo-gw",
         {"servers.0.port.protocol": "TCP",
          "servers.0.tls": {"mode": "SIMPLE", "credentialName": "bookinfo-cert"}},
         "spec.servers[0].tls", "cannot be set on a TCP port"),
    Case("gw-name-and-names", "bookinfo-gw",
         {"servers.0.port.protocol": "HTTPS",
          "servers.0.tls": {"mode": "SIMPLE", "credentialName": "a", "credentialNames": ["b"]}},
         "spec.servers[0].tls.credentialNames", "only one of credentialName or credentialNames"),
    Case("gw-names-and-certs", "bookinfo-gw",
         {"servers.0.port.protocol": "HTTPS",
          "servers.0.tls": {"mode": "SIMPLE", "credentialNames": ["a"],
                            "tlsCertificates": [{"serverCertificate": "/c", "privateKey": "/k"}]}},
         "spec.servers[0].tls.tlsCertificates", "only one of credentialNames or tlsCertificates"),
    Case("gw-name-and-certs", "bookinfo-gw",
         {"servers.0.port.protocol": "HTTPS",
          "servers.0.tls": {"mode": "SIMPLE", "credentialName": "a",
                            "tlsCertificates": [{"serverCertificate": "/c", "privateKey": "/k"}]}},
         "spec.servers[0].tls.tlsCertificates", "only one of credentialName or tlsCertificates"),
    Case("gw-tls-version", "bookinfo-gw",
         {"servers.0.port.protocol": "HTTPS",
          "servers.0.tls": {"mode": "SIMPLE", "credentialName": "a",
                            "minProtocolVersion": "SSLV3"}},
         "spec.servers[0].tls.minProtocolVersion", "Input should be 'TLS_AUTO'"),
    Case("gw-no-servers", "bookinfo-gw", {"servers": DELETE},
         "spec.servers", "at least one server"),
    Case("gw-selector-type", "bookinfo-gw", {"selector": ["istio"]},
         "spec.selector", "valid dictionary"),
    # --- ServiceEntry -----------------------------------------------------------------------
    Case("se-missing-hosts", "google-se", {"hosts": DELETE}, "spec.hosts", "Field required"),
    Case("se-empty-hosts", "google-se", {"hosts": []}, "spec.hosts", "at least 1 item"),
    Case("se-wildcard-host", "google-se", {"hosts": ["*"]}, "spec.hosts[0]", "cannot be '*'"),
    Case("se-dns-wildcard", "google-se", {"hosts": ["*.googleapis.com"]},
         "spec.hosts[0]", "must not be a wildcard for DNS"),
    Case("se-resolution-enum", "google-se", {"resolution": "MAGIC"},
         "spec.resolution", "Input should be 'NONE'"),
    Case("se-duplicate-port", "google-se", {"ports.1.number": 80},
         "spec.ports[1].number", "port 80 is defined twice"),
    Case("se-duplicate-port-name", "google-se", {"ports.1.name": "http"},
         "spec.ports[1].name", "port name 'http' is defined twice"),
    Case("se-port-range", "google-se", {"ports.0.number": 0},
         "spec.ports[0].number", "1-65535"),
    Case("se-target-port-range", "google-se", {"ports.0.targetPort": 70000},
         "spec.ports[0].targetPort", "1-65535"),
    Case("se-port-name-required", "google-se", {"ports.0.name": DELETE},
         "spec.ports[0].name", "Field required"),
    Case("se-cidr-with-dns", "google-se", {"addresses": ["10.0.0.0/24"]},
         "spec.addresses[0]", "CIDR addresses need resolution NONE or STATIC"),
    Case("se-bad-address", "google-se", {"addresses": ["10.0.0.300"]},
         "spec.addresses[0]", "not a valid IP address"),
    Case("se-several-hosts-tcp", "google-se",
         {"hosts": ["www.googleapis.com", "storage.googleapis.com"], "ports.0.protocol": "TCP"},
         "spec.ports[0].protocol", "several hosts need HTTP or TLS ports"),
    Case("se-selector-and-endpoints", "static-se", {"workloadSelector": {"labels": {"app": "d"}}},
         "spec.endpoints", "cannot be used together with workloadSelector"),
    Case("se-none-with-endpoints", "static-se", {"resolution": DELETE},
         "spec.endpoints", "must be empty when resolution is NONE"),
    Case("se-round-robin-endpoints", "static-se",
         {"resolution": "DNS_ROUND_ROBIN", "endpoints.1": {"address": "details-2.example.com"}},
         "spec.endpoints", "at most one endpoint"),
    Case("se-static-hostname", "static-se", {"endpoints.0.address": "details.example.com"},
         "spec.endpoints[0].address", "not an IP address"),
    Case("se-endpoint-address-required", "static-se", {"endpoints.0.address": DELETE},
         "spec.endpoints[0].address", "is required"),
    Case("se-endpoint-uds-ports", "static-se",
         {"endpoints.0.address": "unix:///run/details.sock"},
         "spec.endpoints[0].ports", "unix domain socket address cannot have ports"),
    Case("se-endpoint-uds-relative", "static-se",
         {"endpoints.0.address": "unix://run/details.sock", "endpoints.0.ports": DELETE},
         "spec.endpoints[0].address", "not an absolute path"),
    Case("se-endpoint-uds-dir", "static-se",
         {"endpoints.0.address": "unix:///run/", "endpoints.0.ports": DELETE},
         "spec.endpoints[0].address", "not an absolute path"),
    Case("se-endpoint-port-name", "static-se", {"endpoints.0.ports": {"http_": 9080}},
         "spec.endpoints[0].ports.http_", "invalid port name"),
    Case("se-endpoint-port-range", "static-se", {"endpoints.0.ports.http": 0},
         "spec.endpoints[0].ports.http", "1-65535"),
    Case("se-endpoint-unknown-port", "static-se", {"endpoints.0.ports": {"grpc": 9090}},
         "spec.endpoints[0].ports.grpc", "no service port named 'grpc'"),
    Case("se-selector-wildcard", "google-se", {"workloadSelector": {"labels": {"app": "*"}}},
         "spec.workloadSelector.labels.app", "wildcards are not supported"),
    Case("se-export-nobody-and-more", "google-se", {"exportTo": ["~", "."]},
         "spec.exportTo", "'~' (nobody) cannot be combined"),
    # --- WorkloadEntry ------------------------------------------------------------------------
    Case("we-address-required", "we", {"address": DELETE}, "spec.address", "is required"),
    Case("we-bad-address", "we", {"address": "details_vm"},
         "spec.address", "neither an IP address nor a DNS name"),
    Case("we-uds-ports", "we", {"address": "unix:///run/details.sock"},
         "spec.ports", "unix domain socket address cannot have ports"),
    Case("we-uds-relative", "we", {"address": "unix://run/details.sock", "ports": DELETE},
         "spec.address", "not an absolute path"),
    Case("we-uds-dir", "we", {"address": "unix:///run/", "ports": DELETE},
         "spec.address", "not an absolute path"),
    Case("we-port-name", "we", {"ports": {"-http": 9080}}, "spec.ports.-http", "invalid port name"),
    Case("we-port-range", "we", {"ports.http": 70000}, "spec.ports.http", "1-65535"),
    Case("we-weight", "we", {"weight": -1}, "spec.weight", "greater than or equal to 0"),
    Case("we-label-key", "we", {"labels": {"app!": "details"}},
         "spec.labels.app!", "invalid label key"),
    Case("we-unknown-field", "we", {"adress": "127.0.0.1"},
         "spec.adress", "Extra inputs are not permitted"),
    # --- WorkloadGroup ------------------------------------------------------------------------
    Case("wg-template-required", "wg", {"template": DELETE}, "spec.template", "Field required"),
    Case("wg-template-uds-ports", "wg", {"template.address": "unix:///run/details.sock"},
         "spec.template.ports", "unix domain socket address cannot have ports"),
    Case("wg-template-uds-relative", "wg",
         {"template.address": "unix://details.sock", "template.ports": DELETE},
         "spec.template.address", "not an absolute path"),
    Case("wg-template-uds-dir", "wg",
         {"template.address": "unix:///run/", "template.ports": DELETE},
         "spec.template.address", "not an absolute path"),
    Case("wg-template-port-name", "wg", {"template.ports": {"x_y": 9080}},
         "spec.template.ports.x_y", "invalid port name"),
    Case("wg-template-port-range", "wg", {"template.ports.http": 0},
         "spec.template.ports.http", "1-65535"),
    Case("wg-http-port", "wg", {"probe.httpGet.port": 0}, "spec.probe.httpGet.port", "1-65535"),
    Case("wg-http-scheme", "wg", {"probe.httpGet.scheme": "FTP"},
         "spec.probe.httpGet.scheme", "HTTP or HTTPS"),
    Case("wg-http-header", "wg", {"probe.httpGet.httpHeaders": [{"name": "bad header"}]},
         "spec.probe.httpGet.httpHeaders[0].name", "should match pattern"),
    Case("wg-tcp-port", "wg", {"probe": {"tcpSocket": {"port": 70000}}},
         "spec.probe.tcpSocket.port", "1-65535"),
    Case("wg-grpc-port", "wg", {"probe": {"grpc": {"port": 0}}},
         "spec.probe.grpc.port", "1-65535"),
    Case("wg-two-methods", "wg", {"probe.tcpSocket": {"port": 9080}},
         "spec.probe.tcpSocket", "only one of httpGet or tcpSocket"),
    Case("wg-no-method", "wg", {"probe": {"periodSeconds": 5}},
         "spec.probe", "one of httpGet, tcpSocket, exec or grpc is required"),
    Case("wg-negative-period", "wg", {"probe.periodSeconds": -1},
         "spec.probe.periodSeconds", "greater than or equal to 0"),
    Case("wg-empty-command", "wg", {"probe": {"exec": {"command": [""]}}},
         "spec.probe.exec.command[0]", "at least 1 character"),
    Case("wg-metadata-labels", "wg", {"metadata.labels": {"app": "a b"}},
         "spec.metadata.labels.app", "invalid label value"),
    # --- Sidecar ------------------------------------------------------------------------------
    Case("sc-selector-wildcard", "sidecar", {"workloadSelector.labels.app": "*"},
         "spec.workloadSelector.labels.app", "wildcards are not supported"),
    Case("sc-egress-host-form", "sidecar", {"egress.0.hosts": ["reviews.bookinfo.svc"]},
         "spec.egress[0].hosts[0]", "must have the form namespace/dnsName"),
    Case("sc-egress-short-name", "sidecar", {"egress.0.hosts": ["bookinfo/reviews"]},
         "spec.egress[0].hosts[0]", "short name"),
    Case("sc-egress-hosts-required", "sidecar", {"egress.0.hosts": DELETE},
         "spec.egress[0].hosts", "Field required"),
    Case("sc-ingress-port-required", "sidecar", {"ingress.0.port": DELETE},
         "spec.ingress[0].port", "Field required"),
    Case("sc-ingress-port-zero", "sidecar", {"ingress.0.port.number": 0},
         "spec.ingress[0].port.number", "1-65535"),
    Case("sc-ingress-duplicate-port", "sidecar",
         {"ingress.1": {"port": {"number": 9080, "protocol": "TCP"}}},
         "spec.ingress[1].port.number", "port 9080 is used twice"),
    Case("sc-default-endpoint", "sidecar", {"ingress.0.defaultEndpoint": "10.0.0.1:9080"},
         "spec.ingress[0].defaultEndpoint", "defaultEndpoint must be"),
    Case("sc-capture-mode", "sidecar", {"egress.0.captureMode": "EBPF"},
         "spec.egress[0].captureMode", "Input should be 'DEFAULT'"),
    Case("sc-catch-all-not-last", "sidecar",
         {"egress.1": {"port": {"number": 9080, "protocol": "HTTP"}, "hosts": ["./*"]}},
         "spec.egress[0].port", "only the last egress listener may omit port"),
    Case("sc-egress-proxy-mode", "sidecar",
         {"outboundTrafficPolicy.egressProxy": {"host": "egress.example.com",
                                                "port": {"number": 80}}},
         "spec.outboundTrafficPolicy.egressProxy", "only be set with mode ALLOW_ANY"),
    Case("sc-empty", "sidecar",
         {"workloadSelector": DELETE, "ingress": DELETE, "egress": DELETE,
          "outboundTrafficPolicy": DELETE},
         "spec", "a Sidecar needs ingress, egress"),
    Case("sc-pool-duration", "sidecar",
         {"inboundConnectionPool": {"tcp": {"connectTimeout": "0s"}}},
         "spec.inboundConnectionPool.tcp.connectTimeout", "at least 1ms"),
    Case("sc-ingress-istio-mutual", "sidecar", {"ingress.0.tls": {"mode": "ISTIO_MUTUAL"}},
         "spec.ingress[0].tls.mode", "not allowed on sidecar ingress listeners"),
    Case("sc-name-and-names", "sidecar",
         {"ingress.0.tls": {"mode": "SIMPLE", "credentialName": "a", "credentialNames": ["b"]}},
         "spec.ingress[0].tls.credentialNames", "only one of credentialName or credentialNames"),
    Case("sc-names-and-certs", "sidecar",
         {"ingress.0.tls": {"mode": "SIMPLE", "credentialNames": ["a"],
                            "tlsCertificates": [{"serverCertificate": "/c", "privateKey": "/k"}]}},
         "spec.ingress[0].tls.tlsCertificates", "only one of credentialNames or tlsCertificates"),
    Case("sc-name-and-certs", "sidecar",
         {"ingress.0.tls": {"mode": "SIMPLE", "credentialName": "a",
                            "tlsCertificates": [{"serverCertificate": "/c", "privateKey": "/k"}]}},
         "spec.ingress[0].tls.tlsCertificates", "only one of credentialName or tlsCertificates"),
]  # fmt: skip


def _edit(spec: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node: Any = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        index = int(last)
        if value is DELETE:
            del node[index]
        elif index == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[index] = copy.deepcopy(value)
    elif value is DELETE:
        del node[last]
    else:
        node[last] = copy.deepcopy(value)


def _broken(case: Case) -> dict[str, Any]:
    document = BASES[case.base]()
    validate_document(document, "base")  # the starting point itself is valid
    for dotted, value in case.edits.items():
        _edit(document["spec"], dotted, value)
    return document


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_broken_document_is_rejected_at_the_field(case: Case) -> None:
    document = _broken(case)
    with pytest.raises(ConfigValidationError) as raised:
        validate_document(document, "test.yaml")
    errors = raised.value.errors
    at_path = [error.message for error in errors if error.path == case.path]
    assert at_path, f"no error at {case.path}; got {[str(e) for e in errors]}"
    assert any(case.reason in message for message in at_path), at_path
    label = f"{document['kind']} {document['metadata'].get('namespace', 'default')}/"
    assert f"test.yaml: {label}{document['metadata']['name']}: {case.path}: " in str(raised.value)


def test_case_ids_are_unique() -> None:
    assert len({case.id for case in CASES}) == len(CASES)


def test_every_version_rejects_the_same_way() -> None:
    document = _broken(CASES[2])
    messages = set()
    for version in ("v1", "v1beta1", "v1alpha3"):
        with pytest.raises(ConfigValidationError) as raised:
            validate_document({**document, "apiVersion": f"{GROUP}/{version}"}, "test.yaml")
        messages.add(str(raised.value))
    assert len(messages) == 1


# Each CEL rule of the networking CRDs (kind, schema path, message) and the case exercising it.
CEL_RULE_CASES: dict[str, dict[str, dict[str, str]]] = {
    "DestinationRule": {
        "spec.workloadSelector.matchLabels": {
            "wildcard not allowed in label key match": "dr-selector-wildcard-key",
            "key must not be empty": "dr-selector-empty-key",
        },
        "spec.workloadSelector.matchLabels{}": {
            "wildcard not allowed in label value match": "dr-selector-wildcard-value",
        },
    },
    "Gateway": {
        "spec.servers[].tls": {
            "only one of credentialNames or tlsCertificates can be set": "gw-names-and-certs",
            "only one of credentialName or credentialNames can be set": "gw-name-and-names",
            "only one of credentialName or tlsCertificates can be set": "gw-name-and-certs",
        },
    },
    "ServiceEntry": {
        "spec": {
            "only one of WorkloadSelector or Endpoints can be set": "se-selector-and-endpoints",
            "CIDR addresses are allowed only for NONE/STATIC resolution types": "se-cidr-with-dns",
            "NONE mode cannot set endpoints": "se-none-with-endpoints",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints": "se-round-robin-endpoints",
        },
        "spec.endpoints[]": {
            "Address is required": "se-endpoint-address-required",
            "UDS may not include ports": "se-endpoint-uds-ports",
        },
        "spec.endpoints[].address": {
            "UDS must be an absolute path or abstract socket": "se-endpoint-uds-relative",
            "UDS may not be a dir": "se-endpoint-uds-dir",
        },
        "spec.endpoints[].ports": {
            "port name must be valid": "se-endpoint-port-name",
        },
        "spec.endpoints[].ports{}": {
            "port must be between 1-65535": "se-endpoint-port-range",
        },
        "spec.hosts[]": {
            "hostname cannot be wildcard": "se-wildcard-host",
        },
        "spec.ports": {
            "port number cannot be duplicated": "se-duplicate-port",
        },
        "spec.ports[].number": {
            "port must be between 1-65535": "se-port-range",
        },
        "spec.ports[].targetPort": {
            "port must be between 1-65535": "se-target-port-range",
        },
        "spec.workloadSelector.labels{}": {
            "wildcard is not supported in selector": "se-selector-wildcard",
        },
    },
    "Sidecar": {
        "spec.ingress[].tls": {
            "only one of credentialNames or tlsCertificates can be set": "sc-names-and-certs",
            "only one of credentialName or credentialNames can be set": "sc-name-and-names",
            "only one of credentialName or tlsCertificates can be set": "sc-name-and-certs",
        },
        "spec.workloadSelector.labels{}": {
            "wildcard is not supported in selector": "sc-selector-wildcard",
        },
    },
    "WorkloadEntry": {
        "spec": {
            "Address is required": "we-address-required",
            "UDS may not include ports": "we-uds-ports",
        },
        "spec.address": {
            "UDS must be an absolute path or abstract socket": "we-uds-relative",
            "UDS may not be a dir": "we-uds-dir",
        },
        "spec.ports": {
            "port name must be valid": "we-port-name",
        },
        "spec.ports{}": {
            "port must be between 1-65535": "we-port-range",
        },
    },
    "WorkloadGroup": {
        "spec.probe.grpc.port": {
            "port must be between 1-65535": "wg-grpc-port",
        },
        "spec.probe.httpGet.port": {
            "port must be between 1-65535": "wg-http-port",
        },
        "spec.probe.httpGet.scheme": {
            "scheme must be one of [HTTP, HTTPS]": "wg-http-scheme",
        },
        "spec.probe.tcpSocket.port": {
            "port must be between 1-65535": "wg-tcp-port",
        },
        "spec.template": {
            "UDS may not include ports": "wg-template-uds-ports",
        },
        "spec.template.address": {
            "UDS must be an absolute path or abstract socket": "wg-template-uds-relative",
            "UDS may not be a dir": "wg-template-uds-dir",
        },
        "spec.template.ports": {
            "port name must be valid": "wg-template-port-name",
        },
        "spec.template.ports{}": {
            "port must be between 1-65535": "wg-template-port-range",
        },
    },
}

DURATION_RULE = "must be a valid duration greater than 1ms"  # checked by type in the CRD test


def _cel_rules(schema: dict[str, Any], path: str) -> set[tuple[str, str]]:
    found = {(path, rule["message"]) for rule in schema.get("x-kubernetes-validations", [])}
    for name, child in schema.get("properties", {}).items():
        found |= _cel_rules(child, f"{path}.{name}")
    if "items" in schema:
        found |= _cel_rules(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found |= _cel_rules(schema["additionalProperties"], f"{path}{{}}")
    return found


def test_every_crd_cel_rule_has_a_rejecting_case() -> None:
    kinds = {
        "VirtualService", "DestinationRule", "Gateway", "ServiceEntry",
        "WorkloadEntry", "WorkloadGroup", "Sidecar",
    }  # fmt: skip
    rules = set()
    for crd in yaml.load_all(CRDS.read_text(), Loader=yaml.CSafeLoader):  # C parser: fast
        if crd and crd["spec"]["group"] == GROUP and crd["spec"]["names"]["kind"] in kinds:
            schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            kind = crd["spec"]["names"]["kind"]
            rules |= {
                (kind, path, message)
                for path, message in _cel_rules(schema, "spec")
                if message != DURATION_RULE
            }
    covered = {
        (kind, path, message): case_id
        for kind, paths in CEL_RULE_CASES.items()
        for path, messages in paths.items()
        for message, case_id in messages.items()
    }
    assert rules == set(covered)
    assert set(covered.values()) <= {case.id for case in CASES}
