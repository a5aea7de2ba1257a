"""The capture CNI plugin, run through the CNI protocol exactly as a container runtime runs it.

The network is Debian's containernetworking-plugins `bridge` with `host-local` IPAM, and
`mesh-cni` chained after it (`tests.support.cni` is the runtime's half: CNI_* environment,
configuration on stdin, `prevResult` handed along). The plugins run in the topology's hub,
the "node"; each pod is an empty namespace, as a runtime creates it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.capture.rules import build_rules, config_from_settings
from tests.integration.test_capture_iptables import (
    POD_IP,
    SECOND_HUB_IP,
    assert_capture_semantics,
)
from tests.support.cni import DEBIAN_PLUGINS, CniFailure, CniRuntime, install_mesh_cni
from tests.support.netns import (
    BRIDGE,
    GATEWAY,
    Topology,
    create_topology,
    iptables_save,
    readable_by_pods,
    requires_root,
)

pytestmark = [requires_root, readable_by_pods]

CAPTURE = {"exclude_outbound_cidrs": f"{SECOND_HUB_IP}/32", "exclude_outbound_ports": "2222"}
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p"


@pytest.fixture
def topology() -> Iterator[Topology]:
    built = create_topology()
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def runtime(topology: Topology, tmp_path: Path) -> CniRuntime:
    if not (DEBIAN_PLUGINS / "bridge").is_file():
        pytest.fail("no CNI bridge plugin: apt-get install containernetworking-plugins")
    plugins = tmp_path / "cni-bin"
    install_mesh_cni(plugins)
    network = {
        "cniVersion": "1.0.0",
        "name": "meshnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(tmp_path / "ipam"),
                    "ranges": [
                        [
                            {
                                "subnet": "198.18.0.0/24",
                                "rangeStart": POD_IP,
                                "rangeEnd": POD_IP,
                                "gateway": GATEWAY,
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "mesh-cni", "capture": CAPTURE, "exclude_namespaces": ["kube-system"]},
        ],
    }
    return CniRuntime(network, [DEBIAN_PLUGINS, plugins], topology.hub)


def test_add_check_del_through_the_cni_protocol(topology: Topology, runtime: CniRuntime) -> None:
    pod = topology.add_namespace("p")
    pod.run("ip", "link", "set", "lo", "up")
    before = iptables_save(pod)

    result = runtime.add("c1", pod, POD_ARGS)
    # A chained plugin that adds no interface passes the previous result on unchanged.
    bridge_result, mesh_cni_result = runtime.outputs["c1"]
    assert mesh_cni_result == bridge_result == result
    assert [ip["address"] for ip in result["ips"]] == [f"{POD_IP}/24"]

    wanted = build_rules(config_from_settings(CAPTURE))
    saved = iptables_save(pod)
    assert set(wanted.restore_input().splitlines()) - {"*nat", "COMMIT", ""} <= set(
        saved.splitlines()
    )
    runtime.check("c1", pod, POD_ARGS)
    # The same capture as `mesh-agent iptables` with the same settings, on real connections.
    topology.hub.run("ip", "addr", "add", f"{SECOND_HUB_IP}/32", "dev", BRIDGE)
    assert_capture_semantics(topology.hub, pod)

    # CHECK notices a rule gone missing and says which.
    pod.run("iptables", "-t", "nat", "-D", "OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT")
    with pytest.raises(CniFailure) as failed:
        runtime.check("c1", pod, POD_ARGS)
    assert failed.value.error["code"] == 101
    assert "-A OUTPUT -p tcp -j ISTIO_OUTPUT" in failed.value.error["details"]
    # ADD (of this plugin, with its prevResult) puts it back.
    runtime.invoke("ADD", runtime.network["plugins"][1], "c1", pod, POD_ARGS, bridge_result)
    assert iptables_save(pod) == saved

    runtime.delete("c1", pod, POD_ARGS)
    assert iptables_save(pod) == before
    runtime.delete("c1", pod, POD_ARGS)  # DEL twice succeeds, as the specification asks
    runtime.delete("c1", None, POD_ARGS)  # and without a namespace (it is gone)


def test_excluded_namespace_is_passed_through(topology: Topology, runtime: CniRuntime) -> None:
    pod = topology.add_namespace("k")
    before = iptables_save(pod)
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns"
    result = runtime.add("c2", pod, args)
    assert result["ips"]
    assert "ISTIO_" not in iptables_save(pod)
    runtime.check("c2", pod, args)
    runtime.delete("c2", pod, args)
    assert iptables_save(pod) == before


def test_version_and_errors(topology: Topology, runtime: CniRuntime) -> None:
    assert runtime.version("mesh-cni") == {
        "cniVersion": "1.0.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    }
    pod = topology.add_namespace("e")
    unchained: dict[str, Any] = {"type": "mesh-cni"}
    with pytest.raises(CniFailure) as failed:
        runtime.invoke("ADD", unchained, "c3", pod, "", None)
    assert failed.value.returncode == 1
    assert failed.value.error["code"] == 7  # not chained: invalid configuration
    bad = {"type": "mesh-cni", "capture": {"proxy_uid": "istio-proxy"}}
    with pytest.raises(CniFailure) as failed:
        runtime.invoke("ADD", bad, "c3", pod, "", {"cniVersion": "1.0.0", "ips": []})
    assert failed.value.error["code"] == 7
    assert "proxy_uid" in failed.value.error["msg"]
    assert "ISTIO_" not in iptables_save(pod)
