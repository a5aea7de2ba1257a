"""What a running local mesh leaves in its run directory, so other commands can find it.

`meshctl up` writes `mesh.json` when the mesh is ready and removes it when the mesh stops;
`meshctl status` and `meshctl down` read it, and a second `up` sees that a mesh is running
instead of failing on busy ports. The process id is the source of truth: a file whose process
is gone (the mesh was killed) describes nothing and is treated as absent.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

STATE_FILE: Final = "mesh.json"


@dataclass(frozen=True)
class Endpoint:
    """A component of the mesh and where to ask whether it is healthy."""

    name: str
    address: str
    health_url: str


@dataclass(frozen=True)
class MeshState:
    pid: int
    config_dir: str
    ready: bool
    control_plane: list[Endpoint] = field(default_factory=list)
    pods: list[Endpoint] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # what to try: through the ingress gateway

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, run_dir: Path) -> MeshState | None:
        """The state of the mesh running from `run_dir`; None if none runs there."""
        path = run_dir / STATE_FILE
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            state = cls(
                pid=int(raw["pid"]),
                config_dir=str(raw["config_dir"]),
                ready=bool(raw["ready"]),
                control_plane=[Endpoint(**e) for e in raw.get("control_plane", [])],
                pods=[Endpoint(**e) for e in raw.get("pods", [])],
                urls=[str(u) for u in raw.get("urls", [])],
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a local mesh state file: {error}") from error
        return state if process_alive(state.pid) else None

    @staticmethod
    def remove(run_dir: Path) -> None:
        (run_dir / STATE_FILE).unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, not ours to signal
    return True
