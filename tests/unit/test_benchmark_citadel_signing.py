"""Keep the citadel signing benchmark runnable and honest, at a few requests per level.

The numbers in BENCHMARKS.md only mean something if every timed request really got a
certificate from the real service (over TLS, with a bearer token, from every serving process)
and the raw loop signed what citadel signs. This runs the benchmark tiny and looks at what it
counted, never at the timings. The load is h2load (`make system-packages` installs it as root).
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path

import pytest
from cryptography import x509

from benchmarks import citadel_signing
from citadel.ca import CertificateAuthority
from tests.integration.mesh import allocate_block


@pytest.mark.skipif(
    shutil.which(citadel_signing.H2LOAD) is None,
    reason="h2load is not installed (make system-packages as root)",
)
def test_every_request_at_every_level_gets_a_certificate() -> None:
    result = citadel_signing.run(
        [1, 4], 12, host=f"{allocate_block()}.250", workers=2, level_timeout_s=60, raw_requests=3
    )

    assert [level.callers for level in result.levels] == [1, 4]
    for level in result.levels:
        assert (level.requests, level.ok, sum(level.failures.values())) == (12, 12, 0)
        assert len(level.latencies_ms) == 12 and not level.timed_out
        assert level.wall_s > 0
    assert result.all_succeeded
    assert [raw.count for raw in result.raw] == [3, 3]

    table = citadel_signing.report(result)
    assert "| 1 | " in table and "| 4 | " in table and "Target, at least half" in table


def test_the_bare_leaf_matches_what_the_ca_issues() -> None:
    """The raw loop's second path must sign the same kind of certificate as citadel."""
    with tempfile.TemporaryDirectory() as workdir:
        ca_dir = Path(workdir) / "ca"
        ca = CertificateAuthority.load_or_create(ca_dir)
        csr = citadel_signing.make_csrs(1)[0]
        issued = x509.load_pem_x509_certificate(ca.sign(csr.pem, citadel_signing.IDENTITY)[0])
        key = citadel_signing.load_ca_key(ca_dir)
        bare = citadel_signing.bare_leaf(ca, key, csr.public_key, citadel_signing.IDENTITY)

    bare.verify_directly_issued_by(ca.signing_cert)
    assert bare.public_key() == issued.public_key() == csr.public_key
    assert bare.subject == issued.subject and bare.issuer == issued.issuer
    assert list(bare.extensions) == list(issued.extensions)
    assert bare.not_valid_after_utc - bare.not_valid_before_utc == (
        issued.not_valid_after_utc - issued.not_valid_before_utc
    )
    assert bare.not_valid_after_utc - bare.not_valid_before_utc > datetime.timedelta(hours=1)


def test_the_load_request_is_a_grpc_frame_of_the_agent_request() -> None:
    csr = citadel_signing.make_csrs(1)[0]
    frame = citadel_signing.grpc_frame(csr)
    assert frame[0] == 0 and int.from_bytes(frame[1:5], "big") == len(frame) - 5
    request = citadel_signing.ca_pb2.IstioCertificateRequest.FromString(frame[5:])
    assert request.csr.encode() == csr.pem
