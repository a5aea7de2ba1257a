"""Keep the citadel signing benchmark runnable and honest, at a few requests per level.

The numbers in BENCHMARKS.md only mean something if every timed request really got a
certificate from the real service (over TLS, with a bearer token) and the raw loop signed what
citadel signs. This runs the benchmark tiny and looks at what it counted, never at the timings.
"""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

from cryptography import x509

from benchmarks import citadel_signing
from citadel.ca import CertificateAuthority
from tests.integration.mesh import allocate_block


def test_every_request_at_every_level_gets_a_certificate() -> None:
    result = citadel_signing.run(
        [1, 2], 3, host=f"{allocate_block()}.250", level_timeout_s=60, raw_requests=3
    )

    assert [level.callers for level in result.levels] == [1, 2]
    for level in result.levels:
        assert (level.requests, level.ok, sum(level.failures.values())) == (3, 3, 0)
        assert len(level.latencies_ms) == 3 and not level.timed_out
    assert result.all_succeeded
    assert [raw.count for raw in result.raw] == [3, 3]

    table = citadel_signing.report(result)
    assert "| 1 | " in table and "| 2 | " in table and "Target, at least half" in table


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
