"""Keep the committed generated gRPC code in step with its .proto sources, and prove it works.

The generated modules are committed so nothing needs protoc at import time; this test is what
stops a .proto edit from shipping without regenerating them. The round trip checks that the
generated Citadel service really carries a request and its answer over grpc.aio.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from protos import generate
from protos.citadel.v1 import ca_pb2, ca_pb2_grpc

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
REGENERATE_HINT = "run `make protos` and commit the result"


def _generated_files(root: Path) -> set[Path]:
    protos_dir = root / "protos"
    return {
        path.relative_to(root)
        for path in protos_dir.rglob("*")
        if path.is_file() and path.name.endswith(GENERATED_SUFFIXES)
    }


def test_committed_generated_code_matches_sources(tmp_path: Path) -> None:
    generate.generate(tmp_path)

    fresh = _generated_files(tmp_path)
    committed = _generated_files(generate.REPO_ROOT)
    assert fresh, "protoc generated nothing"
    assert fresh == committed, (
        f"generated files differ from the committed ones (missing: {sorted(fresh - committed)}, "
        f"stale: {sorted(committed - fresh)}); {REGENERATE_HINT}"
    )
    for relative in sorted(fresh):
        assert (tmp_path / relative).read_bytes() == (generate.REPO_ROOT / relative).read_bytes(), (
            f"{relative} is out of date with its .proto; {REGENERATE_HINT}"
        )


class _EchoCertificateService(ca_pb2_grpc.IstioCertificateServiceServicer):
    """Answers with what it was sent, so the test can see every field crossed the wire."""

    async def CreateCertificate(
        self, request: ca_pb2.IstioCertificateRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.IstioCertificateResponse:
        return ca_pb2.IstioCertificateResponse(
            cert_chain=[
                request.csr,
                str(request.validity_duration),
                request.metadata.fields["impersonate"].string_value,
            ]
        )


async def test_citadel_service_round_trip() -> None:
    server = grpc.aio.server()
    ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(_EchoCertificateService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)
            metadata = struct_pb2.Struct()
            metadata.update({"impersonate": "spiffe://cluster.local/ns/default/sa/reviews"})
            response = await stub.CreateCertificate(
                ca_pb2.IstioCertificateRequest(
                    csr="-----BEGIN CERTIFICATE REQUEST-----",
                    validity_duration=3600,
                    metadata=metadata,
                ),
                timeout=10,
            )
    finally:
        await server.stop(None)

    assert list(response.cert_chain) == [
        "-----BEGIN CERTIFICATE REQUEST-----",
        "3600",
        "spiffe://cluster.local/ns/default/sa/reviews",
    ]
