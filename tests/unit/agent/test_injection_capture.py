"""Traffic capture settings from Istio's annotations: iptables flags and CNI annotations."""

from __future__ import annotations

import pytest

from agent.injector import InjectionError
from agent.injector.capture import Capture

DEFAULT_ARGS = [
    "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
    "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020",
]  # fmt: skip


def test_without_annotations_everything_but_the_proxy_is_captured() -> None:
    assert Capture.from_annotations({}).iptables_args() == DEFAULT_ARGS


def test_the_traffic_annotations_narrow_the_capture() -> None:
    capture = Capture.from_annotations(
        {
            "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8, 172.16.0.0/12",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.1/32",
            "traffic.sidecar.istio.io/includeInboundPorts": "9080,9090",
            "traffic.sidecar.istio.io/excludeInboundPorts": "8443",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "3306, 5432",
        }
    )

    assert capture.iptables_args() == [
        "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
        "-i", "10.0.0.0/8,172.16.0.0/12",
        "-x", "10.96.0.1/32",
        "-b", "9080,9090",
        "-d", "15090,15021,15020,8443",
        "-o", "3306,5432",
    ]  # fmt: skip


def test_interception_none_is_accepted() -> None:
    capture = Capture.from_annotations({"sidecar.istio.io/interceptionMode": "NONE"})
    assert capture.mode == "NONE"


@pytest.mark.parametrize(
    ("annotation", "value", "message"),
    [
        ("sidecar.istio.io/interceptionMode", "TPROXY", "not supported"),
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,nope", "'nope'"),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "*", "'\\*'"),
        ("traffic.sidecar.istio.io/includeInboundPorts", "80,http", "'http'"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "*", "'\\*'"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "70000", "'70000'"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "0", "'0'"),
    ],
)
def test_an_invalid_annotation_is_named(annotation: str, value: str, message: str) -> None:
    with pytest.raises(InjectionError, match=f"^{annotation}: .*{message}"):
        Capture.from_annotations({annotation: value})


def test_cni_reads_the_same_settings_from_annotations() -> None:
    capture = Capture.from_annotations({"traffic.sidecar.istio.io/excludeInboundPorts": "8443"})

    assert capture.cni_annotations() == {
        "sidecar.istio.io/interceptionMode": "REDIRECT",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
        "traffic.sidecar.istio.io/includeInboundPorts": "*",
        "traffic.sidecar.istio.io/excludeInboundPorts": "15090,15021,15020,8443",
    }
