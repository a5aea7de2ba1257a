"""Keep the Mixer throughput benchmark runnable and honest, at a small scale.

The numbers only mean something if every check is answered and every access-log entry is
reported; this runs the benchmark small and looks at what it counted, never at the timings.
"""

from __future__ import annotations

from benchmarks import mixer_throughput
from tests.integration.mesh import allocate_block


def test_every_check_and_report_is_served() -> None:
    result = mixer_throughput.run(200, 250, 8, host=f"{allocate_block()}.1")
    assert result.checks.count == 200 and result.reports.count == 250
    assert result.cache_hits + result.cache_misses == 201  # with the warm-up call
    assert result.cache_hits > 150
    assert result.checks.mixer_cpu_s > 0 and result.reports.mixer_cpu_s > 0


def test_envoy_shaped_messages_translate() -> None:
    messages = mixer_throughput.access_log_messages(250)
    assert [len(m.http_logs.log_entry) for m in messages] == [100, 100, 50]
    assert messages[0].identifier.log_name == "inbound"
    assert not messages[1].HasField("identifier")
