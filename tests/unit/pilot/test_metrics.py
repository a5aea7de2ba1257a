"""Pilot's per-response metrics: counted by type as Istio labels them."""

from __future__ import annotations

import pytest

from meshcore.xds import types
from pilot.metrics import PilotMetrics


def test_responses_are_counted_and_timed_by_type() -> None:
    metrics = PilotMetrics()

    metrics.response_sent(types.CLUSTER, 0.002)
    metrics.response_sent(types.CLUSTER, 0.2)
    metrics.response_sent(types.ROUTE, 0.03)

    sample = metrics.registry.get_sample_value
    assert sample("pilot_xds_pushes_total", {"type": "cds"}) == 2
    assert sample("pilot_xds_pushes_total", {"type": "rds"}) == 1
    assert sample("pilot_xds_pushes_total", {"type": "eds"}) is None
    assert sample("pilot_xds_push_time_count", {"type": "cds"}) == 2
    assert sample("pilot_xds_push_time_sum", {"type": "cds"}) == pytest.approx(0.202)
    assert sample("pilot_xds_push_time_bucket", {"type": "cds", "le": "0.005"}) == 1
