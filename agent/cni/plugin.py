"""The CNI protocol for the capture plugin: one invocation in, one result or error out.

Istio CNI's role: with the plugin chained after the runtime's network plugin (bridge,
ptp, ...), pods need no privileged `istio-init` container; the runtime itself has the
capture rules installed in each new pod's network namespace. What the CNI specification
(1.0.0; 0.3.x and 0.4.0 too) asks of a chained plugin, and how this one answers:

- The runtime runs the plugin with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
  CNI_ARGS and CNI_PATH in the environment and the network configuration as JSON on stdin,
  with the previous plugin's result as `prevResult`.
- ADD installs the rules in CNI_NETNS and prints `prevResult` unchanged: this plugin adds no
  interface or address, so the result it passes on is the one it got. Without `prevResult`
  the plugin is not chained, which is an error, as in Istio.
- CHECK verifies the rules are there exactly (an error lists what differs); DEL removes them,
  and succeeds when the namespace or the rules are already gone, as the specification asks.
- VERSION prints the versions supported.
- An error is a JSON object (`code`, `msg`, `details`) on stdout and a non-zero exit.

Pods in `exclude_namespaces` (Istio's setting; the namespace comes from CNI_ARGS'
K8S_POD_NAMESPACE, which kubelet passes) are passed through untouched. The `capture` object
holds the capture settings (`agent.capture.rules.SETTINGS`: the same as `mesh-agent
iptables`' long options) for every pod; per-pod annotations would need the Kubernetes API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.capture.iptables import Iptables, IptablesError, problems
from agent.capture.rules import CaptureSettingsError, Ruleset, build_rules, config_from_settings

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
_CHECK_SINCE = "0.4.0"

# Error codes: 1-99 are the specification's, 100 and up the plugin's own.
INCOMPATIBLE_VERSION = 1
INVALID_ENVIRONMENT = 4
DECODING_FAILURE = 6
INVALID_CONFIG = 7
IPTABLES_FAILED = 100
CAPTURE_MISSING = 101

IptablesFactory = Callable[[str], Iptables]
"""Builds the iptables runner for a namespace path (tests substitute a fake)."""


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


@dataclass(frozen=True)
class Invocation:
    """One call of the plugin, as the runtime made it."""

    command: str
    netns: str
    pod_namespace: str
    config: Mapping[str, Any]

    @property
    def version(self) -> str:
        return str(self.config.get("cniVersion", "1.0.0"))


def run(environ: Mapping[str, str], stdin: str, iptables: IptablesFactory = Iptables) -> str:
    """Carry out one invocation; the text to print on success. Raises CniError."""
    invocation = _parse(environ, stdin)
    if invocation.command == "VERSION":
        return json.dumps(
            {"cniVersion": invocation.version, "supportedVersions": list(SUPPORTED_VERSIONS)}
        )
    if invocation.command == "DEL":
        _delete(invocation, iptables)
        return ""
    previous = invocation.config.get("prevResult")
    if not isinstance(previous, dict):
        raise CniError(INVALID_CONFIG, "must be chained after a plugin that sets up the pod")
    if invocation.command == "CHECK":
        _check(invocation, iptables)
        return ""
    if not _excluded(invocation):
        _apply(invocation, iptables)
    return json.dumps({**previous, "cniVersion": invocation.version})


def error_json(error: CniError, version: str = SUPPORTED_VERSIONS[-1]) -> str:
    body = {"cniVersion": version, "code": error.code, "msg": error.msg}
    if error.details:
        body["details"] = error.details
    return json.dumps(body)


def _parse(environ: Mapping[str, str], stdin: str) -> Invocation:
    command = environ.get("CNI_COMMAND", "")
    if command not in ("ADD", "DEL", "CHECK", "VERSION"):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not supported")
    try:
        config = json.loads(stdin) if stdin.strip() else {}
    except json.JSONDecodeError as error:
        raise CniError(DECODING_FAILURE, "the configuration is not JSON", str(error)) from None
    if not isinstance(config, dict):
        raise CniError(DECODING_FAILURE, "the configuration is not a JSON object")
    invocation = Invocation(
        command=command,
        netns=environ.get("CNI_NETNS", ""),
        pod_namespace=_cni_args(environ.get("CNI_ARGS", "")).get("K8S_POD_NAMESPACE", ""),
        config=config,
    )
    if invocation.version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {invocation.version} is not supported")
    if command in ("ADD", "CHECK") and not invocation.netns:
        raise CniError(INVALID_ENVIRONMENT, f"{command} needs CNI_NETNS")
    return invocation


def _cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS: `K1=V1;K2=V2`."""
    pairs = (item.partition("=") for item in text.split(";") if item)
    return {key: value for key, _, value in pairs}


def _excluded(invocation: Invocation) -> bool:
    excluded = invocation.config.get("exclude_namespaces", [])
    return bool(invocation.pod_namespace) and invocation.pod_namespace in excluded


def _wanted(invocation: Invocation) -> Ruleset:
    settings = invocation.config.get("capture", {})
    if not isinstance(settings, dict):
        raise CniError(INVALID_CONFIG, "capture must be an object of capture settings")
    try:
        return build_rules(config_from_settings(settings))
    except CaptureSettingsError as error:
        raise CniError(INVALID_CONFIG, f"capture: {error}") from None


def _apply(invocation: Invocation, iptables: IptablesFactory) -> None:
    wanted = _wanted(invocation)
    try:
        iptables(invocation.netns).apply(wanted)
    except IptablesError as error:
        raise CniError(IPTABLES_FAILED, "installing the capture rules failed", str(error)) from None


def _check(invocation: Invocation, iptables: IptablesFactory) -> None:
    if _version_tuple(invocation.version) < _version_tuple(_CHECK_SINCE):
        raise CniError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion {_CHECK_SINCE} or later")
    if _excluded(invocation):
        return
    wanted = _wanted(invocation)
    try:
        found = problems(wanted, iptables(invocation.netns).nat_table())
    except IptablesError as error:
        raise CniError(IPTABLES_FAILED, "reading the rules failed", str(error)) from None
    if found:
        raise CniError(CAPTURE_MISSING, "the capture rules are not in place", "; ".join(found))


def _delete(invocation: Invocation, iptables: IptablesFactory) -> None:
    """Remove the rules if the namespace is still there; nothing to do otherwise."""
    if not invocation.netns or not os.path.exists(invocation.netns) or _excluded(invocation):
        return
    try:
        iptables(invocation.netns).cleanup()
    except IptablesError as error:
        raise CniError(IPTABLES_FAILED, "removing the capture rules failed", str(error)) from None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
