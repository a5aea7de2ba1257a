"""docker-compose.yml checked against the code and the files around it, without a Docker engine.

No engine runs here, so the compose mesh is validated by what can go wrong in it: images and
their tags, dependencies, volumes, published ports; every project command parsed by the real
CLI parser of its program (so every flag exists); the ports each service listens on, derived
from those parsed flags, against the addresses other services, health checks and Prometheus
use; the credentials the one-shot `citadel-init` writes against the files the agents, pilot and
mixer read; and compose/config's registry against the sidecars and against examples/bookinfo, the
mesh `make up` runs. If Debian's `docker-compose` and `promtool` are installed, their offline
validators run too.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import ipaddress
import os
import shlex
import shutil
import subprocess
import tomllib
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agent.__main__ import RENEWAL_PORT
from agent.bootstrap import ADMIN_PORT, STATS_PORT, parse_host_port
from agent.health import HEALTH_PORT, READY_PATH
from localmesh.mesh import GATEWAY_LABELS, GATEWAY_NAME
from meshconfig import load_documents, validate_document
from meshcore.identity import CONTROL_PLANE_HOST
from pilot.config_files import load_config_directory

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_CONFIG = ROOT / "compose" / "config"
PROMETHEUS_CONFIG = ROOT / "compose" / "prometheus" / "prometheus.yml"
LOCAL_MESH_EXAMPLE = ROOT / "examples" / "bookinfo"
KUSTOMIZATION = ROOT / "deploy" / "base" / "kustomization.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROJECT = sorted(name for name, service in SERVICES.items() if "build" in service)
THIRD_PARTY = sorted(set(SERVICES) - set(PROJECT))
ANY_ADDRESS = "0.0.0.0"
INIT = "citadel-init"  # the one-shot that writes the CA, tokens and serving certificates
# Environment the applications get, each checked below for its effect on the program.
APP_ENVIRONMENT = {"APP_ADDRESS", "POD_NAME", "HTTP_PROXY"}


# ---- reading the compose file ------------------------------------------------------------


def command(service: str) -> list[str]:
    raw = SERVICES[service].get("command", [])
    return shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]


def script_lines(service: str) -> list[list[str]]:
    """The command lines of a `sh -ec SCRIPT` command."""
    argv = command(service)
    assert argv[:2] == ["sh", "-ec"], f"{service}: expected sh -ec SCRIPT, got {argv[:2]}"
    return [shlex.split(line) for line in argv[2].splitlines() if line.strip()]


def depends_on(service: str) -> dict[str, str]:
    """Dependencies with their conditions (a plain list means service_started)."""
    raw = SERVICES[service].get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def network_owner(service: str) -> str:
    """The service whose network namespace `service` lives in (itself unless it joins one)."""
    mode = SERVICES[service].get("network_mode", "")
    return mode.removeprefix("service:") if mode.startswith("service:") else service


def static_address(service: str) -> str | None:
    networks = SERVICES[service].get("networks", {})
    if isinstance(networks, list):
        return None
    return next(
        (net["ipv4_address"] for net in networks.values() if net and "ipv4_address" in net), None
    )


@dataclass(frozen=True)
class Mount:
    source: str  # a volume name, or a host path starting with ./
    target: PurePosixPath
    read_only: bool

    @property
    def named_volume(self) -> bool:
        return not self.source.startswith((".", "/"))


def mounts(service: str) -> list[Mount]:
    found = []
    for entry in SERVICES[service].get("volumes", []):
        source, target, *mode = entry.split(":")
        found.append(Mount(source, PurePosixPath(target), "ro" in mode))
    return found


def resolve(service: str, path: str) -> tuple[str, PurePosixPath]:
    """(volume, path inside it) of a file a service reads or writes through a named volume."""
    pure = PurePosixPath(path)
    for mount in mounts(service):
        if mount.named_volume and pure.is_relative_to(mount.target):
            return mount.source, pure.relative_to(mount.target)
    raise AssertionError(f"{service}: {path} is on no named volume it mounts")


def published(service: str) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    found = []
    for entry in SERVICES[service].get("ports", []):
        host_ip, host_port, container_port = str(entry).rsplit(":", 2)
        found.append((host_ip, int(host_port), int(container_port)))
    return found


def flag(argv: Sequence[str], name: str) -> list[str]:
    """Every value given to `name` (`--name value` or `--name=value`)."""
    values = []
    for index, arg in enumerate(argv):
        if arg == name:
            values.append(argv[index + 1])
        elif arg.startswith(name + "="):
            values.append(arg.split("=", 1)[1])
    return values


def one(argv: Sequence[str], name: str) -> str:
    [value] = flag(argv, name)
    return value


# ---- the programs behind the commands ----------------------------------------------------


def program(argv: Sequence[str]) -> tuple[str, list[str]]:
    """(module whose parser reads the arguments, the arguments) of a project command."""
    if argv[0] == "python":
        assert argv[1] == "-m", f"expected python -m MODULE, got {argv}"
        return argv[2], list(argv[3:])
    scripts = PYPROJECT["project"]["scripts"]
    assert argv[0] in scripts, f"{argv[0]} is not a console script of pyproject.toml"
    return scripts[argv[0]].split(":")[0], list(argv[1:])


def cli_module(module: str) -> ModuleType:
    """The module holding the CLI of `python -m module` (its __main__ if it is a package)."""
    found = importlib.import_module(module)
    if hasattr(found, "__path__"):
        found = importlib.import_module(f"{module}.__main__")
    return found


def parser_of(module: str) -> Callable[[Sequence[str]], argparse.Namespace]:
    """The module's `parse_args`, or its `build_parser()`'s (meshctl's subcommands)."""
    found = cli_module(module)
    parse: Callable[[Sequence[str]], argparse.Namespace] = (
        found.parse_args if hasattr(found, "parse_args") else found.build_parser().parse_args
    )
    return parse


class UsageError(Exception):
    """argparse refused the arguments; the message is what it printed."""


def parse(argv: Sequence[str]) -> argparse.Namespace:
    module, args = program(argv)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return parser_of(module)(args)
    except SystemExit as exit_:
        raise UsageError(f"{shlex.join(argv)}: {errors.getvalue().strip()}") from exit_


def parsed(service: str) -> argparse.Namespace:
    return parse(command(service))


def is_agent(service: str) -> bool:
    return service in PROJECT and command(service)[:1] == ["mesh-agent"]


AGENTS = sorted(filter(is_agent, SERVICES))
SIDECARS = [name for name in AGENTS if network_owner(name) != name]
APPS = sorted(network_owner(name) for name in SIDECARS)
GATEWAYS = [name for name in AGENTS if parsed(name).type == "router"]
SERVERS = sorted(  # long-running project services that bind an address of their own
    name for name in PROJECT if name not in AGENTS and name not in APPS and name != INIT
)


def listening_ports(service: str) -> set[int]:
    """The ports a service (its namespace's owner, or the agent in it) listens on, from its
    parsed flags: every `*port` flag, and an agent's fixed Envoy and health ports."""
    found: set[int] = set()
    for name in (service, *(s for s in SIDECARS if network_owner(s) == service)):
        if name in APPS:
            continue  # the application listens on 127.0.0.1 only, behind its sidecar
        args = parsed(name)
        found |= {v for k, v in vars(args).items() if k.endswith("port") and isinstance(v, int)}
        if is_agent(name):
            found |= {ADMIN_PORT, STATS_PORT, HEALTH_PORT}
    return found


# ---- images, dependencies, volumes, ports ------------------------------------------------


def test_project_services_share_one_image_built_from_the_dockerfile() -> None:
    assert PROJECT, "no service builds the project image"
    images = {SERVICES[name]["image"] for name in PROJECT}
    assert len(images) == 1, f"project services name different images: {images}"
    for name in PROJECT:
        build = SERVICES[name]["build"]
        context = build if isinstance(build, str) else build["context"]
        assert (ROOT / context / "Dockerfile").is_file(), name
    (image,) = images
    assert all(SERVICES[name].get("image") != image for name in THIRD_PARTY)
    # The name and tag Kubernetes runs (deploy/), at the package's version.
    project = PYPROJECT["project"]
    assert image == f"{project['name']}/{project['name']}:{project['version']}"
    if KUSTOMIZATION.is_file():
        kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
        tags = {f"{i['name']}:{i['newTag']}" for i in kustomization.get("images", [])}
        assert image in tags, f"deploy/ runs {tags}"


@pytest.mark.parametrize("service", THIRD_PARTY)
def test_third_party_images_are_pinned(service: str) -> None:
    image = SERVICES[service]["image"]
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{service}: {image} has no tag"
    assert tag != "latest", f"{service}: {image} is not pinned"


def test_dependencies_name_services_and_their_conditions_can_be_met() -> None:
    for name in SERVICES:
        for dependency, condition in depends_on(name).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            target = SERVICES[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dependency}'s health check"
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is not a one-shot"
            else:
                assert condition == "service_started", f"{name}: condition {condition}"


def test_network_mode_joins_an_existing_service_on_the_mesh_network() -> None:
    for name, service in SERVICES.items():
        mode = service.get("network_mode")
        if mode is None or mode == "none":
            continue
        owner = network_owner(name)
        assert owner != name and owner in SERVICES, f"{name}: network_mode {mode}"
        assert network_owner(owner) == owner, f"{name} joins {owner}, which joins another"
        # Docker refuses networks and published ports on a container that joins another.
        assert "networks" not in service and "ports" not in service, name


def test_every_service_is_on_the_declared_network() -> None:
    declared = set(COMPOSE["networks"])
    for name, service in SERVICES.items():
        if "network_mode" in service:
            continue
        networks = service.get("networks")
        assert networks, f"{name} is on no network"
        assert set(networks) <= declared, f"{name}: {networks}"


def test_named_volumes_are_declared_and_used() -> None:
    used = {m.source for name in SERVICES for m in mounts(name) if m.named_volume}
    assert used == set(COMPOSE.get("volumes", {}))


def test_only_the_writers_mount_volumes_read_write() -> None:
    """The init writes credentials and citadel keeps its CA; everyone else only reads."""
    for name in SERVICES:
        for mount in mounts(name):
            if mount.named_volume and not mount.read_only:
                assert (name, mount.source) in {
                    (INIT, "citadel-ca"),
                    (INIT, "mesh-credentials"),
                    (INIT, "pilot-tls"),
                    (INIT, "mixer-tls"),
                    ("citadel", "citadel-ca"),
                }, f"{name} mounts {mount.source} read-write"
    # The CA's key never leaves citadel and its one-shot.
    holders = {name for name in SERVICES for m in mounts(name) if m.source == "citadel-ca"}
    assert holders == {INIT, "citadel"}


def test_bind_mounts_are_repository_files_mounted_read_only() -> None:
    for name in SERVICES:
        binds = [mount for mount in mounts(name) if not mount.named_volume]
        for mount in binds:
            assert mount.source.startswith("./"), f"{name}: {mount.source}"
            source = (ROOT / mount.source).resolve()
            assert source.is_relative_to(ROOT) and source.exists(), f"{name}: {mount.source}"
            assert mount.read_only, f"{name}: {mount.source} should be mounted :ro"
        # A mount inside another bind mount would make Docker create its mount point in the
        # repository.
        for inner in binds:
            for outer in binds:
                assert inner is outer or not inner.target.is_relative_to(outer.target), name


def test_published_ports_bind_the_host_loopback_only() -> None:
    for name in SERVICES:
        for host_ip, _, _ in published(name):
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip}"
    host_ports = [port for name in SERVICES for _, port, _ in published(name)]
    assert len(host_ports) == len(set(host_ports)), "a host port is published twice"


def test_published_project_ports_are_ports_the_service_listens_on() -> None:
    for name in PROJECT:
        for _, _, port in published(name):
            assert port in listening_ports(name) | gateway_server_ports(name), (name, port)


# ---- commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(set(PROJECT) - {INIT}))
def test_commands_parse_with_the_real_command_lines(service: str) -> None:
    parsed(service)


def test_the_init_script_parses_with_citadels_command_line() -> None:
    """Each `python -m citadel` line of the one-shot parses with citadel's own parser."""
    for argv in script_lines(INIT):
        if argv[0] == "cp":
            assert len(argv) == 3, argv
            continue
        assert program(argv)[0] == "citadel", argv
        parse(argv)


def test_python_modules_and_console_scripts_are_installed_by_the_package() -> None:
    packages = [
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    commands = [command(name) for name in PROJECT if name != INIT] + script_lines(INIT)
    for argv in commands:
        if argv[0] == "cp":
            continue
        module, _ = program(argv)
        assert module.split(".")[0] in packages, f"{module} is not installed by pip install ."


@pytest.mark.parametrize("server", SERVERS)
def test_servers_bind_every_address_so_other_containers_reach_them(server: str) -> None:
    assert parsed(server).host == ANY_ADDRESS


# ---- who connects where --------------------------------------------------------------------


@pytest.mark.parametrize("consumer", ["pilot", "mixer"])
def test_config_consumers_read_galley_where_galley_serves(consumer: str) -> None:
    address = parse_host_port(parsed(consumer).galley, 0)
    assert address == ("galley", parsed("galley").grpc_port)
    assert depends_on(consumer).get("galley") == "service_healthy"


@pytest.mark.parametrize("agent", AGENTS)
def test_agents_reach_pilot_and_citadel_on_their_ports(agent: str) -> None:
    args = parsed(agent)
    pilot = parsed("pilot")
    host, port = parse_host_port(args.pilot, 0)
    assert host == "pilot"
    # Over mutual TLS exactly when the port is pilot's mTLS port.
    assert port == (pilot.mtls_port if args.pilot_mtls else pilot.grpc_port)
    assert args.pilot_mtls, f"{agent}: the mesh reaches pilot over mutual TLS, as make up does"
    citadel = parsed("citadel")
    assert parse_host_port(args.citadel, 0) == ("citadel", citadel.port)
    # The renewal address defaults to citadel's host on the agent's default renewal port.
    assert args.citadel_mtls is None and citadel.mtls_port == RENEWAL_PORT


def test_agents_start_once_the_control_plane_is_ready() -> None:
    for agent in AGENTS:
        needs = depends_on(agent)
        assert needs.get("pilot") == needs.get("citadel") == "service_healthy", agent
        assert needs.get(INIT) == "service_completed_successfully", agent


@pytest.mark.parametrize("service", [name for name in SERVICES if "healthcheck" in SERVICES[name]])
def test_health_checks_probe_the_readiness_endpoint(service: str) -> None:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    url = urlsplit(test[-1])
    # The probe runs the URL it is given (sys.argv[1]) and fails on anything but 2xx.
    assert "urlopen(sys.argv[1]" in test[3]
    args = parsed(service)
    if is_agent(service):
        assert (url.hostname, url.port, url.path) == (args.ip, HEALTH_PORT, READY_PATH)
    else:
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", args.monitoring_port, "/ready")


def test_servers_and_agents_have_health_checks() -> None:
    for name in [*SERVERS, *AGENTS]:
        assert "healthcheck" in SERVICES[name], name


# ---- credentials: what citadel-init writes is what the others read -------------------------


def init_outputs() -> dict[tuple[str, PurePosixPath], str]:
    """(volume, path) -> what the init writes there."""
    written: dict[tuple[str, PurePosixPath], str] = {}
    for argv in script_lines(INIT):
        if argv[0] == "cp":
            source, target = argv[1:]
            assert resolve(INIT, source) == ("citadel-ca", PurePosixPath("root-cert.pem"))
            written[resolve(INIT, target)] = "root"
        elif argv[3] == "mint-token":
            identity = f"token {one(argv, '--namespace')}/{one(argv, '--service-account')}"
            written[resolve(INIT, one(argv, "--out"))] = identity
        elif argv[3] == "server-cert":
            hosts = ",".join(flag(argv, "--name"))
            volume, directory = resolve(INIT, one(argv, "--out-dir"))
            for file, what in (
                ("tls.crt", f"server-cert {hosts}"),
                ("tls.key", f"server-key {hosts}"),
                ("ca.crt", "root"),
            ):
                written[(volume, directory / file)] = what
        else:
            raise AssertionError(f"unexpected init step {argv}")
        if argv[0] == "python":
            assert resolve(INIT, one(argv, "--ca-dir"))[0] == "citadel-ca"
    return written


def test_citadel_serves_the_ca_the_init_created() -> None:
    assert resolve("citadel", str(parsed("citadel").ca_dir)) == ("citadel-ca", PurePosixPath())


@pytest.mark.parametrize("agent", AGENTS)
def test_agents_read_their_own_token_and_the_root(agent: str) -> None:
    args = parsed(agent)
    written = init_outputs()
    token = resolve(agent, str(args.token_file))
    assert written.get(token) == f"token {args.namespace}/{args.service_account}", agent
    assert written.get(resolve(agent, str(args.citadel_root))) == "root"


@pytest.mark.parametrize("server", ["pilot", "mixer"])
def test_servers_serve_mtls_with_a_certificate_the_init_issued_for_them(server: str) -> None:
    args = parsed(server)
    assert args.mtls_port is not None
    written = init_outputs()
    certificate = resolve(server, str(args.tls_cert))
    hosts = written.get(certificate, "").removeprefix("server-cert ").split(",")
    assert server in hosts, f"{server}'s certificate does not name it"
    if server == "pilot":
        assert CONTROL_PLANE_HOST in hosts, "agents verify pilot as istiod"
    assert written.get(resolve(server, str(args.tls_key))) == f"server-key {','.join(hosts)}"
    assert written.get(resolve(server, str(args.tls_roots))) == "root"
    # Its key is on a volume of its own: no other service can read it.
    volume = certificate[0]
    readers = {name for name in SERVICES for m in mounts(name) if m.source == volume}
    assert readers == {INIT, server}


def test_every_serving_certificate_is_used() -> None:
    issued = {key for key, what in init_outputs().items() if what.startswith("server-cert")}
    used = {resolve(name, str(parsed(name).tls_cert)) for name in ("pilot", "mixer")}
    assert issued == used


def test_the_init_mints_no_token_nobody_uses() -> None:
    used = {resolve(agent, str(parsed(agent).token_file)) for agent in AGENTS}
    minted = {key for key, what in init_outputs().items() if what.startswith("token ")}
    assert minted == used


# ---- the registry and the workloads --------------------------------------------------------


@functools.cache
def compose_config() -> Any:
    """compose/config as pilot reads it: `.registry` (services, workloads) and `.istio`."""
    return load_config_directory(COMPOSE_CONFIG)


def mesh_network() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    (config,) = COMPOSE["networks"]["mesh"]["ipam"]["config"]
    return ipaddress.IPv4Network(config["subnet"]), ipaddress.IPv4Network(config["ip_range"])


def test_galley_serves_compose_config_and_mixers_telemetry_all_valid() -> None:
    config_dir = PurePosixPath(str(parsed("galley").config_dir))
    given = {(ROOT / m.source).resolve(): m.target for m in mounts("galley")}
    assert COMPOSE_CONFIG in given and ROOT / "mixer" / "telemetry.yaml" in given
    files = []
    for source, target in given.items():
        assert target.is_relative_to(config_dir), f"galley does not watch {target}"
        files += sorted(source.glob("*.yaml")) if source.is_dir() else [source]
    for path in files:  # galley refuses a file with an invalid document as a whole
        for document in load_documents(path.read_text(), str(path)):
            validate_document(document, str(path))


def test_every_workload_entry_is_a_pod_with_a_matching_sidecar() -> None:
    workloads = {w.name: w for w in compose_config().registry.workloads}
    by_pod = {parsed(sidecar).pod: sidecar for sidecar in SIDECARS}
    assert set(workloads) == set(by_pod)
    for name, workload in workloads.items():
        sidecar = by_pod[name]
        args = parsed(sidecar)
        assert args.ip == workload.address == static_address(network_owner(sidecar)), name
        assert args.namespace == workload.namespace, name
        assert args.service_account == workload.service_account, name
        assert args.labels == dict(workload.labels), name
        assert args.type == "sidecar" and args.interception == "NONE", name


def test_static_addresses_are_unique_and_outside_the_dynamic_range() -> None:
    subnet, dynamic = mesh_network()
    addresses = [a for a in map(static_address, SERVICES) if a is not None]
    assert len(addresses) == len(set(addresses))
    for address in map(ipaddress.IPv4Address, addresses):
        assert address in subnet and address not in dynamic, address


@pytest.mark.parametrize("app", APPS)
def test_applications_listen_where_their_sidecar_forwards(
    app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = {k: str(v) for k, v in SERVICES[app].get("environment", {}).items()}
    assert set(environment) == APP_ENVIRONMENT, app
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    args = parsed(app)  # the application reads APP_ADDRESS and POD_NAME as flag defaults
    (sidecar,) = [s for s in SIDECARS if network_owner(s) == app]
    agent = parsed(sidecar)
    assert args.host == environment["APP_ADDRESS"] == agent.app_address
    assert args.workload == environment["POD_NAME"] == agent.pod
    # Its service's port (what the sidecar binds on the pod address and forwards).
    ports = {
        port.number
        for service in compose_config().registry.services
        if any(
            service.selects(w) for w in compose_config().registry.workloads if w.name == agent.pod
        )
        for port in service.ports
    }
    assert ports == {args.port}, app


@pytest.mark.parametrize("app", APPS)
def test_applications_use_their_sidecar_as_http_proxy(
    app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTP_PROXY", str(SERVICES[app]["environment"]["HTTP_PROXY"]))
    proxy = urlsplit(urllib.request.getproxies()["http"])  # what aiohttp's trust_env reads
    (sidecar,) = [s for s in SIDECARS if network_owner(s) == app]
    agent = parsed(sidecar)
    assert (proxy.hostname, proxy.port) == (agent.ip, agent.http_proxy_port)


def test_only_applications_get_an_environment() -> None:
    """The control plane and agents take flags, so no variable can be silently ignored."""
    for name in PROJECT:
        if name not in APPS:
            assert "environment" not in SERVICES[name], name


# ---- the ingress gateway -------------------------------------------------------------------


def gateway_server_ports(service: str) -> set[int]:
    """The ports of the Gateway servers whose selector the service's labels match."""
    if service not in GATEWAYS:
        return set()
    labels = parsed(service).labels
    return {
        server.port.number
        for gateway in compose_config().istio.gateways
        if all(labels.get(k) == v for k, v in (gateway.spec.selector or {}).items())
        for server in gateway.spec.servers
    }


def test_the_gateway_serves_compose_configs_gateway_on_a_published_port() -> None:
    assert GATEWAYS == ["istio-ingressgateway"]
    (gateway,) = GATEWAYS
    ports = gateway_server_ports(gateway)
    assert ports, "no Gateway in compose/config selects the gateway's labels"
    assert ports <= {container for _, _, container in published(gateway)}
    args = parsed(gateway)
    assert args.ip == static_address(gateway)
    # The gateway `make up` runs: its name, namespace, labels and service account.
    assert (args.pod, args.namespace) == (GATEWAY_NAME, "istio-system")
    assert args.labels == GATEWAY_LABELS
    assert args.service_account == "istio-ingressgateway-service-account"


# ---- Prometheus ----------------------------------------------------------------------------


def scrape_targets() -> list[tuple[str, str, str, int]]:
    """(job, metrics path, host, port) of every static target."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = []
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            for target in group["targets"]:
                host, port = target.rsplit(":", 1)
                targets.append(
                    (job["job_name"], job.get("metrics_path", "/metrics"), host, int(port))
                )
    return targets


@pytest.mark.parametrize(("job", "path", "host", "port"), scrape_targets())
def test_prometheus_scrapes_ports_services_listen_on(
    job: str, path: str, host: str, port: int
) -> None:
    assert host in SERVICES and network_owner(host) == host, f"{job}: {host} is no service"
    assert port in listening_ports(host), f"{job}: {host} does not listen on {port}"
    if port == STATS_PORT:
        assert path == "/stats/prometheus", job  # Envoy's Prometheus format


def test_prometheus_scrapes_every_envoy_and_control_plane_service() -> None:
    scraped = {(host, port) for _, _, host, port in scrape_targets()}
    for agent in AGENTS:
        assert (network_owner(agent), STATS_PORT) in scraped, agent
    for name in ("pilot", "galley", "citadel"):
        assert (name, parsed(name).monitoring_port) in scraped, name


def test_prometheus_and_grafana_mount_what_they_read() -> None:
    (prometheus,) = mounts("prometheus")
    assert (ROOT / prometheus.source).resolve() == PROMETHEUS_CONFIG
    assert prometheus.target == PurePosixPath("/etc/prometheus/prometheus.yml")
    (grafana,) = mounts("grafana")
    assert grafana.target == PurePosixPath("/etc/grafana/provisioning/datasources")
    (source,) = (ROOT / grafana.source).glob("*.yaml")
    (datasource,) = yaml.safe_load(source.read_text())["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port in {p for _, _, p in published("prometheus")}


# ---- the same mesh as `make up` ------------------------------------------------------------


def documents(directory: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(directory.glob("*.yaml")):
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def comparable(document: Mapping[str, Any]) -> dict[str, Any]:
    """A document without what legitimately differs: addresses and local-mesh annotations."""
    copy = dict(document)
    copy["metadata"] = {k: v for k, v in document["metadata"].items() if k != "annotations"}
    if document["kind"] == "WorkloadEntry":
        copy["spec"] = {k: v for k, v in document["spec"].items() if k != "address"}
    return copy


def test_compose_config_is_the_local_mesh_example_at_compose_addresses() -> None:
    def key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = doc["metadata"]
        return doc["kind"], meta.get("namespace", "default"), meta["name"]

    # Mixer's standard telemetry config reaches compose's galley by its own mount.
    telemetry = ROOT / "mixer" / "telemetry.yaml"
    mounted = (doc for doc in yaml.safe_load_all(telemetry.read_text()) if doc)
    compose_inputs = [*documents(COMPOSE_CONFIG), *mounted]
    ours = {key(doc): comparable(doc) for doc in compose_inputs}
    theirs = {key(doc): comparable(doc) for doc in documents(LOCAL_MESH_EXAMPLE)}
    assert ours == theirs


# ---- offline validators, where installed ---------------------------------------------------


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_validates_the_file() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_validates_the_scrape_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
