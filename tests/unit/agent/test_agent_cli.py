"""Command-line flags become the ProxySpec the bootstrap is built from."""

import pytest

from agent.__main__ import parse_args, spec_from_args
from agent.bootstrap import InterceptionMode, ProxyType, XdsApi


def test_flags_to_spec() -> None:
    args = parse_args(
        [
            "--ip=127.0.5.6",
            "--pod=gw-1",
            "--namespace=istio-system",
            "--service-account=gw",
            "--labels=app=ingress, istio=ingressgateway",
            "--pilot=pilot.local:15010",
            "--type=router",
            "--xds=delta",
            "--interception=REDIRECT",
            "--http-proxy-port=15080",
            "--app-address=127.0.105.6",
        ]
    )
    spec = spec_from_args(args)
    assert spec.node_id == "router~127.0.5.6~gw-1.istio-system~istio-system.svc.cluster.local"
    assert spec.labels == {"app": "ingress", "istio": "ingressgateway"}
    assert spec.xds_api is XdsApi.DELTA_GRPC
    assert spec.proxy_type is ProxyType.ROUTER
    assert spec.interception is InterceptionMode.REDIRECT
    assert (spec.pilot, spec.http_proxy_port, spec.app_address) == (
        "pilot.local:15010",
        15080,
        "127.0.105.6",
    )


def test_defaults() -> None:
    spec = spec_from_args(parse_args(["--ip=127.0.5.7", "--pod=p"]))
    assert (spec.namespace, spec.service_account, spec.pilot) == (
        "default",
        "default",
        "127.0.0.1:15010",
    )
    assert (spec.proxy_type, spec.xds_api, spec.interception) == (
        ProxyType.SIDECAR,
        XdsApi.GRPC,
        InterceptionMode.NONE,
    )
    assert spec.labels == {}
    assert spec.http_proxy_port is None


@pytest.mark.parametrize("flag", ["--labels=novalue", "--labels==x", "--pilot=:1", "--xds=rest"])
def test_bad_flags_exit(flag: str) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--ip=127.0.5.8", "--pod=p", flag])
