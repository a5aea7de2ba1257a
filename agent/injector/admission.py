"""The injector's answer to one AdmissionReview v1: the pod as created, or a JSONPatch to the
pod with its sidecar.

Like Istio's injector, the patch is the difference between the pod the API server sent and the
injected pod (`jsonpatch.make_patch`), so whatever `sidecar.inject` changes reaches the cluster
and nothing else does. A pod the policy skips, or a request other than a creation, is allowed
unchanged. A pod that cannot be injected (an invalid annotation, or a fault of ours) is let
through without a sidecar and with a warning `kubectl` shows, rather than refused: the webhook
never blocks a workload for the mesh's sake. A well-formed review always gets an answer; only
a body that is not one raises MalformedReview.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

import jsonpatch

from agent.injector.config import InjectionConfig, InjectionError
from agent.injector.policy import skip_reason
from agent.injector.sidecar import inject
from meshcore.admission import request_object, review_answer, review_request

log = logging.getLogger(__name__)


def admission_response(review: Any, config: InjectionConfig) -> dict[str, Any]:
    """The AdmissionReview v1 answering `review` (parsed JSON) for injection with `config`."""
    uid, request = review_request(review)
    pod = request_object(request)
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    name = _pod_name(pod, request)
    reason = "not a creation" if request.get("operation") != "CREATE" else None
    reason = reason or skip_reason(pod, str(request.get("namespace") or ""))
    if reason is not None:
        log.debug("not injecting %s: %s", name, reason)
    else:
        try:
            patch = jsonpatch.make_patch(pod, inject(pod, config)).patch
        except Exception as error:
            if not isinstance(error, InjectionError):
                log.exception("injecting %s failed", name)
            log.warning("not injecting %s: %s", name, error)
            response["warnings"] = [f"sidecar not injected: {error}"]
        else:
            log.info("injecting %s", name)
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return review_answer(response)


def _pod_name(pod: Mapping[str, Any], request: Mapping[str, Any]) -> str:
    """namespace/name for logs; a pod of a ReplicaSet has only its generateName yet."""
    metadata = pod.get("metadata") or {}
    name = metadata.get("name") or f"{metadata.get('generateName', '')}*"
    return f"{request.get('namespace') or metadata.get('namespace', '')}/{name}"
