"""Real Istio networking configuration is accepted: bookinfo's samples, at every served version.

The samples are read from ../shared/istio (never copied into the project). Kinds bookinfo has
no sample for (Sidecar, WorkloadEntry, WorkloadGroup, a STATIC ServiceEntry) get small documents
written here in the same spirit, as the local mesh would register bookinfo's workloads.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshconfig import load_documents, validate_document
from meshconfig.networking import KINDS
from tests.support.shared import BOOKINFO_NETWORKING

SAMPLES = BOOKINFO_NETWORKING
GROUP = "networking.istio.io"


def _sample_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        for document in load_documents(path.read_text(), str(path)):
            if str(document.get("apiVersion", "")).startswith(f"{GROUP}/"):
                found.append(
                    (
                        f"{path.name}:{document['kind']}/{document['metadata']['name']}",
                        dict(document),
                    )
                )
    return found


SAMPLE_DOCUMENTS = _sample_documents()


def test_the_samples_cover_the_bookinfo_kinds() -> None:
    kinds = {document["kind"] for _, document in SAMPLE_DOCUMENTS}
    assert kinds == {"Gateway", "VirtualService", "DestinationRule", "ServiceEntry"}
    assert len(SAMPLE_DOCUMENTS) >= 35


@pytest.mark.parametrize(
    ("label", "document"), SAMPLE_DOCUMENTS, ids=[i for i, _ in SAMPLE_DOCUMENTS]
)
def test_bookinfo_sample_validates(label: str, document: dict[str, Any]) -> None:
    resource = validate_document(document, label)
    assert resource.kind.kind == document["kind"]
    # What we keep is what Istio would store: dumping and validating again changes nothing.
    assert resource.spec_dict() == document["spec"]
    again = validate_document(resource.to_document(), "roundtrip")
    assert again.spec == resource.spec


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_is_accepted(version: str) -> None:
    for label, document in SAMPLE_DOCUMENTS:
        validate_document({**document, "apiVersion": f"{GROUP}/{version}"}, label)


def test_kinds_table() -> None:
    assert [kind.kind for kind in KINDS] == [
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "WorkloadEntry",
        "WorkloadGroup",
        "Sidecar",
    ]
    for kind in KINDS:
        assert kind.group == GROUP
        assert kind.versions == ("v1", "v1beta1", "v1alpha3")
        assert kind.preferred_api_version == f"{GROUP}/v1"


def _document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "bookinfo"},
        "spec": spec,
    }


LOCAL_MESH_DOCUMENTS = [
    _document(
        "WorkloadEntry",
        "details-v1-0",
        {
            "address": "127.0.1.5",
            "ports": {"http": 9080},
            "labels": {"app": "details", "version": "v1"},
            "serviceAccount": "bookinfo-details",
            "locality": "local/host/0",
            "weight": 1,
        },
    ),
    _document(
        "WorkloadEntry",
        "ratings-uds",
        {"address": "unix:///run/bookinfo/ratings.sock", "labels": {"app": "ratings"}},
    ),
    _document("WorkloadEntry", "remote", {"network": "vm-network", "labels": {"app": "remote"}}),
    _document(
        "WorkloadGroup",
        "reviews",
        {
            "metadata": {"labels": {"app": "reviews"}, "annotations": {"owner": "bookinfo"}},
            "template": {"ports": {"http": 9080}, "serviceAccount": "bookinfo-reviews"},
            "probe": {
                "periodSeconds": 5,
                "initialDelaySeconds": 1,
                "httpGet": {
                    "path": "/health",
                    "port": 9080,
                    "scheme": "HTTP",
                    "httpHeaders": [{"name": "x-probe", "value": "1"}],
                },
            },
        },
    ),
    _document(
        "ServiceEntry",
        "details",
        {
            "hosts": ["details.bookinfo.svc.cluster.local"],
            "addresses": ["240.240.0.5"],
            "ports": [{"number": 9080, "name": "http", "protocol": "HTTP", "targetPort": 9080}],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "endpoints": [
                {"address": "127.0.1.5", "ports": {"http": 9080}, "labels": {"version": "v1"}},
                {"address": "127.0.1.6", "labels": {"version": "v2"}},
            ],
            "exportTo": [".", "istio-system"],
        },
    ),
    _document(
        "ServiceEntry",
        "reviews",
        {
            "hosts": ["reviews.bookinfo.svc.cluster.local"],
            "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "workloadSelector": {"labels": {"app": "reviews"}},
        },
    ),
    _document(
        "Sidecar",
        "productpage",
        {
            "workloadSelector": {"labels": {"app": "productpage"}},
            "ingress": [
                {
                    "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                    "defaultEndpoint": "127.0.0.1:9080",
                    "connectionPool": {"http": {"http1MaxPendingRequests": 100}},
                }
            ],
            "egress": [
                {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "hosts": ["./*"]},
                {"hosts": ["istio-system/*", "*/reviews.bookinfo.svc.cluster.local"]},
            ],
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {
                    "host": "egress.istio-system.svc.cluster.local",
                    "port": {"number": 80},
                },
            },
            "inboundConnectionPool": {"tcp": {"maxConnections": 100, "connectTimeout": "2s"}},
        },
    ),
    _document(
        "DestinationRule",
        "reviews-policies",
        {
            "host": "reviews.bookinfo.svc.cluster.local",
            "trafficPolicy": {
                "connectionPool": {
                    "tcp": {
                        "maxConnections": 100,
                        "tcpKeepalive": {"time": "7200s", "interval": "75s"},
                    },
                    "http": {
                        "http2MaxRequests": 1000,
                        "idleTimeout": "1h",
                        "h2UpgradePolicy": "UPGRADE",
                    },
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 7,
                    "interval": "5m",
                    "baseEjectionTime": "15m",
                    "maxEjectionPercent": 50,
                },
                "loadBalancer": {
                    "consistentHash": {
                        "httpCookie": {"name": "user", "ttl": "0s"},
                        "maglev": {"tableSize": 65537},
                    },
                    "localityLbSetting": {
                        "distribute": [
                            {
                                "from": "us-west/zone1/*",
                                "to": {"us-west/zone1/*": 80, "us-west/zone2/*": 20},
                            }
                        ]
                    },
                },
            },
            "subsets": [
                {
                    "name": "v1",
                    "labels": {"version": "v1"},
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                }
            ],
            "workloadSelector": {"matchLabels": {"app": "productpage"}},
        },
    ),
    _document(
        "Gateway",
        "bookinfo-https",
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 8443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["bookinfo/bookinfo.example.com"],
                    "tls": {
                        "mode": "SIMPLE",
                        "credentialName": "bookinfo-cert",
                        "minProtocolVersion": "TLSV1_2",
                    },
                },
                {
                    "port": {"number": 8080, "name": "http", "protocol": "HTTP"},
                    "hosts": ["*.example.com"],
                    "tls": {"httpsRedirect": True},
                },
            ],
        },
    ),
    _document(
        "VirtualService",
        "bookinfo-edge",
        {
            "hosts": ["bookinfo.example.com"],
            "gateways": ["bookinfo/bookinfo-https", "mesh"],
            "http": [
                {
                    "name": "legacy",
                    "match": [
                        {"uri": {"prefix": "/old"}, "withoutHeaders": {"x-skip": {"regex": "*"}}}
                    ],
                    "redirect": {"uri": "/productpage", "redirectCode": 301},
                },
                {
                    "match": [{"uri": {"regex": "^/api/v[0-9]+/.*"}, "method": {"exact": "GET"}}],
                    "rewrite": {"uriRegexRewrite": {"match": "^/api/v1/(.*)", "rewrite": "/\\1"}},
                    "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}],
                    "timeout": "10s",
                    "retries": {
                        "attempts": 3,
                        "perTryTimeout": "2s",
                        "retryOn": "5xx,connect-failure,503",
                    },
                    "mirror": {"host": "productpage-shadow"},
                    "mirror_percent": 10,
                    "corsPolicy": {
                        "allowOrigins": [{"exact": "https://example.com"}],
                        "allowMethods": ["GET", "POST"],
                        "allowHeaders": ["*"],
                        "maxAge": "24h",
                    },
                    "headers": {
                        "request": {"set": {"x-bookinfo": "%HOSTNAME%"}, "remove": ["x-debug"]}
                    },
                },
                {"directResponse": {"status": 404, "body": {"string": "not here"}}},
            ],
        },
    ),
    _document(
        "VirtualService",
        "ratings-tcp",
        {
            "hosts": ["mongodb.bookinfo.svc.cluster.local"],
            "tcp": [
                {
                    "match": [{"port": 27017, "destinationSubnets": ["10.0.0.0/8"]}],
                    "route": [
                        {"destination": {"host": "mongodb", "subset": "v1"}, "weight": 75},
                        {"destination": {"host": "mongodb", "subset": "v2"}, "weight": 25},
                    ],
                }
            ],
            "tls": [
                {
                    "match": [{"sniHosts": ["mongodb.bookinfo.svc.cluster.local"]}],
                    "route": [{"destination": {"host": "mongodb"}}],
                }
            ],
        },
    ),
]


@pytest.mark.parametrize(
    "document",
    LOCAL_MESH_DOCUMENTS,
    ids=[f"{d['kind']}/{d['metadata']['name']}" for d in LOCAL_MESH_DOCUMENTS],
)
def test_local_mesh_documents_validate(document: dict[str, Any]) -> None:
    resource = validate_document(document, "test")
    again = validate_document(resource.to_document(), "roundtrip")
    assert again.spec == resource.spec
