"""The CNI plugin's protocol: environment and stdin in, result or error object out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.capture.iptables import IptablesError, NatTable
from agent.capture.rules import CaptureConfig, Ruleset, build_rules
from agent.cni.plugin import CniError, error_json, run

PREVIOUS = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
    "ips": [{"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 0}],
}


class FakeIptables:
    """Records the namespace and what was applied or removed."""

    calls: list[tuple[str, str]] = []
    saved = ""
    fail = False

    def __init__(self, netns: str) -> None:
        self.netns = netns

    def apply(self, wanted: Ruleset) -> bool:
        self._call("apply")
        return True

    def cleanup(self) -> bool:
        self._call("cleanup")
        return True

    def nat_table(self) -> NatTable:
        self._call("read")
        return NatTable.parse(FakeIptables.saved)

    def _call(self, what: str) -> None:
        if FakeIptables.fail:
            raise IptablesError("iptables-restore: permission denied")
        FakeIptables.calls.append((what, self.netns))


@pytest.fixture(autouse=True)
def fake() -> type[FakeIptables]:
    FakeIptables.calls, FakeIptables.saved, FakeIptables.fail = [], "", False
    return FakeIptables


def _env(command: str, netns: str = "/var/run/netns/p", namespace: str = "default") -> dict:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME=p",
        "CNI_PATH": "/opt/cni/bin",
    }


def _config(version: str = "1.0.0", **extra: Any) -> str:
    config = {"cniVersion": version, "name": "net", "type": "mesh-cni", **extra}
    return json.dumps(config)


def _run(env: dict, stdin: str) -> str:
    return run(env, stdin, FakeIptables)  # type: ignore[arg-type]


def test_add_applies_in_the_pods_namespace_and_passes_the_result_on() -> None:
    output = _run(_env("ADD"), _config(prevResult=PREVIOUS))
    assert json.loads(output) == PREVIOUS
    assert FakeIptables.calls == [("apply", "/var/run/netns/p")]


def test_add_answers_in_the_configs_version() -> None:
    previous = {**PREVIOUS, "cniVersion": "0.4.0"}
    output = json.loads(_run(_env("ADD"), _config("0.4.0", prevResult=previous)))
    assert output == previous


def test_add_needs_to_be_chained() -> None:
    with pytest.raises(CniError) as failed:
        _run(_env("ADD"), _config())
    assert failed.value.code == 7
    assert FakeIptables.calls == []


def test_excluded_namespaces_are_passed_through() -> None:
    config = _config(prevResult=PREVIOUS, exclude_namespaces=["kube-system"])
    assert json.loads(_run(_env("ADD", namespace="kube-system"), config)) == PREVIOUS
    _run(_env("CHECK", namespace="kube-system"), config)
    _run(_env("DEL", namespace="kube-system"), config)
    assert FakeIptables.calls == []


def test_check_compares_with_the_wanted_rules() -> None:
    config = _config(prevResult=PREVIOUS)
    with pytest.raises(CniError) as failed:
        _run(_env("CHECK"), config)
    assert failed.value.code == 101
    assert "chain ISTIO_OUTPUT is missing" in failed.value.details
    FakeIptables.saved = build_rules(CaptureConfig()).restore_input()
    assert _run(_env("CHECK"), config) == ""


def test_check_needs_cni_0_4() -> None:
    with pytest.raises(CniError) as failed:
        _run(_env("CHECK"), _config("0.3.1", prevResult=PREVIOUS))
    assert failed.value.code == 1


def test_del_cleans_up_an_existing_namespace_and_ignores_a_gone_one(tmp_path: Path) -> None:
    netns = tmp_path / "netns"
    netns.touch()
    assert _run(_env("DEL", str(netns)), _config()) == ""
    assert FakeIptables.calls == [("cleanup", str(netns))]
    assert _run(_env("DEL", str(tmp_path / "gone")), _config()) == ""
    assert _run(_env("DEL", ""), _config()) == ""
    assert len(FakeIptables.calls) == 1


def test_version() -> None:
    assert json.loads(_run(_env("VERSION"), '{"cniVersion": "0.4.0"}')) == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    }


@pytest.mark.parametrize(
    ("env", "stdin", "code"),
    [
        (_env("GC"), _config(), 4),
        (_env("ADD", netns=""), _config(prevResult=PREVIOUS), 4),
        (_env("ADD"), "{not json", 6),
        (_env("ADD"), "[]", 6),
        (_env("ADD"), _config("2.0.0", prevResult=PREVIOUS), 1),
        (_env("ADD"), _config(prevResult=PREVIOUS, capture={"proxy_uid": "x"}), 7),
        (_env("ADD"), _config(prevResult=PREVIOUS, capture="all"), 7),
    ],
)
def test_errors_carry_the_specifications_codes(env: dict, stdin: str, code: int) -> None:
    with pytest.raises(CniError) as failed:
        _run(env, stdin)
    assert failed.value.code == code


def test_iptables_failure_is_a_plugin_error() -> None:
    FakeIptables.fail = True
    with pytest.raises(CniError) as failed:
        _run(_env("ADD"), _config(prevResult=PREVIOUS))
    assert failed.value.code == 100
    assert "permission denied" in failed.value.details
    body = json.loads(error_json(failed.value))
    assert body == {
        "cniVersion": "1.0.0",
        "code": 100,
        "msg": "installing the capture rules failed",
        "details": "iptables-restore: permission denied",
    }


def test_the_executable_prints_the_error_object_and_exits_1() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cni"],
        input=_config(),
        env={"CNI_COMMAND": "ADD", "CNI_NETNS": "/var/run/netns/x"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["code"] == 7
    assert "must be chained" in done.stderr
