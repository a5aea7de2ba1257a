"""A small real mesh for integration tests: in-process pilot, real Envoy sidecars, demo apps.

Each test gets its own /24 inside 127.0.0.0/8 (a block per xdist worker), so Istio's fixed
ports never collide between tests running in parallel: pilot binds .1, workloads .2 to .99,
and the application behind workload .N listens on .N+100. Everything polls with bounded
attempts; nothing waits on wall-clock sleeps alone.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import re
import tempfile
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from agent.bootstrap import ProxySpec, XdsApi
from agent.envoy_process import EnvoyOptions, EnvoyProcess
from agent.workload import CitadelAccess, WorkloadProxy
from citadel.server import Citadel, CitadelOptions
from localmesh.demo_app import DemoApp
from meshcore.identity import CONTROL_PLANE_HOST, SpiffeId
from pilot.mesh_config import MeshConfig
from pilot.server import Pilot, PilotOptions

T = TypeVar("T")
ENVOY_OPTIONS = EnvoyOptions(
    drain_seconds=0.2, stop_timeout=3.0, concurrency=1, log_level="warning"
)
_blocks = itertools.count(1)


def allocate_block() -> str:
    """A fresh "127.X.Y" prefix for one test."""
    worker = re.sub(r"\D", "", os.environ.get("PYTEST_XDIST_WORKER", "gw0")) or "0"
    return f"127.{40 + int(worker)}.{next(_blocks)}"


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    attempts: int = 200,
    interval: float = 0.05,
) -> T:
    """Poll until `probe` returns something other than None (bounded: attempts x interval)."""
    last_error: Exception | None = None
    for _ in range(attempts):
        try:
            result = await probe()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            last_error, result = error, None
        if result is not None:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def service_entry(name: str, *ports: int, namespace: str = "default") -> str:
    """A mesh-internal HTTP service selecting workloads labelled app=<name>."""
    port_list = ", ".join(
        f"{{number: {port}, name: http-{port}, protocol: HTTP}}" for port in ports
    )
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          hosts: [{name}.{namespace}.svc.cluster.local]
          location: MESH_INTERNAL
          resolution: STATIC
          ports: [{port_list}]
          workloadSelector: {{labels: {{app: {name}}}}}
        """
    )


def workload_entry(name: str, address: str, app: str, namespace: str = "default") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          address: {address}
          labels: {{app: {app}}}
          serviceAccount: {app}
        """
    )


@dataclass
class Sidecar:
    name: str
    ip: str
    proxy: WorkloadProxy
    app: DemoApp | None = None
    scratch: tempfile.TemporaryDirectory[str] | None = None  # holds the SDS socket

    @property
    def envoy(self) -> EnvoyProcess:
        return self.proxy.envoy

    @property
    def admin(self) -> str:
        return f"http://{self.ip}:15000"

    @property
    def http_proxy(self) -> str:
        return f"http://{self.ip}:15080"


@dataclass
class Mesh:
    """Pilot plus sidecars on one test's address block; `close()` stops everything."""

    block: str
    config_dir: Path
    run_dir: Path
    xds_api: XdsApi = XdsApi.GRPC
    pilot: Pilot | None = None
    citadel: Citadel | None = None
    sidecars: dict[str, Sidecar] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None
    _hosts: itertools.count[int] = field(default_factory=lambda: itertools.count(2))

    @property
    def pilot_ip(self) -> str:
        return f"{self.block}.1"

    def next_ip(self) -> str:
        return f"{self.block}.{next(self._hosts)}"

    def write(self, name: str, *documents: str) -> None:
        """Write (or replace) one config file; pilot notices through its directory watch."""
        path = self.config_dir / f"{name}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("---\n".join(documents))
        tmp.replace(path)

    def remove(self, name: str) -> None:
        (self.config_dir / f"{name}.yaml").unlink()

    async def start_pilot(
        self, *, mtls: bool = False, mesh_config: MeshConfig | None = None, **options: Any
    ) -> Pilot:
        """Pilot reading the config directory, or consuming galley if `galley=` is given; with
        `mtls`, also serving 15011 with a certificate from the mesh's citadel, which sidecars
        with certificates then use."""
        if "galley" not in options:
            options["config_dir"] = self.config_dir
        if mesh_config is not None:
            options["mesh"] = mesh_config
        if mtls:
            assert self.citadel is not None, "start_citadel() first"
            ca = self.citadel.ca
            serving = ca.server_credentials(CONTROL_PLANE_HOST, self.pilot_ip)
            options |= {
                "mtls_port": 15011,
                "tls_cert_chain": serving.chain_pem,
                "tls_key": serving.key_pem,
                "tls_roots": ca.root_pem,
            }
        self.pilot = Pilot(PilotOptions(host=self.pilot_ip, debounce=0.05, **options))
        await self.pilot.start()
        return self.pilot

    async def stop_pilot(self) -> None:
        if self.pilot is not None:
            await self.pilot.stop()
            self.pilot = None

    async def start_citadel(self, **options: Any) -> Citadel:
        """A CA on the pilot's address (ports 8060/8061), for sidecars with certificates."""
        ca_options = CitadelOptions(
            ca_dir=self.run_dir / "ca", host=self.pilot_ip, monitoring_port=0, **options
        )
        self.citadel = Citadel(ca_options)
        await self.citadel.start()
        return self.citadel

    def citadel_access(
        self, namespace: str, service_account: str, ttl: datetime.timedelta | None = None
    ) -> CitadelAccess:
        assert self.citadel is not None, "start_citadel() first"
        citadel = self.citadel
        token = citadel.tokens.mint(SpiffeId(namespace, service_account))
        return CitadelAccess(citadel.address, citadel.mtls_address, citadel.ca.root_pem, token, ttl)

    async def add_sidecar(
        self,
        name: str,
        ip: str,
        *,
        app_port: int | None = None,
        labels: dict[str, str] | None = None,
        xds_api: XdsApi | None = None,
        certificates: bool = False,
        certificate_ttl: datetime.timedelta | None = None,
        service_account: str | None = None,
    ) -> Sidecar:
        """A sidecar (and demo app on `app_port`); with `certificates`, the sidecar gets its
        workload certificate from the mesh's citadel (`start_citadel`) and can do mTLS."""
        last = int(ip.rsplit(".", 1)[1])
        app_address = f"{self.block}.{last + 100}"
        spec = ProxySpec(
            ip=ip,
            pod=name,
            namespace="default",
            pilot=f"{self.pilot_ip}:15010",
            xds_api=xds_api or self.xds_api,
            service_account=service_account or name,
            labels=labels or {"app": name},
            http_proxy_port=15080,
            app_address=app_address,
        )
        if certificates and self.pilot is not None and self.pilot.mtls_address is not None:
            spec = replace(spec, pilot=self.pilot.mtls_address, pilot_mtls=True)
        app = None
        if app_port is not None:
            app = DemoApp(name, app_address, app_port)
            await app.start()
        return await self.start_proxy(
            name, spec, app=app, certificates=certificates, certificate_ttl=certificate_ttl
        )

    async def start_proxy(
        self,
        name: str,
        spec: ProxySpec,
        *,
        app: DemoApp | None = None,
        certificates: bool = False,
        certificate_ttl: datetime.timedelta | None = None,
    ) -> Sidecar:
        """Any proxy (sidecar or gateway) for `spec`, kept so `close` stops it; with
        `certificates`, its workload certificate comes from the mesh's citadel."""
        citadel = socket = scratch = None
        if certificates:
            citadel = self.citadel_access(spec.namespace, spec.service_account, certificate_ttl)
            # A short directory for the SDS socket: Unix socket paths are limited to ~100 bytes.
            scratch = tempfile.TemporaryDirectory(prefix="sds-")
            socket = Path(scratch.name, "sds.sock")
        proxy = WorkloadProxy(spec, self.run_dir / name, ENVOY_OPTIONS, citadel, socket)
        await proxy.start()
        sidecar = self.sidecars[name] = Sidecar(name, spec.ip, proxy, app, scratch)
        return sidecar

    async def remove_sidecar(self, name: str) -> None:
        sidecar = self.sidecars.pop(name)
        await sidecar.proxy.stop()
        if sidecar.scratch is not None:
            sidecar.scratch.cleanup()
        if sidecar.app is not None:
            await sidecar.app.stop()

    def http(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        return self.session

    async def get_via(self, sidecar: Sidecar, url: str) -> tuple[int, str]:
        async with self.http().get(url, proxy=sidecar.http_proxy) as response:
            return response.status, await response.text()

    async def admin_json(self, sidecar: Sidecar, path: str) -> Any:
        async with self.http().get(sidecar.admin + path) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def cluster_hosts(self, sidecar: Sidecar) -> dict[str, list[str]]:
        """Envoy's /clusters: each cluster's host addresses, sorted."""
        body = await self.admin_json(sidecar, "/clusters?format=json")
        return {
            status["name"]: sorted(
                host["address"]["socket_address"]["address"]
                for host in status.get("host_statuses", [])
            )
            for status in body["cluster_statuses"]
        }

    async def stats(self, sidecar: Sidecar, pattern: str) -> dict[str, int]:
        async with self.http().get(
            sidecar.admin + "/stats", params={"filter": pattern, "format": "json"}
        ) as response:
            body = await response.json(content_type=None)
        return {s["name"]: s.get("value", 0) for s in body.get("stats", []) if "value" in s}

    async def syncz(self) -> list[dict[str, Any]]:
        assert self.pilot is not None
        url = f"http://{self.pilot_ip}:{self.pilot.monitoring.port}/debug/syncz"
        async with self.http().get(url) as response:
            result: list[dict[str, Any]] = await response.json()
            return result

    async def nack_errors(self) -> dict[str, str]:
        """`<proxy> <type>` -> the error of every NACK pilot has on record (none, hopefully)."""
        return {
            f"{entry['proxy']} {type_name}": status["nack_error"]
            for entry in await self.syncz()
            for type_name, status in entry.items()
            if isinstance(status, dict) and status.get("nack_error")
        }

    async def pilot_metrics(self) -> str:
        assert self.pilot is not None
        url = f"http://{self.pilot_ip}:{self.pilot.monitoring.port}/metrics"
        async with self.http().get(url) as response:
            return await response.text()

    async def synced(self, names: set[str], types: tuple[str, ...] = ("cds", "eds", "lds", "rds")):
        """Wait until every named proxy is SYNCED for every type; return its syncz entries."""

        async def probe() -> dict[str, dict[str, Any]] | None:
            entries = {e["proxy"].split(".")[0]: e for e in await self.syncz()}
            if not names <= entries.keys():
                return None
            for name in names:
                if any(entries[name].get(t, {}).get("state") != "SYNCED" for t in types):
                    return None
            return entries

        return await eventually(probe, f"{sorted(names)} SYNCED for {types}")

    async def close(self) -> None:
        await asyncio.gather(*(self.remove_sidecar(n) for n in list(self.sidecars)))
        await self.stop_pilot()
        if self.citadel is not None:
            await self.citadel.stop()
        if self.session is not None:
            await self.session.close()
