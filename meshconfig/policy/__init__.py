"""Mixer's config.istio.io/v1alpha2 kinds (Istio 1.4 policy and telemetry) and their language.

The spec models: `handler`, `instance` and `rule` (lowercase, as Istio 1.4 named them),
QuotaSpec and QuotaSpecBinding, plus the legacy per-adapter and per-template kinds older
configurations use. Beside them, the config language galley validates and mixer runs:
`attributes` (the vocabulary), `expr` (expressions), `templates` (the compiled-in templates and
adapters), `quota_charges` (QuotaSpecs applied) and `compiled` (a snapshot compiled, with every
problem across resources).
"""

from meshconfig.kinds import Kind
from meshconfig.policy.mixer import (
    AdapterParams,
    HandlerSpec,
    InstanceSpec,
    RuleSpec,
    TemplateParams,
)
from meshconfig.policy.quota import QuotaSpecBindingSpec, QuotaSpecSpec

GROUP = "config.istio.io"
VERSIONS = ("v1alpha2",)

# Kind -> plural of the compiled-in adapters and templates that had kinds of their own.
LEGACY_ADAPTER_KINDS = {
    "denier": "deniers",
    "fluentd": "fluentds",
    "kubernetesenv": "kubernetesenvs",
    "listchecker": "listcheckers",
    "memquota": "memquotas",
    "noop": "noops",
    "prometheus": "prometheuses",
    "redisquota": "redisquotas",
    "statsd": "statsds",
    "stdio": "stdios",
}
LEGACY_TEMPLATE_KINDS = {
    "apikey": "apikeys",
    "authorization": "authorizations",
    "checknothing": "checknothings",
    "edge": "edges",
    "kubernetes": "kuberneteses",
    "listentry": "listentries",
    "logentry": "logentries",
    "metric": "metrics",
    "quota": "quotas",
    "reportnothing": "reportnothings",
    "tracespan": "tracespans",
}

KINDS: tuple[Kind, ...] = (
    Kind(GROUP, "handler", "handlers", VERSIONS, HandlerSpec),
    Kind(GROUP, "instance", "instances", VERSIONS, InstanceSpec),
    Kind(GROUP, "rule", "rules", VERSIONS, RuleSpec),
    Kind(GROUP, "QuotaSpec", "quotaspecs", VERSIONS, QuotaSpecSpec),
    Kind(GROUP, "QuotaSpecBinding", "quotaspecbindings", VERSIONS, QuotaSpecBindingSpec),
    *(Kind(GROUP, k, p, VERSIONS, AdapterParams) for k, p in LEGACY_ADAPTER_KINDS.items()),
    *(Kind(GROUP, k, p, VERSIONS, TemplateParams) for k, p in LEGACY_TEMPLATE_KINDS.items()),
)

__all__ = [
    "KINDS",
    "AdapterParams",
    "HandlerSpec",
    "InstanceSpec",
    "QuotaSpecBindingSpec",
    "QuotaSpecSpec",
    "RuleSpec",
    "TemplateParams",
]
