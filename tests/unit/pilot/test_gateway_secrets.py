"""Gateway credentials: Kubernetes Secrets as Envoy SDS Secrets, and which routers get which.

The conversion follows istiod's credentials controller (generic `cert`/`key`/`cacert` keys
before kubernetes.io/tls `tls.crt`/`tls.key`/`ca.crt`, a `<name>-cacert` Secret before the CA
beside the key pair); selection follows its SDS generator (only what the router's Gateways
reference, only from the router's namespace). What is left out must be exactly what Envoy would
refuse, which real Envoy checks (`envoy --mode validate`).
"""

from __future__ import annotations

import base64
import datetime
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2, json_format

from meshconfig import ConfigValidationError, validate_document
from meshcore.envoy_binary import envoy_path
from meshcore.xds import types
from meshcore.xds.resource import Snapshot
from pilot.config_files import load_config_directory
from pilot.config_galley import PILOT_KINDS
from pilot.generators import gateways, secrets
from pilot.generators.proto import pack
from pilot.generators.secrets import CredentialError
from pilot.istio_config import IstioConfig
from pilot.model import Proxy
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator
from tests.unit.pilot.gateway_support import INGRESS_LABELS, ROUTER_ID, gateway, router_view
from tests.unit.pilot.vs_support import WriteConfig, build

MakeProxy = Callable[..., Proxy]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
SIDECAR = "sidecar~127.0.1.2~productpage-v1.default~default.svc.cluster.local"
NOW = datetime.datetime.now(datetime.UTC)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    key: PrivateKey, subject: str = "gw.example.com", *, expired: bool = False
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    end = NOW - datetime.timedelta(hours=1) if expired else NOW + datetime.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=2))
        .not_valid_after(end)
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )


KEY = ec.generate_private_key(ec.SECP256R1())
CERT = _pem(_certificate(KEY))
KEY_PEM = _key_pem(KEY)
CA = _pem(_certificate(ec.generate_private_key(ec.SECP256R1()), "client ca"))


def secret(
    name: str,
    values: dict[str, bytes],
    namespace: str = "istio-system",
    kind: str = "kubernetes.io/tls",
) -> str:
    """A Secret document with `values` base64-encoded in `data`."""
    data = {key: base64.b64encode(value).decode() for key, value in values.items()}
    return _secret_document(name, namespace, type=kind, data=data)


def _secret_document(name: str, namespace: str, **body: object) -> str:
    metadata = {"name": name, "namespace": namespace}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, **body})


def tls_secret(name: str = "my-cert", namespace: str = "istio-system", **extra: bytes) -> str:
    return secret(name, {"tls.crt": CERT, "tls.key": KEY_PEM, **extra}, namespace)


def https_gateway(credential: str = "my-cert", mode: str = "SIMPLE", extra: str = "") -> str:
    return gateway(
        "gw",
        f"""\
        - port: {{number: 8443, name: https, protocol: HTTPS}}
          hosts: ["*"]
          tls: {{mode: {mode}, credentialName: {credential}{extra}}}
        """,
    )


def served(ctx: PushContext, namespace: str = "istio-system") -> dict[str, secret_pb2.Secret]:
    view = router_view(namespace=namespace)
    found = secrets.gateway_secrets(ctx.config, namespace, gateways.merge(ctx, view))
    return {s.name: s for s in found}


def _config(write_config: WriteConfig, *documents: str) -> IstioConfig:
    return load_config_directory(write_config("\n---\n".join(documents))).istio


# The Secret kind


def test_secret_documents_validate_with_data_and_string_data() -> None:
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "my-cert", "namespace": "istio-system", "uid": "x"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.encodebytes(CERT).decode(), "tls.key": "a2V5"},
        "stringData": {"tls.key": "plain", "extra": "x"},
        "immutable": True,
    }
    resource = validate_document(document)
    assert resource.kind.id == "core/Secret"
    assert resource.spec.values() == {"tls.crt": CERT, "tls.key": b"plain", "extra": b"x"}
    assert resource.to_document()["data"] == document["data"]
    assert "data" not in repr(resource.spec) and "plain" not in repr(resource)
    with pytest.raises(ConfigValidationError, match=r"data\.tls\.crt: is not base64"):
        validate_document({**document, "data": {"tls.crt": "not base64!"}})
    assert "core/Secret" in PILOT_KINDS


def test_secrets_from_a_directory_are_pilot_input(write_config: WriteConfig) -> None:
    config = _config(write_config, tls_secret(), tls_secret("other", "default"))
    assert [s.label for s in config.secrets] == [
        "Secret default/other",
        "Secret istio-system/my-cert",
    ]
    found = config.secret("istio-system", "my-cert")
    assert found is not None and found.metadata.name == "my-cert"
    assert config.secret("default", "my-cert") is None
    with_ca = _config(write_config, tls_secret(**{"ca.crt": CA}))
    assert _config(write_config, tls_secret()) != with_ca


# Conversion


def test_kubernetes_tls_secret_becomes_a_tls_certificate(write_config: WriteConfig) -> None:
    ctx = build(write_config, https_gateway(), tls_secret(), tls_secret("unused"))
    found = served(ctx)
    assert list(found) == ["kubernetes://my-cert"]
    certificate = found["kubernetes://my-cert"].tls_certificate
    assert certificate.certificate_chain.inline_bytes == CERT
    assert certificate.private_key.inline_bytes == KEY_PEM


def test_generic_keys_come_before_kubernetes_tls_keys(write_config: WriteConfig) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    values = {"cert": _pem(_certificate(other)), "key": _key_pem(other)}
    document = secret("my-cert", {**values, "tls.crt": CERT, "tls.key": KEY_PEM}, kind="Opaque")
    found = served(build(write_config, https_gateway(), document))
    certificate = found["kubernetes://my-cert"].tls_certificate
    assert certificate.certificate_chain.inline_bytes == values["cert"]


def test_string_data_is_read(write_config: WriteConfig) -> None:
    plain = {"cert": CERT.decode(), "key": KEY_PEM.decode()}
    document = _secret_document("my-cert", "istio-system", stringData=plain)
    found = served(build(write_config, https_gateway(), document))
    assert found["kubernetes://my-cert"].tls_certificate.private_key.inline_bytes == KEY_PEM


@pytest.mark.parametrize("mode", ["MUTUAL", "OPTIONAL_MUTUAL"])
def test_mutual_tls_ca_from_the_same_secret(write_config: WriteConfig, mode: str) -> None:
    ctx = build(write_config, https_gateway(mode=mode), tls_secret(**{"ca.crt": CA}))
    found = served(ctx)
    assert list(found) == ["kubernetes://my-cert", "kubernetes://my-cert-cacert"]
    validation = found["kubernetes://my-cert-cacert"].validation_context
    assert validation.trusted_ca.inline_bytes == CA


def test_a_cacert_secret_comes_before_the_ca_beside_the_key_pair(
    write_config: WriteConfig,
) -> None:
    separate = secret("my-cert-cacert", {"cacert": CERT}, kind="Opaque")
    ctx = build(write_config, https_gateway(mode="MUTUAL"), tls_secret(**{"ca.crt": CA}), separate)
    validation = served(ctx)["kubernetes://my-cert-cacert"].validation_context
    assert validation.trusted_ca.inline_bytes == CERT


def test_ca_cert_credential_name_names_the_ca_secret(write_config: WriteConfig) -> None:
    ctx = build(
        write_config,
        https_gateway(mode="MUTUAL", extra=", caCertCredentialName: clients"),
        tls_secret(),
        secret("clients", {"ca.crt": CA}),
    )
    found = served(ctx)
    assert list(found) == ["kubernetes://clients", "kubernetes://my-cert"]
    assert found["kubernetes://clients"].validation_context.trusted_ca.inline_bytes == CA


# Selection


def test_only_the_routers_own_namespace_is_searched(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = build(write_config, https_gateway(), tls_secret(namespace="default"))
    with caplog.at_level(logging.WARNING, logger="pilot.generators.secrets"):
        assert served(ctx) == {}
        assert list(served(ctx, "default")) == ["kubernetes://my-cert"]
    assert "kubernetes://my-cert not served to istio-system" in caplog.text
    assert "no Secret istio-system/my-cert" in caplog.text


def test_a_namespace_prefix_is_honoured_only_for_the_routers_own(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    own = build(write_config, https_gateway("istio-system/my-cert"), tls_secret())
    assert list(served(own)) == ["kubernetes://istio-system/my-cert"]
    other = build(write_config, https_gateway("default/my-cert"), tls_secret(namespace="default"))
    with caplog.at_level(logging.WARNING, logger="pilot.generators.secrets"):
        assert served(other) == {}
    assert "Secret default/my-cert is not in the gateway's namespace" in caplog.text


def test_passthrough_and_file_servers_reference_no_secret(write_config: WriteConfig) -> None:
    passthrough = gateway(
        "gw",
        """\
        - port: {number: 8443, name: tls, protocol: TLS}
          hosts: ["*"]
          tls: {mode: PASSTHROUGH, credentialName: my-cert}
        - port: {number: 9443, name: https, protocol: HTTPS}
          hosts: ["*"]
          tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}
        """,
    )
    assert served(build(write_config, passthrough, tls_secret())) == {}


def test_routers_get_sds_and_sidecars_do_not(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = build(write_config, https_gateway(), tls_secret(), tls_secret("unused"))
    generator = SnapshotGenerator()
    router = generator.full(ctx, make_proxy(ROUTER_ID, LABELS=INGRESS_LABELS))
    assert list(router.types[types.SECRET].resources) == ["kubernetes://my-cert"]
    other = generator.full(ctx, make_proxy(ROUTER_ID, LABELS={"istio": "egressgateway"}))
    assert not other.types[types.SECRET].resources
    sidecar = generator.full(ctx, make_proxy(SIDECAR, LABELS={"app": "productpage"}))
    assert types.SECRET not in sidecar.types


def test_a_new_certificate_is_a_new_secret_version(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    def version(document: str, context_version: str) -> str:
        loaded = load_config_directory(write_config(https_gateway() + "\n---\n" + document))
        ctx = PushContext.build(loaded.registry, context_version, loaded.istio)
        snapshot: Snapshot = SnapshotGenerator().full(
            ctx, make_proxy(ROUTER_ID, LABELS=INGRESS_LABELS)
        )
        return snapshot.types[types.SECRET].resources["kubernetes://my-cert"].version

    other = ec.generate_private_key(ec.SECP256R1())
    renewed = secret("my-cert", {"tls.crt": _pem(_certificate(other)), "tls.key": _key_pem(other)})
    assert version(tls_secret(), "1") == version(tls_secret(), "2") != version(renewed, "3")


# Invalid Secrets: left out with a warning naming them, never sent for Envoy to NACK


SMALL_RSA = rsa.generate_private_key(65537, 1024)
K256 = ec.generate_private_key(ec.SECP256K1())
BAD = {
    "missing keys": ({"tls.crt": CERT}, "has no (cert and key) or (tls.crt and tls.key)"),
    "empty keys": ({"tls.crt": b"", "tls.key": b""}, "found 'tls.crt' and 'tls.key', but empty"),
    "bad PEM": ({"tls.crt": b"garbage", "tls.key": KEY_PEM}, "tls.crt is not PEM certificates"),
    "bad key": ({"tls.crt": CERT, "tls.key": b"garbage"}, "tls.key is not a PEM private key"),
    "mismatch": (
        {"tls.crt": CERT, "tls.key": _key_pem(ec.generate_private_key(ec.SECP256R1()))},
        "tls.key does not match tls.crt",
    ),
    "rsa 1024": (
        {"tls.crt": _pem(_certificate(SMALL_RSA)), "tls.key": _key_pem(SMALL_RSA)},
        "a key Envoy does not load",
    ),
    "secp256k1": (
        {"tls.crt": _pem(_certificate(K256)), "tls.key": _key_pem(K256)},
        "a key Envoy does not load",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_invalid_secrets_are_skipped_with_a_log_line(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    values, reason = BAD[case]
    ctx = build(write_config, https_gateway(), secret("my-cert", values))
    with caplog.at_level(logging.WARNING, logger="pilot.generators.secrets"):
        assert served(ctx) == {}
    assert "Secret istio-system/my-cert" in caplog.text
    assert reason in caplog.text


def test_a_bad_ca_is_skipped_and_the_key_pair_still_served(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = build(write_config, https_gateway(mode="MUTUAL"), tls_secret(**{"ca.crt": b"junk"}))
    with caplog.at_level(logging.WARNING, logger="pilot.generators.secrets"):
        assert list(served(ctx)) == ["kubernetes://my-cert"]
    assert "kubernetes://my-cert-cacert not served" in caplog.text
    assert "ca.crt is not PEM certificates" in caplog.text


def test_mutual_tls_without_any_ca_is_logged(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = build(write_config, https_gateway(mode="MUTUAL"), tls_secret())
    with caplog.at_level(logging.WARNING, logger="pilot.generators.secrets"):
        assert list(served(ctx)) == ["kubernetes://my-cert"]
    assert "has no (cacert) or (ca.crt); found keys: tls.crt, tls.key" in caplog.text
    missing = build(write_config, https_gateway("none", mode="MUTUAL"))
    with caplog.at_level(logging.WARNING, logger="pilot.generators.secrets"):
        assert served(missing) == {}
    assert "no Secret istio-system/none-cacert or istio-system/none" in caplog.text


def test_an_expired_certificate_is_served_with_a_warning(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    expired = secret(
        "my-cert", {"tls.crt": _pem(_certificate(KEY, expired=True)), "tls.key": KEY_PEM}
    )
    with caplog.at_level(logging.WARNING, logger="pilot.generators.secrets"):
        assert list(served(build(write_config, https_gateway(), expired))) == [
            "kubernetes://my-cert"
        ]
    assert "expired or not yet valid" in caplog.text


CANDIDATE_KEYS: dict[str, PrivateKey] = {
    "p256": KEY,
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "p521": ec.generate_private_key(ec.SECP521R1()),
    "secp256k1": K256,
    "rsa1024": SMALL_RSA,
    "rsa2048": rsa.generate_private_key(65537, 2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
}


@pytest.mark.envoy
@pytest.mark.parametrize("name", list(CANDIDATE_KEYS))
def test_what_is_served_is_what_envoy_loads(
    write_config: WriteConfig, tmp_path: Path, name: str
) -> None:
    key = CANDIDATE_KEYS[name]
    document = secret("my-cert", {"tls.crt": _pem(_certificate(key)), "tls.key": _key_pem(key)})
    resource = load_config_directory(write_config(document)).istio.secrets[0]
    try:
        certificate = secrets.tls_certificate(resource)
    except CredentialError:
        served_it = False
        values = resource.spec.values()
        from_secret = secret_pb2.Secret(name="s")
        from_secret.tls_certificate.certificate_chain.inline_bytes = values["tls.crt"]
        from_secret.tls_certificate.private_key.inline_bytes = values["tls.key"]
    else:
        served_it = True
        from_secret = secret_pb2.Secret(name="s", tls_certificate=certificate)
    result = _envoy_validate(from_secret, tmp_path)
    assert (result.returncode == 0) == served_it, result.stdout + result.stderr


def _envoy_validate(
    static_secret: secret_pb2.Secret, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` with a TLS listener using `static_secret`."""
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.static_resources.secrets.append(static_secret)
    listener = bootstrap.static_resources.listeners.add(name="tls")
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = 10443
    chain = listener.filter_chains.add()
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix="tls", cluster="backend")
    chain.filters.add(name="envoy.filters.network.tcp_proxy", typed_config=pack(proxy))
    context = tls_pb2.DownstreamTlsContext()
    context.common_tls_context.tls_certificate_sds_secret_configs.add(name="s")
    chain.transport_socket.name = "envoy.transport_sockets.tls"
    chain.transport_socket.typed_config.CopyFrom(pack(context))
    bootstrap.static_resources.clusters.add(name="backend", load_assignment={"cluster_name": "b"})
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(bootstrap))
    return subprocess.run(
        [envoy_path(), "--mode", "validate", "-c", config, "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_snapshot_secret_is_an_any_of_the_secret(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = build(write_config, https_gateway(), tls_secret())
    snapshot = SnapshotGenerator().full(ctx, make_proxy(ROUTER_ID, LABELS=INGRESS_LABELS))
    packed = any_pb2.Any.FromString(
        snapshot.types[types.SECRET].resources["kubernetes://my-cert"].any_bytes
    )
    assert packed.type_url == types.SECRET
    decoded = secret_pb2.Secret()
    assert packed.Unpack(decoded) and decoded.name == "kubernetes://my-cert"
