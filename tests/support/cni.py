"""The container runtime's half of CNI, small: run a chain of plugins as the specification says.

`CniRuntime` does what containerd or CRI-O do with a network configuration list (CNI 1.0.0):
each plugin is the executable named by its `type`, found in the CNI_PATH directories, run
with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH set and its
configuration on stdin (the list's `name` and `cniVersion` inserted). ADD runs the plugins in
order, each getting the previous one's result as `prevResult`, and caches the last result;
CHECK runs them in order and DEL in reverse, both with the cached result as `prevResult`.
The plugins run in the runtime's namespace (the topology's hub, the "node").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.netns import Netns

DEBIAN_PLUGINS = Path("/usr/lib/cni")  # containernetworking-plugins


class CniFailure(AssertionError):
    """A plugin failed: its exit code and its error object (or raw output)."""

    def __init__(self, plugin: str, returncode: int, error: Any) -> None:
        super().__init__(f"{plugin} exited {returncode}: {error}")
        self.returncode = returncode
        self.error = error


def install_mesh_cni(directory: Path) -> Path:
    """`mesh-cni` in `directory`: the same launcher pip writes for the console script."""
    directory.mkdir(parents=True, exist_ok=True)
    launcher = directory / "mesh-cni"
    launcher.write_text(
        f"#!{sys.executable}\nfrom agent.cni.__main__ import main\nraise SystemExit(main())\n"
    )
    launcher.chmod(0o755)
    return launcher


@dataclass
class CniRuntime:
    network: Mapping[str, Any]  # a network configuration list: cniVersion, name, plugins
    plugin_dirs: Sequence[Path]
    node: Netns
    results: dict[str, Any] = field(default_factory=dict)  # container id -> cached ADD result
    outputs: dict[str, list[Any]] = field(default_factory=dict)  # each plugin's ADD result

    def add(self, container: str, netns: Netns, args: str = "") -> Any:
        result = None
        self.outputs[container] = []
        for plugin in self.network["plugins"]:
            result = json.loads(self.invoke("ADD", plugin, container, netns, args, result))
            self.outputs[container].append(result)
        self.results[container] = result
        return result

    def check(self, container: str, netns: Netns, args: str = "") -> None:
        for plugin in self.network["plugins"]:
            self.invoke("CHECK", plugin, container, netns, args, self.results[container])

    def delete(self, container: str, netns: Netns | None, args: str = "") -> None:
        cached = self.results.get(container)
        for plugin in reversed(self.network["plugins"]):
            self.invoke("DEL", plugin, container, netns, args, cached)

    def version(self, plugin_type: str) -> Any:
        plugin = {"type": plugin_type}
        return json.loads(self.invoke("VERSION", plugin, "", None, "", None))

    def invoke(
        self,
        command: str,
        plugin: Mapping[str, Any],
        container: str,
        netns: Netns | None,
        args: str,
        previous: Any,
    ) -> str:
        config = {**plugin, "cniVersion": self.network["cniVersion"], "name": self.network["name"]}
        if previous is not None:
            config["prevResult"] = previous
        env = {
            "PATH": os.environ["PATH"],
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": netns.path if netns is not None else "",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": args,
            "CNI_PATH": os.pathsep.join(str(d) for d in self.plugin_dirs),
        }
        executable = self._find(plugin["type"])
        done = subprocess.run(
            self.node.exec_argv(str(executable)),
            input=json.dumps(config),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            try:
                error = json.loads(done.stdout)
            except json.JSONDecodeError:
                error = done.stdout + done.stderr
            raise CniFailure(plugin["type"], done.returncode, error)
        return done.stdout

    def _find(self, plugin_type: str) -> Path:
        for directory in self.plugin_dirs:
            if (directory / plugin_type).is_file():
                return directory / plugin_type
        raise FileNotFoundError(f"no CNI plugin {plugin_type!r} in {self.plugin_dirs}")
