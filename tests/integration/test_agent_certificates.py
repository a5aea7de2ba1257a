"""The certificate manager against a real citadel, feeding a real Envoy through SDS.

The workload certificate must come from citadel for the token's identity, reach Envoy's TLS
listener, and be renewed (over citadel's mTLS port, with a new key) before it expires, without
restarting Envoy. The manager asks for certificates of a few seconds so renewal happens in the test.
"""

import asyncio
import datetime
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2 as tls_pb2
from google.protobuf import any_pb2
from spiffe import X509Svid

from agent.bootstrap import ProxySpec, build_bootstrap
from agent.certificates import CertificateManager
from agent.envoy_process import EnvoyOptions, EnvoyProcess
from agent.sds import SdsServer
from citadel.cacerts import DirectoryStore
from citadel.rotation import finish_stored_rotation, rotate_stored_root
from citadel.server import Citadel, CitadelOptions
from citadel.tokens import TokenAuthority
from meshcore.identity import SpiffeId
from meshcore.xds import types
from meshcore.xds.client import XdsClient
from tests.integration.mesh import allocate_block, eventually
from tests.support.sds import sds_tls_listener

HELLO = SpiffeId("default", "hello")
TTL = datetime.timedelta(seconds=2)
TLS_PORT = 8443
OPTIONS = EnvoyOptions(drain_seconds=1.0, stop_timeout=3.0, backoff_initial=0.1)


@pytest.fixture(autouse=True)
async def no_task_left() -> AsyncIterator[None]:
    yield
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.fixture
async def citadel(tmp_path: Path) -> AsyncIterator[Citadel]:
    # Citadel's own serving certificate lasts its default TTL: only the workload asks for TTL.
    options = CitadelOptions(ca_dir=tmp_path / "ca", port=0, mtls_port=0, monitoring_port=0)
    async with Citadel(options) as running:
        yield running


def manager_for(citadel: Citadel, sds: SdsServer, token: str) -> CertificateManager:
    return CertificateManager(
        citadel.address, citadel.mtls_address, citadel.ca.root_pem, token, HELLO, sds, ttl=TTL
    )


def leaf_of(chain_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(chain_pem)


async def until_renewed(manager: CertificateManager, renewals: int) -> None:
    for _ in range(100):
        if manager.renewals >= renewals:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {renewals} renewals in 10s: {manager.renewals}")


async def test_issues_and_renews_with_a_new_key(citadel: Citadel, tmp_path: Path) -> None:
    sds = SdsServer(tmp_path / "sds.sock")
    manager = manager_for(citadel, sds, citadel.tokens.mint(HELLO))
    async with manager:
        first = await asyncio.wait_for(manager.wait_for_certificate(), timeout=10)
        svid = X509Svid.parse(first.chain_pem, first.key_pem)
        assert str(svid.spiffe_id) == HELLO.uri
        assert first.roots_pem == citadel.ca.root_pem
        # From now on no token verifies: renewals must authenticate with the certificate.
        citadel.tokens = TokenAuthority(os.urandom(32))
        await until_renewed(manager, 2)
        renewed = manager.current
        assert renewed is not None
        assert renewed.key_pem != first.key_pem
        assert leaf_of(renewed.chain_pem).serial_number != leaf_of(first.chain_pem).serial_number
        assert str(X509Svid.parse(renewed.chain_pem, renewed.key_pem).spiffe_id) == HELLO.uri


async def test_an_expired_certificate_is_replaced_with_the_token(
    citadel: Citadel, tmp_path: Path
) -> None:
    # Nothing listens on port 1: every renewal fails until the certificate has expired.
    manager = CertificateManager(
        citadel.address,
        "127.0.0.1:1",
        citadel.ca.root_pem,
        citadel.tokens.mint(HELLO),
        HELLO,
        SdsServer(tmp_path / "sds.sock"),
        ttl=TTL,
    )
    async with manager:
        first = await asyncio.wait_for(manager.wait_for_certificate(), timeout=10)
        await until_renewed(manager, 1)
        # Renewing over mTLS cannot succeed, so the renewal is the token's, after expiry.
        expired = leaf_of(first.chain_pem).not_valid_after_utc
        assert datetime.datetime.now(datetime.UTC) >= expired


async def test_a_refused_token_is_retried_without_a_certificate(
    citadel: Citadel, tmp_path: Path
) -> None:
    manager = manager_for(citadel, SdsServer(tmp_path / "sds.sock"), "v1.forged.token")
    async with manager:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(manager.wait_for_certificate(), timeout=1)
        assert manager.current is None
    failures = citadel.metrics.registry.get_sample_value(
        "citadel_server_authentication_failure_count_total"
    )
    assert failures is not None and failures >= 2


async def test_the_agent_follows_a_root_rotation(tmp_path: Path) -> None:
    """The agent adopts the trust bundle citadel answers with, so it keeps renewing after a
    rotation has dropped the root it was started with."""
    ca_dir = tmp_path / "ca"
    options = CitadelOptions(ca_dir=ca_dir, port=0, mtls_port=0, monitoring_port=0)
    async with Citadel(options) as citadel:
        old_root = citadel.ca.root_pem
        token = citadel.tokens.mint(HELLO)
    store = DirectoryStore(ca_dir)
    await rotate_stored_root(store, key_type="ec", trust_domain="cluster.local")
    async with Citadel(options) as overlap:
        manager = CertificateManager(
            overlap.address,
            overlap.mtls_address,
            old_root,
            token,
            HELLO,
            SdsServer(tmp_path / "sds.sock"),
            ttl=TTL,
        )
        async with manager:
            first = await asyncio.wait_for(manager.wait_for_certificate(), timeout=10)
            assert len(x509.load_pem_x509_certificates(first.roots_pem)) == 2
            await finish_stored_rotation(store)
            await overlap.stop()
            # Same ports, new bundle: only the new root remains; the agent must still renew.
            after = CitadelOptions(
                ca_dir=ca_dir,
                host=overlap.options.host,
                port=overlap.port,
                mtls_port=overlap.mtls_port,
                monitoring_port=0,
            )
            async with Citadel(after) as finished:
                await until_renewed(manager, manager.renewals + 2)
                renewed = manager.current
                assert renewed is not None
                assert renewed.roots_pem == finished.ca.root_pem != old_root


async def served_leaf(ip: str, root_pem: bytes) -> x509.Certificate | None:
    """The leaf Envoy presents to a client trusting citadel's root, once the echo answers."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    # The SVID names a SPIFFE ID, no host: the chain is what is verified.
    context.check_hostname = False
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(ip, TLS_PORT, ssl=context), timeout=3
    )
    try:
        writer.write(b"ping")
        echoed = await asyncio.wait_for(reader.readexactly(4), timeout=3)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der) if echoed == b"ping" else None
    finally:
        writer.close()
        await writer.wait_closed()


def spiffe_uris(leaf: x509.Certificate) -> list[str]:
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


@pytest.mark.envoy
async def test_envoy_serves_the_citadel_certificate_and_its_renewal(
    citadel: Citadel, tmp_path: Path
) -> None:
    ip = f"{allocate_block()}.1"
    socket = tmp_path / "sds.sock"
    spec = ProxySpec(
        ip=ip,
        pod="hello-v1",
        namespace="default",
        pilot=f"{ip}:1",
        initial_fetch_timeout=0.2,
        sds_socket=str(socket),
        service_account="hello",
    )
    bootstrap = build_bootstrap(spec)
    bootstrap["static_resources"]["listeners"].append(sds_tls_listener(ip, TLS_PORT))
    sds = SdsServer(socket)
    manager = manager_for(citadel, sds, citadel.tokens.mint(HELLO))
    envoy = EnvoyProcess(bootstrap, spec.admin_url, tmp_path / "run", OPTIONS)
    root = citadel.ca.root_pem
    async with sds, manager, envoy:
        first = await eventually(lambda: served_leaf(ip, root), "citadel's certificate")
        assert spiffe_uris(first) == [HELLO.uri]
        pid = envoy.pid

        async def renewed() -> x509.Certificate | None:
            leaf = await served_leaf(ip, root)
            return leaf if leaf is not None and leaf.serial_number != first.serial_number else None

        second = await eventually(renewed, "a renewed certificate")
        assert manager.renewals >= 1
        assert spiffe_uris(second) == [HELLO.uri]
        assert envoy.pid == pid and envoy.restarts == 0


@pytest.mark.envoy
async def test_agent_cli_serves_its_citadel_certificate_over_sds(
    citadel: Citadel, tmp_path: Path
) -> None:
    """`mesh-agent --citadel ...`: its SDS socket serves the workload SVID and citadel's root."""
    ip = f"{allocate_block()}.2"
    token_file = tmp_path / "token"
    token_file.write_text(TokenAuthority.load_or_create(citadel.options.ca_dir).mint(HELLO))
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(citadel.ca.root_pem)
    run_dir = tmp_path / "run"
    cli = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent", f"--ip={ip}", "--pod=hello-1", "--namespace=default"),
        *("--service-account=hello", f"--pilot={ip}:1", "--initial-fetch-timeout=0.2"),
        *(f"--citadel={citadel.address}", f"--citadel-mtls={citadel.mtls_address}"),
        *(f"--citadel-root={root_file}", f"--token-file={token_file}"),
        *("--drain-seconds=0.2", f"--run-dir={run_dir}"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    secrets: dict[str, tls_pb2.Secret] = {}
    client: XdsClient[tls_pb2.Secret] = XdsClient(
        f"unix:{run_dir / 'sds.sock'}",
        base_pb2.Node(id=f"sidecar~{ip}~hello-1.default~default.svc.cluster.local"),
        [types.SECRET],
        _secret,
        lambda _t, found: secrets.update(found),
    )
    reading = asyncio.create_task(client.run())
    try:
        for _ in range(100):
            if {"default", "ROOTCA"} <= secrets.keys():
                break
            await asyncio.sleep(0.1)
        assert {"default", "ROOTCA"} <= secrets.keys()
        chain = secrets["default"].tls_certificate.certificate_chain.inline_bytes
        leaf = leaf_of(chain)
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [u.value for u in uris] == [HELLO.uri]
        roots = secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes
        assert roots == citadel.ca.root_pem
        cli.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(cli.communicate(), 15)
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
    assert cli.returncode == 0, stderr.decode()


def _secret(type_url: str, packed: any_pb2.Any) -> tuple[str, tls_pb2.Secret]:
    secret = tls_pb2.Secret()
    packed.Unpack(secret)
    return secret.name, secret
