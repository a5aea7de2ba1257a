"""Configuration analysis across resources, like `istioctl analyze`.

Validation (meshconfig) judges one resource at a time; analysis looks at the whole set and finds
what no single resource shows: a route to a subset no DestinationRule defines, two Sidecars
selecting the same workload, a DestinationRule asking for mutual TLS that a PeerAuthentication
refuses. Each analyzer is a pure function from a `Context` (the resources, plus the documents that
failed validation) to messages carrying Istio's codes, levels and wording, so the same analysis
serves files on disk (`meshctl analyze PATH`) and a running galley (`meshctl analyze --galley`).
"""

from galley.analysis.context import Context
from galley.analysis.messages import Level, Message
from galley.analysis.runner import analyze, validate_all

__all__ = ["Context", "Level", "Message", "analyze", "validate_all"]
