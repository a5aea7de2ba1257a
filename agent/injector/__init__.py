"""Sidecar injection, Istio's way: the webhook (`python -m agent.injector`) and the pure pieces
`meshctl kube-inject` shares with it, so offline and in-cluster injection give the same pod.

`config` holds the settings (image, control-plane addresses) and `cli` their flags, `policy`
decides whether a pod gets a sidecar, `capture` checks its traffic annotations, `sidecar`
builds the injected pod, `admission` answers an AdmissionReview with the JSONPatch from the
pod to the injected pod, `server` serves that over HTTPS.
"""

from agent.injector.config import InjectionConfig, InjectionError, MeshConfigError
from agent.injector.policy import skip_reason
from agent.injector.sidecar import inject

__all__ = ["InjectionConfig", "InjectionError", "MeshConfigError", "inject", "skip_reason"]
