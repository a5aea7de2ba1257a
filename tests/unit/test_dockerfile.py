"""The Dockerfile and .dockerignore checked against the repository, without building.

The image must install the package (every package pyproject installs, so every entry point the
compose file runs), from sources that exist and that .dockerignore lets through, on a pinned
base with a Python pyproject accepts, and run as Istio's proxy user (uid 1337), owning the
directories docker-compose.yml mounts its named volumes on (a new volume takes the ownership
of the image directory it is mounted on). Local state (.venv, run/, caches) stays out of the
build context.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROXY_UID = "1337"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        found.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def stages() -> list[Stage]:
    parsed: list[Stage] = []
    for keyword, args in instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(parsed))
            parsed.append(Stage(words[0], name))
        else:
            assert parsed, f"{keyword} before the first FROM"
            parsed[-1].instructions.append((keyword, args))
    return parsed


STAGES = stages()
BUILD, RUNTIME = STAGES[0], STAGES[-1]


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(--from stage or None, sources, destination) of each COPY."""
    found = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        origin = None
        while words[0].startswith("--"):
            option = words.pop(0)
            if option.startswith("--from="):
                origin = option.removeprefix("--from=")
        found.append((origin, words[:-1], words[-1]))
    return found


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str) -> bool:
    """Whether the build context leaves `path` out (it, or a directory above it, matches)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in dockerignore():
        negated = pattern.startswith("!")
        compiled = _regex(pattern.removeprefix("!").strip("/"))
        if any(compiled.fullmatch(candidate) for candidate in candidates):
            result = not negated
    return result


def installed_packages() -> set[str]:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in include}


def venv() -> PurePosixPath:
    """The virtual environment the build stage installs into (its pip does the install)."""
    (install,) = [run for run in BUILD.all("RUN") if "pip install" in run]
    pip = PurePosixPath(install.split()[0])
    assert pip.parts[-2:] == ("bin", "pip"), install
    return pip.parent.parent


# ---- stages and base images ----------------------------------------------------------------


def test_two_stages_on_a_pinned_python_that_pyproject_accepts() -> None:
    assert len(STAGES) == 2
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum is not None
    for stage in STAGES:
        image, _, tag = stage.base.partition(":")
        assert image == "python" and tag and tag != "latest", stage.base
        version = re.match(r"(\d+)\.(\d+)", tag)
        assert version is not None, tag
        assert tuple(map(int, version.groups())) >= tuple(map(int, minimum.groups()))
    assert BUILD.base == RUNTIME.base, "the venv's interpreter must be the same in both stages"


def test_copy_from_names_an_earlier_stage() -> None:
    for index, stage in enumerate(STAGES):
        for origin, _, _ in copies(stage):
            if origin is not None:
                assert origin in [s.name for s in STAGES[:index]], origin


# ---- what the build copies and installs ----------------------------------------------------


def test_copied_sources_exist_and_the_build_context_keeps_them() -> None:
    for origin, sources, _ in copies(BUILD):
        assert origin is None
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source.rstrip("/")), f".dockerignore drops {source}"


def test_the_build_copies_every_package_pyproject_installs() -> None:
    copied = {source.rstrip("/") for _, sources, _ in copies(BUILD) for source in sources}
    metadata = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    assert copied == installed_packages() | metadata
    for package in installed_packages():
        assert (ROOT / package / "__init__.py").is_file(), package


def test_the_build_installs_the_project_with_its_entry_points() -> None:
    (install,) = [run for run in BUILD.all("RUN") if "pip install" in run]
    assert shlex.split(install)[:2] == [str(venv() / "bin" / "pip"), "install"]
    assert "." in shlex.split(install.split("&&")[0]), "the project itself is installed"
    assert any(f"venv {venv()}" in run for run in BUILD.all("RUN")), "the venv is created"
    # A console script runs and Envoy is found (meshcore.envoy_binary), or the build fails.
    scripts = PYPROJECT["project"]["scripts"]
    assert any(f"{venv()}/bin/{script} " in install for script in scripts)
    assert "envoy_path()" in install


def test_the_runtime_stage_has_the_venv_on_its_path() -> None:
    assert (BUILD.name, [str(venv())], str(venv())) in copies(RUNTIME)
    (env,) = RUNTIME.all("ENV")
    settings = dict(item.split("=", 1) for item in shlex.split(env))
    assert settings["PATH"].split(":")[0] == str(venv() / "bin")


# ---- the user and its directories ----------------------------------------------------------


def test_the_image_runs_as_the_proxy_uid() -> None:
    users = RUNTIME.all("USER")
    assert users and users[-1].split(":")[0] == PROXY_UID
    created = " ".join(RUNTIME.all("RUN"))
    assert f"useradd --uid {PROXY_UID}" in created


def proxy_owned_directories() -> set[PurePosixPath]:
    """Directories the runtime stage creates and hands to the proxy user."""
    made: set[PurePosixPath] = set()
    owned: set[PurePosixPath] = set()
    for run in RUNTIME.all("RUN"):
        for step in run.split("&&"):
            words = shlex.split(step)
            if words[:2] == ["mkdir", "-p"]:
                made |= {PurePosixPath(w) for w in words[2:]}
            if words[:2] == ["chown", f"{PROXY_UID}:{PROXY_UID}"]:
                owned |= {PurePosixPath(w) for w in words[2:]}
    return made & owned


def test_named_volumes_mount_on_directories_the_proxy_user_owns() -> None:
    """A new named volume copies the ownership of its mount point in the image: without these
    directories, uid 1337 could not write the CA or the credentials."""
    owned = proxy_owned_directories()
    for name, service in COMPOSE["services"].items():
        if "build" not in service:
            continue
        for entry in service.get("volumes", []):
            source, target = entry.split(":")[:2]
            if not source.startswith((".", "/")):
                assert PurePosixPath(target) in owned, f"{name}: {target}"


def test_the_proxy_users_directories_are_all_used() -> None:
    targets = {
        PurePosixPath(entry.split(":")[1])
        for service in COMPOSE["services"].values()
        if "build" in service
        for entry in service.get("volumes", [])
        if not entry.startswith((".", "/"))
    }
    assert proxy_owned_directories() == targets


# ---- the build context -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".venv",
        ".venv/bin/python",
        "run",
        "run/ca/ca-key.pem",
        "pilot/__pycache__",
        "pilot/__pycache__/server.cpython-311.pyc",
        "meshcore/xds/__pycache__",
        "pilot/server.pyc",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".git",
        "pymesh.egg-info",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert ignored(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "pilot/server.py", "protos"])
def test_dockerignore_keeps_the_sources(path: str) -> None:
    assert not ignored(path)
