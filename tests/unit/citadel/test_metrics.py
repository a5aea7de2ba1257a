"""Citadel's counters: each serving process counts in its own row, /metrics reports the sums
under Istio's names."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from citadel.metrics import CitadelCounter, CitadelMetrics, SharedCounters


def test_registry_reports_every_process_counts_summed() -> None:
    counters = SharedCounters(3)
    first, third = CitadelMetrics(counters, 0), CitadelMetrics(counters, 2)
    for _ in range(2):
        first.inc(CitadelCounter.ISSUED)
    third.inc(CitadelCounter.ISSUED)
    third.inc(CitadelCounter.AUTHENTICATION_FAILURES)

    assert counters.per_process(CitadelCounter.ISSUED) == [2.0, 0.0, 1.0]
    registry = first.registry
    assert registry.get_sample_value("citadel_server_success_cert_issuance_count_total") == 3.0
    assert registry.get_sample_value("citadel_server_authentication_failure_count_total") == 1.0
    assert registry.get_sample_value("citadel_server_csr_count_total") == 0.0
    exposition = generate_latest(third.registry).decode()
    assert "citadel_server_csr_parsing_err_count_total 0.0" in exposition


def test_a_process_outside_the_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="process 2 has no row among 2"):
        CitadelMetrics(SharedCounters(2), 2)
    with pytest.raises(ValueError, match="at least one serving process"):
        SharedCounters(0)
