"""Keep the Mixer latency benchmark runnable and honest, at a tiny scale.

The numbers only mean something if both Envoys served every request (the benchmark raises on
any other status) and the checked one really asked Mixer; this runs it small and looks at
what it counted, never at the timings.
"""

from __future__ import annotations

import pytest

from benchmarks import mixer_latency
from tests.integration.mesh import allocate_block

pytestmark = pytest.mark.envoy


def test_both_envoys_serve_and_the_checked_one_asks_mixer() -> None:
    result = mixer_latency.run(20, block=allocate_block(), distinct=True)
    assert result.requests == 20
    assert set(result.plain_ms) == set(result.checked_ms) == {50, 90, 99}
    # Every check ran the rules: readiness probe, warm-up and timed requests, distinct sources.
    assert result.cache_misses >= mixer_latency.WARM_UP + 20
    assert result.cache_hits <= 1


def test_plain_sidecar_has_no_ext_authz() -> None:
    plain = mixer_latency.bootstrap("127.0.0.2", "127.0.0.102", "127.0.0.1:9091", policy=False)
    checked = mixer_latency.bootstrap("127.0.0.3", "127.0.0.102", "127.0.0.1:9091", policy=True)
    assert "ext_authz" not in str(plain["static_resources"]["listeners"])
    assert "ext_authz" in str(checked["static_resources"]["listeners"])
