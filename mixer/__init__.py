"""Mixer: policy Check and telemetry Report over Istio's attribute vocabulary."""
