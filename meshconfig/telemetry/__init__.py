"""Spec model of the telemetry.istio.io kind: Telemetry (metrics, tracing, access logging)."""

from meshconfig.kinds import Kind
from meshconfig.telemetry.telemetry import TelemetrySpec

KINDS: tuple[Kind, ...] = (
    Kind("telemetry.istio.io", "Telemetry", "telemetries", ("v1", "v1alpha1"), TelemetrySpec),
)

__all__ = ["KINDS", "TelemetrySpec"]
